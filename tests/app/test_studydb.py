"""The study database: content identity, migrations, refusal of newer files, crashes, two writers."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cxrscreen.app.studydb import (MIGRATIONS, DriftRecord, SCHEMA_VERSION, FileToRegister, ScoreRow, StudyDatabase, StudyDatabaseError,
                         StudyStore, content_hash)
from cxrscreen.engine.io import read_header

REPO = Path(__file__).resolve().parents[2]


def _store(path: Path) -> StudyStore:
    store = StudyStore(path)
    store.start()
    return store


def _scan(store: StudyStore, roots: list[Path]):
    out: list = []
    store.scan(roots, out.append)
    assert store.flush()
    return out[0]


def test_reopen_knows_scores_state_and_marks_until_a_file_changes(tmp_path: Path, study: Path) -> None:
    folder = tmp_path / "Doe_John_chest"
    folder.mkdir()
    files = sorted(p for p in study.iterdir() if p.suffix in (".png", ".dcm"))[:4]
    for p in files:
        (folder / p.name).write_bytes(p.read_bytes())
    store = _store(tmp_path / "db.sqlite")
    known, unknown = _scan(store, [folder])
    assert known == [] and len(unknown) == 4  # first visit: every file needs its header
    store.register([FileToRegister(p, read_header(p), None) for p in unknown])
    store.put_scores([ScoreRow(p, "m1", 0.5 + i, 60.0 + i, i >= 2, 1.9) for i, p in enumerate(unknown)])
    store.set_state(unknown[0], "read", "dr a")
    store.add_mark(unknown[1], "agree", "nodule RUL", "dr a", "m1")
    known, unknown2 = _scan(store, [folder])
    assert unknown2 == [] and [k.path for k in known] == unknown  # same order as the scan
    by = {k.path: k for k in known}
    assert by[unknown[3]].scores["m1"].score == pytest.approx(3.5) and by[unknown[3]].scores["m1"].flagged is True
    assert by[unknown[0]].state == "read" and by[unknown[1]].mark == "agree" and by[unknown[1]].comment == "nodule RUL"
    assert by[unknown[0]].meta is not None and by[unknown[0]].meta.rows == read_header(unknown[0]).rows
    # a file changed in place is unknown again; a copy under a new name finds its content's scores
    changed = unknown[2]
    changed.write_bytes(changed.read_bytes() + b"\0")
    copy = folder / ("copy_" + unknown[3].name)
    copy.write_bytes(unknown[3].read_bytes())
    known, new = _scan(store, [folder])
    assert set(new) == {changed, copy}
    found: list = []
    store.register([FileToRegister(p, read_header(p), None) for p in new], found.append)
    assert store.flush()
    assert set(found[0]) == {copy} and found[0][copy]["m1"].score == pytest.approx(3.5)
    store.close()
    db = StudyDatabase(tmp_path / "db.sqlite")
    assert db.count("files") == 5 and db.content_of(copy) == content_hash(copy)
    # the audit trail names images by content hash only: no path, no name, no header value
    text = repr(db.audit_rows())
    assert db.audit_rows() and "nodule" not in text and folder.name not in text
    assert not any(p.stem in text for p in files)
    db.close()


def test_older_schema_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:  # a database written by schema version 1
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO files VALUES ('/x/a.png', 10, 20, 'c1', NULL, NULL, 0)")
    con.execute("INSERT INTO scores VALUES ('c1', 'm', 1.0, 50.0, 0, 2.0, NULL, NULL, 0)")
    con.close()
    db = StudyDatabase(path)
    assert db.version == SCHEMA_VERSION == 4
    assert db.scores_of(["c1"])["c1"]["m"].acquisition is None  # stored before the column (version 4)
    db.begin()
    db.add_mark("c1", "normal", "", "r")  # the table version 2 added
    db.put_drift(DriftRecord(1.0, "r", "m", "detector calibration (120 held-out normals)", 1,
                             {"n": 20, "p_value": 0.5, "drift": False, "specificity_promised": 0.95,
                              "specificity_estimated": None}))  # the table version 3 added
    db.commit()
    assert db.count("drift") == 1
    assert db.count("files") == 1 and db.scores_of(["c1"])["c1"]["m"].score == 1.0
    db.begin()
    db.put_scores([("c1", ScoreRow(Path("/x/a.png"), "m", 1.5, 60.0, acquisition=(0.1, 0.2, 0.3, 0.4)))])
    db.commit()
    assert db.scores_of(["c1"])["c1"]["m"].acquisition == (0.1, 0.2, 0.3, 0.4)  # the column version 4 added
    assert db.integrity() == "ok"
    db.close()


def test_newer_schema_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE future (x)")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StudyDatabaseError, match="newer cxrscreen") as info:
        StudyDatabase(path)
    assert info.value.version == SCHEMA_VERSION + 1
    store = StudyStore(path)
    with pytest.raises(StudyDatabaseError):
        store.start()
    assert path.read_bytes() == before
    # a file that is not a database is refused too, not replaced
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StudyDatabaseError, match="not a usable"):
        StudyDatabase(junk)
    assert junk.read_bytes() == b"not a database" * 100


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from cxrscreen.app.studydb import FileToRegister, ScoreRow, StudyStore
    store = StudyStore(Path(sys.argv[1]))  # the app's writer thread
    store.start()
    tag, n = sys.argv[2], int(sys.argv[3])
    image = Path(sys.argv[4])
    store.register([FileToRegister(image, None, "test")])
    for i in range(n):
        store.put_scores([ScoreRow(image, f"{tag}-{i}-{j}", float(i), 50.0) for j in range(50)])
        assert store.flush()
        print(i, flush=True)  # batch i is committed
    store.close()
""")


def _writer(db: Path, tag: str, n: int) -> subprocess.Popen:
    image = db.parent / f"{tag}.png"
    image.write_bytes(tag.encode() * 100)  # each writer's own content
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "packaging" / "src"), str(REPO)])}
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(db), tag, str(n), str(image)], stdout=subprocess.PIPE,
                            text=True, env=env)


def test_kill_9_during_a_burst_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    StudyDatabase(path).close()
    proc = _writer(path, "k", 100_000)
    committed = -1
    assert proc.stdout is not None
    while committed < 200:  # let it write a while, then kill it between (or inside) transactions
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db = StudyDatabase(path)
    assert db.integrity() == "ok"
    rows = db.count("scores")
    assert rows >= 50 * (committed + 1)  # every batch it reported committed is there
    assert rows % 50 == 0  # and no half batch
    db.close()


def test_two_processes_write_the_same_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    StudyDatabase(path).close()
    procs = [_writer(path, tag, 40) for tag in ("a", "b")]  # two app processes at once
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and out.split()[-1] == "39"
    db = StudyDatabase(path)
    assert db.integrity() == "ok" and db.count("scores") == 2 * 40 * 50 and db.count("files") == 2
    db.close()


def test_writes_are_batched_off_the_callers_thread(tmp_path: Path) -> None:
    store = _store(tmp_path / "db.sqlite")
    root = tmp_path / "img"
    root.mkdir()
    paths = []
    for i in range(200):
        p = root / f"{i:03d}.png"
        p.write_bytes(b"x" * (i + 1))
        paths.append(p)
    store.register([FileToRegister(p, None, "not an image") for p in paths])
    t0 = time.perf_counter()
    for i in range(0, 200, 10):  # 20 small submissions return at once...
        store.put_scores([ScoreRow(p, "m", 1.0, 50.0) for p in paths[i:i + 10]])
    assert time.perf_counter() - t0 < 0.5
    assert store.flush()
    assert store.transactions <= 21  # ...and are committed in few transactions
    store.close()
    db = StudyDatabase(tmp_path / "db.sqlite")
    assert db.count("scores") == 200
    db.close()


def test_a_damaged_stored_header_makes_the_file_unknown(tmp_path: Path, study: Path) -> None:
    src = next(p for p in sorted(study.iterdir()) if p.suffix == ".dcm")
    folder = tmp_path / "one"
    folder.mkdir()
    f = folder / src.name
    f.write_bytes(src.read_bytes())
    store = _store(tmp_path / "db.sqlite")
    store.register([FileToRegister(f, read_header(f), None)])
    assert store.flush()
    assert [k.path for k in _scan(store, [folder])[0]] == [f]
    store.close()
    con = sqlite3.connect(tmp_path / "db.sqlite")
    con.execute("UPDATE files SET header = '{\"rows\": \"many\"}'")  # edited by hand: wrong type
    con.commit()
    con.close()
    store = _store(tmp_path / "db.sqlite")
    known, unknown = _scan(store, [folder])
    assert known == [] and unknown == [f]  # its header is read again, never shown wrong
    store.close()


def test_drift_checks_are_recorded_with_numbers_and_words_but_no_path(tmp_path: Path) -> None:
    import numpy as np

    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.drift import check_drift

    cal = NormalCalibration(tuple(np.linspace(0, 1, 120)), (0.0, 1.0), (0.0, 1.0))
    report = check_drift(np.linspace(0.9, 2.0, 300), cal)  # far above the normals
    store = StudyStore(tmp_path / "s.sqlite")
    store.start()
    store.record_drift(DriftRecord(5.0, "dr. x", "m1", cal.label, 2, report.to_dict()))
    store.flush()
    got: list = []
    store.query(lambda db: db.drift_rows("m1"), got.append)
    store.flush()
    store.close()
    (row,) = got[0]
    assert row.folders == 2 and row.calibration == "detector calibration (120 held-out normals)"
    assert row.report["drift"] is True and row.report["p_value"] == report.p_value
    assert "scores higher than the calibration normals" in row.report["message"]
