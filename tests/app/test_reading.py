"""Reading workflow: the session model, the study database through the window, the reader's place."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.session import ReadingSession
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.studydb import DB_FILE, StudyDatabase
from cxrscreen.app.worklist.model import Column
from cxrscreen.engine.scoring import ScoreResult
from tests.app.test_main_window import SCORING_TIMEOUT_MS


# ====================================================================== the session model (no Qt)
def test_session_states_marks_and_start() -> None:
    s = ReadingSession("dr a")
    a, b = Path("/x/a.png"), Path("/x/b.png")
    stored: list = []
    s.state_set.connect(stored.append)
    s.load([(a, "read", None, "")])  # remembered: not "started", not stored again
    assert s.is_read(a) and not s.started and stored == []
    assert s.mark_read(b) and s.started and stored == [(b, "read")]
    assert not s.mark_read(b)  # already read
    s.toggle_mark(b, "agree")
    assert s.state(b) == "reviewed" and s.mark(b) == "agree"
    s.toggle_mark(b, "agree")  # the same key withdraws it
    assert s.mark(b) is None and s.state(b) == "read"
    s.set_comment(b, "  check old film ")
    assert s.comment(b) == "check old film" and s.state(b) == "reviewed"
    with pytest.raises(ValueError, match="mark must be one of"):
        s.set_mark(a, "maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reading state"):
        s.set_state(a, "skimmed")  # type: ignore[arg-type]
    s.clear()
    assert not s.started and not s.is_read(a)


# ====================================================================== the window
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """60 small synthetic chests (PNG)."""
    from cxrscreen.engine.synth import write_study

    out = tmp_path / "cases"
    write_study(out, 45, 15, size=48, formats=("png",), seed=5)
    return out


def _window(settings_path: Path, tmp_path: Path) -> MainWindow:
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "library"), batch_size=4, decode_workers=1)
    w.index_in_process = False  # header parsing in a thread: quicker to start in tests
    w.resize(1400, 900)
    w.show()
    return w


def _close(qtbot, w: MainWindow) -> None:
    if w.isVisible():
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    w.workers.stop_all()
    assert w.workers.wait_all(10_000)
    w.deleteLater()


@pytest.fixture
def window(qtbot, settings_path: Path, tmp_path: Path):
    w = _window(settings_path, tmp_path)
    yield w
    _close(qtbot, w)


def _open(qtbot, w: MainWindow, folder: Path) -> None:
    w.open_paths([folder])
    qtbot.waitUntil(lambda: not w.indexing_active and w.model.rowCount() > 0, timeout=20_000)


def _stream(w: MainWindow, model_id: str, paths: list[Path], rng: random.Random) -> None:
    """Scores arriving as the scoring process sends them."""
    w.scoring.on_batch_scored(model_id, [ScoreResult(p, rng.random(), 100 * rng.random()) for p in paths])
    w.scoring.flush(everything=True)


def test_reopening_shows_known_scores_and_scores_only_changed_files(qtbot, settings_path: Path, tmp_path: Path,
                                                                     study: Path, tiny_detector: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    w = _window(settings_path, tmp_path)
    w.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: w.detector is not None, timeout=10_000)
    _open(qtbot, w, folder)
    qtbot.waitUntil(lambda: not w.is_scoring and w.model.counts()["scored"] == w.model.rowCount(), timeout=30_000)
    mid = w.detector.meta.model_id
    first = {r.path: r.scores[mid].score for r in w.model.records()}
    w.reading.session.set_mark(sorted(first)[0], "normal")
    _close(qtbot, w)

    changed = sorted(first)[1]
    changed.write_bytes(changed.read_bytes())  # same bytes, new mtime: read again, same content
    w = _window(settings_path, tmp_path)
    try:
        w.load_detector(tiny_detector, provider="cpu")
        qtbot.waitUntil(lambda: w.detector is not None, timeout=10_000)
        queued: list[Path] = []
        enqueue = w.scoring.enqueue
        w.scoring.enqueue = lambda paths: (queued.extend(paths), enqueue(paths))[1]  # a spy, not a mock
        _open(qtbot, w, folder)
        qtbot.waitUntil(lambda: w.model.counts()["scored"] == len(first), timeout=30_000)
        again = {r.path: r.scores[mid].score for r in w.model.records()}
        assert again == pytest.approx(first)
        assert w.reading.session.mark(sorted(first)[0]) == "normal"
        qtbot.waitUntil(lambda: not w.is_scoring, timeout=SCORING_TIMEOUT_MS)
        assert queued == [changed]  # only the touched file was indexed and scored
    finally:
        _close(qtbot, w)
    db = StudyDatabase(settings_path.parent / DB_FILE)
    assert db.count("files") == len(first) and db.integrity() == "ok"
    stored = db.scores_of([db.content_of(p) for p in first])
    assert all(scores[mid].score is not None for scores in stored.values())
    # the cases the viewer showed carry a summary of their heatmap
    assert any(scores[mid].heatmap and "peak_level" in scores[mid].heatmap for scores in stored.values())
    actions = [row[2] for row in db.audit_rows()]
    assert "opened" in actions and "marked" in actions
    db.close()


def test_reopening_unchanged_folder_starts_no_engine_process(qtbot, settings_path: Path, tmp_path: Path,
                                                             folder: Path) -> None:
    w = _window(settings_path, tmp_path)
    _open(qtbot, w, folder)
    w.model.set_active_model("m", 50.0)
    _stream(w, "m", [r.path for r in w.model.records()], random.Random(0))
    assert w.reading.store is not None and w.reading.store.flush()
    _close(qtbot, w)
    w = _window(settings_path, tmp_path)
    try:
        w.model.set_active_model("m", 50.0)
        w.open_paths([folder])
        qtbot.waitUntil(lambda: not w.indexing_active and w.model.counts()["scored"] == 60, timeout=10_000)
        assert w.indexing.indexers == [] and w.scoring.process is None  # no header read, nothing scored
        scores = [float(w.worklist.proxy.index(r, Column.SCORE).data()) for r in range(60)]
        assert scores == sorted(scores, reverse=True)  # known scores sorted at once
    finally:
        _close(qtbot, w)


def test_rows_never_move_under_the_reader_until_resort(qtbot, window: MainWindow, folder: Path) -> None:
    w, rng = window, random.Random(1)
    _open(qtbot, w, folder)
    w.model.set_active_model("m", 0.8)
    paths = [r.path for r in w.model.records()]
    _stream(w, "m", paths[:20], rng)
    # not started yet: the list follows the scores and the best case is current
    qtbot.waitUntil(lambda: w.worklist.table.currentIndex().row() == 0, timeout=5_000)
    top = max(paths[:20], key=lambda p: w.model.record(w.model.row_of(p)).scores["m"].score)
    qtbot.waitUntil(lambda: w.worklist.current_path() == top, timeout=5_000)
    w.actions["next_case"].trigger()  # the reader starts
    assert w.reading.session.started and w.model.order_frozen
    order = w.worklist.visible_paths()
    current = w.worklist.current_path()
    _stream(w, "m", paths[20:], rng)  # 40 more scores, many above the current one
    assert w.worklist.visible_paths() == order and w.worklist.current_path() == current
    w.reading.update_counts()
    assert "40 new scores not placed" in w.worklist.counts_label.text()
    w.actions["resort"].trigger()
    scores = [float(w.worklist.proxy.index(r, Column.SCORE).data()) for r in range(w.worklist.proxy.rowCount())]
    assert scores == sorted(scores, reverse=True)
    assert w.worklist.current_path() == current  # re-sorting keeps the case on screen current


def test_the_order_settles_before_the_case_on_screen_counts_as_read(qtbot, window: MainWindow, tmp_path: Path,
                                                                    tiny_detector: Path) -> None:
    """A real scoring run far longer than the dwell: the top-so-far case the app shows meanwhile is not
    read, so the order does not freeze with the scores unplaced; once they settle, the final top is read."""
    from cxrscreen.engine.synth import write_study

    w, folder = window, tmp_path / "chests"
    write_study(folder, 24, 12, size=96, formats=("png",), seed=9)
    w.reading._read_timer.setInterval(20)
    w.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: w.detector is not None, timeout=10_000)
    _open(qtbot, w, folder)
    qtbot.waitUntil(lambda: w.model.counts()["scored"] > 0, timeout=30_000)
    assert w.is_scoring and not w.reading.session.started  # on screen well past the dwell, not read yet
    # the case on screen counts (and the order freezes) only once every score is placed
    qtbot.waitUntil(lambda: w.reading.session.started, timeout=60_000)
    assert not w.is_scoring and w.model.counts()["scored"] == w.model.rowCount() and w.model.stale_rows() == 0
    scores = [float(w.worklist.proxy.index(r, Column.SCORE).data()) for r in range(w.worklist.proxy.rowCount())]
    assert len(scores) == 36 and scores == sorted(scores, reverse=True)  # most suspicious first, every score placed
    top = w.worklist.visible_paths()[0]
    assert w.reading.session.is_read(top)
    assert w.worklist.current_path() == top and w.model.order_frozen


def test_next_unread_flagged_marks_and_progress(qtbot, window: MainWindow, folder: Path) -> None:
    w = window
    _open(qtbot, w, folder)
    w.model.set_active_model("m", 0.5)
    paths = [r.path for r in w.model.records()]
    w.scoring.on_batch_scored("m", [ScoreResult(p, 1.0 - i / 60, 99.0 - i) for i, p in enumerate(paths)])
    w.scoring.flush(everything=True)
    flagged = [p for i, p in enumerate(paths) if 1.0 - i / 60 > 0.5]  # 30 cases
    w.reading.session.mark_read(flagged[1])  # read elsewhere: N skips it
    w.worklist.select_row(0)
    w.actions["next_flagged"].trigger()
    assert w.worklist.current_path() == flagged[2]
    w.actions["mark_abnormal"].trigger()
    w.actions["toggle_read"].trigger()  # M on a reviewed case: back to unread
    w.actions["toggle_read"].trigger()
    assert w.reading.session.mark(flagged[2]) == "abnormal" and w.reading.session.is_read(flagged[2])
    assert w.reading.progress_text() == "2 of 60 read, 28 flagged unread"
    w.reading.update_counts()
    assert "2 of 60 read, 28 flagged unread" in w.counts_label.text()
    row = w.worklist.proxy.mapFromSource(w.model.index(w.model.row_of(flagged[2]), Column.READ)).row()
    assert w.worklist.proxy.index(row, Column.READ).data() == "✓ abnormal"
    w.actions["unread_only"].trigger()
    assert w.worklist.proxy.rowCount() == 58
    w.reading.update_counts()
    assert "58 shown" in w.worklist.counts_label.text()
    w.actions["flagged_only"].trigger()
    assert w.worklist.proxy.rowCount() == 28
    w.reading.update_counts()
    assert "28 shown" in w.worklist.counts_label.text()
    assert w.reading.store is not None and w.reading.store.flush()
    db = StudyDatabase(w.settings.data_file(DB_FILE))
    assert [c.path for c in db.reader_cases(["abnormal"])] == [flagged[2]]
    db.close()


def test_escape_leaves_the_filter_box(qtbot, window: MainWindow, folder: Path) -> None:
    w = window
    _open(qtbot, w, folder)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5_000)
    w.actions["focus_filter"].trigger()
    qtbot.waitUntil(lambda: w.worklist.filter_edit.hasFocus(), timeout=5_000)
    qtbot.keyClicks(w.worklist.filter_edit, "case")
    qtbot.keyClick(w.worklist.filter_edit, Qt.Key.Key_Escape)
    assert not w.worklist.filter_edit.hasFocus() and w.worklist.table.hasFocus()
    assert w.worklist.filter_edit.text() == "case"  # the filter stays; only the focus left
    row = w.worklist.table.currentIndex().row()
    qtbot.keyClick(w.worklist.table, Qt.Key.Key_J)  # J moves again instead of typing
    assert w.worklist.table.currentIndex().row() == row + 1 and w.worklist.filter_edit.text() == "case"


def test_scripted_reading_session_while_scores_stream_in(qtbot, window: MainWindow, folder: Path,
                                                         tmp_path: Path) -> None:
    """50 cases with J while scores and new files arrive: none skipped, none twice, label right."""
    w, rng = window, random.Random(7)
    late = tmp_path / "late"  # files that arrive while the reader works
    late.mkdir()
    files = sorted(folder.iterdir())
    for p in files[-8:]:
        shutil.move(str(p), late / p.name)
    _open(qtbot, w, folder)
    w.reading._read_timer.setInterval(20)
    w.model.set_active_model("m", 0.7)
    unscored = [r.path for r in w.model.records()]
    rng.shuffle(unscored)
    _stream(w, "m", unscored[:10], rng)
    del unscored[:10]
    # before the reader starts, the best case is current and on screen
    qtbot.waitUntil(lambda: w.viewer.case is not None and w.viewer.case.path == w.worklist.visible_paths()[0]
                    == w.worklist.current_path(), timeout=10_000)
    visited = [w.worklist.current_path()]
    for step in range(50):
        if unscored:
            _stream(w, "m", unscored[:2], rng)
            del unscored[:2]
        if step == 20:
            w.open_paths([late], replace=False)
        order = w.worklist.visible_paths()
        expected = order[order.index(visited[-1]) + 1]
        w.actions["next_case"].trigger()
        qtbot.waitUntil(lambda: w.viewer.case is not None and w.viewer.case.path == expected, timeout=10_000)
        pos, n = w.worklist.table.currentIndex().row() + 1, w.worklist.proxy.rowCount()
        assert w.viewer._title.endswith(f"({pos} of {n})")
        visited.append(expected)
        qtbot.waitUntil(lambda: w.reading.session.is_read(expected), timeout=5_000)
    qtbot.waitUntil(lambda: not w.indexing_active, timeout=20_000)
    assert len(set(visited)) == len(visited) == 51  # none shown twice
    order = w.worklist.visible_paths()
    assert order[: len(visited)] == visited  # none skipped: every case above the reader was read
    assert w.reading.position(visited[-1]) == (51, 60)
    assert w.viewer._title.endswith("(51 of 60)")  # the late files are counted


def test_confirmed_cases_become_training_sets(qtbot, window: MainWindow, folder: Path, tmp_path: Path) -> None:
    from cxrscreen.app.reader_sets import ReaderSetError, export_reader_sets

    w = window
    _open(qtbot, w, folder)
    paths = [r.path for r in w.model.records()]
    for p in paths[:3]:
        w.reading.session.set_mark(p, "normal")
    w.reading.session.set_mark(paths[3], "abnormal")
    w.reading.session.set_mark(paths[4], "agree")  # not a training label
    out = tmp_path / "sets"
    written = w.reading.export_confirmed(out, "links")
    assert written is not None and written.counts == {"normal": 3, "abnormal": 1}
    links = sorted((out / "confirmed_normal").iterdir())
    assert [p.resolve() for p in links] == sorted(p.resolve() for p in paths[:3])
    assert [p.resolve() for p in (out / "confirmed_abnormal").iterdir()] == [paths[3].resolve()]
    assert '"source": "reader marks"' in (out / "reader_sets.json").read_text()
    assert w.reading.export_confirmed(out, "links") is None  # never over an existing set
    assert w.reading.export_confirmed(tmp_path / "lists", "lists") is not None
    assert (tmp_path / "lists" / "confirmed_normal.txt").read_text().count("\n") == 3
    with pytest.raises(ValueError, match="both sets"):
        export_reader_sets([paths[0]], [paths[0]], tmp_path / "x", "links", "r")
    with pytest.raises(ReaderSetError, match="no case"):
        export_reader_sets([], [], tmp_path / "y", "links", "r")
    assert w.reading.store is not None and w.reading.store.flush()
    db = StudyDatabase(w.settings.data_file(DB_FILE))
    assert [r[5] for r in db.audit_rows() if r[2] == "exported reader sets"] == [
        "normal=3; abnormal=1; form=links", "normal=3; abnormal=1; form=lists"]
    db.close()


def test_progress_per_folder(qtbot, window: MainWindow, folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted(folder.iterdir())[:5]:
        shutil.move(str(p), other / p.name)
    w = window
    _open(qtbot, w, folder)
    w.open_paths([other], replace=False)
    qtbot.waitUntil(lambda: not w.indexing_active and w.model.rowCount() == 60, timeout=20_000)
    w.model.set_active_model("m", 0.5)
    w.scoring.on_batch_scored("m", [ScoreResult(r.path, 0.9, 95.0) for r in w.model.records()])
    w.scoring.flush(everything=True)
    w.reading.session.mark_read(other / sorted(p.name for p in other.iterdir())[0])
    assert w.model.progress_by_folder() == [(folder, 55, 0, 55), (other, 5, 1, 4)]
    w.reading.update_counts()
    assert "other: 1 of 5 read, 4 flagged unread" in w.counts_label.toolTip()
    assert "1 of 60 read, 59 flagged unread" in w.counts_label.text()


def test_a_newer_database_is_refused_and_the_app_still_reads(qtbot, settings_path: Path, tmp_path: Path,
                                                             folder: Path) -> None:
    import sqlite3

    from cxrscreen.app.studydb import SCHEMA_VERSION

    db = settings_path.parent / DB_FILE
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    before = db.read_bytes()
    w = _window(settings_path, tmp_path)
    try:
        assert w.reading.store is None and "newer cxrscreen" in (w.last_error or "")
        assert "left unchanged" in (w.reading.db_error or "")
        _open(qtbot, w, folder)  # reading works, only nothing is remembered
        w.reading.session.set_mark(w.model.record(0).path, "agree")
        assert w.model.rowCount() == 60
    finally:
        _close(qtbot, w)
    assert db.read_bytes() == before
