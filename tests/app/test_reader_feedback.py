"""Reader feedback into training: the reader's confirmed cases become the New-detector panel's
known-normal and confirmed-abnormal folders, go through its checks, train a detector with the
real engine (WSCXR's tiny preset), and the detector's card says how many came from reader marks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.library_view import entry_sections
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.reader_sets import export_reader_sets, reader_marks_count
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.studydb import DB_FILE, StudyDatabase


def test_reader_marks_count_counts_the_links_of_a_reader_set(tmp_path: Path) -> None:
    images = []
    for i in range(3):
        images.append(tmp_path / f"c{i}.png")
        images[-1].write_bytes(b"x")
    export_reader_sets(images[:2], images[2:], tmp_path / "sets", "links", "dr a")
    assert reader_marks_count(tmp_path / "sets" / "confirmed_normal") == 2
    assert reader_marks_count(tmp_path / "sets" / "confirmed_abnormal") == 1
    (tmp_path / "sets" / "confirmed_normal" / "added.png").write_bytes(b"y")  # added by hand: not a mark
    assert reader_marks_count(tmp_path / "sets" / "confirmed_normal") == 2
    assert reader_marks_count(tmp_path) is None  # any other folder
    export_reader_sets(images[:2], [], tmp_path / "lists", "lists", "dr a")
    (tmp_path / "lists" / "confirmed_normal").mkdir()  # a folder of that name beside a lists summary
    assert reader_marks_count(tmp_path / "lists" / "confirmed_normal") is None
    (tmp_path / "bad" / "confirmed_normal").mkdir(parents=True)
    (tmp_path / "bad" / "reader_sets.json").write_text("{not json")
    assert reader_marks_count(tmp_path / "bad" / "confirmed_normal") is None


@pytest.fixture
def window(make_window) -> MainWindow:
    return make_window()


@pytest.mark.slow
def test_confirmed_cases_train_a_detector_whose_card_counts_them(qtbot, window: MainWindow, tmp_path: Path) -> None:
    from cxrscreen.engine.synth import write_study

    w = window
    written = write_study(tmp_path / "cases", 12, 4, size=64, formats=("png",), seed=41)
    w.open_paths([tmp_path / "cases"])
    qtbot.waitUntil(lambda: not w.indexing_active and not w.reading.listing and len(w.model.records()) == 16,
                    timeout=30_000)
    normals = [s.path for s in written if s.label == 0]
    abnormals = [s.path for s in written if s.label == 1]
    for p in normals[:10]:
        w.reading.session.set_mark(p, "normal")
    for p in abnormals[:3]:
        w.reading.session.set_mark(p, "abnormal")
    w.reading.session.set_mark(normals[10], "agree")  # agreeing with the flag is no training label

    # Reading ▸ Train a detector on confirmed cases: the panel opens with the sets as its folders
    w.reading.train_action.trigger()
    panel = w.model_tools.panel
    assert panel is not None and panel.isVisible()
    qtbot.waitUntil(lambda: panel.catalog is not None or panel.catalog_error is not None, timeout=60_000)
    assert panel.catalog_error is None
    sets = panel.reader_sets
    assert set(sets) == {"normal", "abnormal"} and sets["normal"].parent.parent == w.settings.data_file("reader-sets")
    assert panel.zones["normal"].path == sets["normal"]
    if not panel.info.role("abnormal").used:  # the default method takes no confirmed abnormals: they wait
        assert panel.zones["abnormal"].path is None and "wait for a method" in panel.status_label.text()
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("wscxr"))
    assert panel.zones["abnormal"].path == sets["abnormal"]
    panel.set_preset("tiny")
    panel.set_option("threads", 1)
    qtbot.waitUntil(lambda: panel.summaries["normal"] is not None and panel.summaries["abnormal"] is not None,
                    timeout=30_000)
    assert panel.zones["normal"].summary_label.text().endswith("10 from reader marks")
    assert panel.reader_counts == {"normal": 10, "abnormal": 3}

    # the panel's leak check applies: a validation image that is a confirmed normal blocks training
    val = tmp_path / "validation"
    (val / "normal").mkdir(parents=True)
    (val / "abnormal").mkdir()
    os.symlink(normals[0], val / "normal" / "leak.png")
    os.symlink(abnormals[3], val / "abnormal" / "other.png")
    panel.set_folder("validation", val)
    qtbot.waitUntil(lambda: any("also a training image" in f.text for f in panel.findings), timeout=60_000)
    assert not panel.can_train()
    panel.set_folder("validation", None)
    qtbot.waitUntil(panel.can_train, timeout=120_000)

    job = panel.start_training()
    assert job is not None
    qtbot.waitUntil(lambda: panel.last_entry is not None or panel.last_failure is not None, timeout=600_000)
    assert panel.last_failure is None, panel.last_failure
    entry = panel.last_entry
    counts = entry.card["training_job"]["counts"]
    assert counts["normal"]["from_reader_marks"] == 10 and counts["normal"]["images"] == 10
    assert counts["abnormal"]["from_reader_marks"] == 3
    rows = dict(dict(entry_sections(entry))["Trained in the app"])
    assert rows["Normal folder"].endswith("10 images, 10 from reader marks")
    assert rows["Abnormal folder"].endswith("3 images, 3 from reader marks")
    # the audit says what was sent, without a path
    assert w.reading.store is not None and w.reading.store.flush()
    db = StudyDatabase(w.settings.data_file(DB_FILE))
    sent = [r[5] for r in db.audit_rows() if r[2] == "sent reader sets to training"]
    db.close()
    assert sent == ["normal=10; abnormal=3"]
    assert json.loads((sets["normal"].parent / "reader_sets.json").read_text())["counts"] == {
        "confirmed_normal": 10, "confirmed_abnormal": 3}


def test_reader_sets_wait_for_a_method_and_give_way_to_the_readers_folders(
        qtbot, settings_path: Path, tmp_path: Path, fake_engine, role_folders: dict[str, Path]) -> None:
    from cxrscreen.app.training.panel import NewDetectorPanel
    from cxrscreen.app.workers.base import WorkerSet

    images = sorted(p for p in role_folders["normal"].iterdir() if p.suffix in (".png", ".dcm"))
    abnormal = sorted(p for p in role_folders["abnormal"].iterdir() if p.suffix in (".png", ".dcm"))
    sets = export_reader_sets(images, abnormal[:2], tmp_path / "sets", "links", "dr a").paths
    settings = AppSettings(settings_path)
    settings.set_engine_command(fake_engine.command)
    workers = WorkerSet()
    panel = NewDetectorPanel(ModelLibrary(tmp_path / "models"), settings, workers, runs_root=tmp_path / "runs")
    qtbot.addWidget(panel)
    try:
        qtbot.waitUntil(lambda: panel.catalog is not None, timeout=30_000)
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("dual"))  # no confirmed-abnormal role
        panel.use_reader_sets(sets)
        assert panel.zones["normal"].path == sets["normal"] and panel.zones["abnormal"].path is None
        assert "wait for a method that uses them" in panel.status_label.text()
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("weak"))
        assert panel.zones["abnormal"].path == sets["abnormal"] and panel.status_label.text() == ""
        qtbot.waitUntil(lambda: panel.reader_counts == {"normal": len(images), "abnormal": 2}, timeout=30_000)
        assert panel._spec().counts["abnormal"]["from_reader_marks"] == 2
        # the reader's own folder replaces the set: it is no reader set, and switching methods keeps it
        panel.set_folder("normal", role_folders["normal"])
        qtbot.waitUntil(lambda: panel.summaries["normal"] is not None, timeout=30_000)
        assert "normal" not in panel.reader_sets and "normal" not in panel.reader_counts
        assert "from_reader_marks" not in panel._spec().counts["normal"]
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("dual"))
        panel.method_combo.setCurrentIndex(panel.method_combo.findData("weak"))
        assert panel.zones["normal"].path == role_folders["normal"] and panel.zones["abnormal"].path == sets["abnormal"]
        panel.zones["abnormal"].cleared.emit()  # cleared by the reader: the set is let go
        assert panel.zones["abnormal"].path is None and "abnormal" not in panel.reader_sets
        with pytest.raises(ValueError, match="normal and abnormal roles"):
            panel.use_reader_sets({"unlabeled": sets["normal"]})
    finally:
        panel.check.cancel()
        workers.stop_all()
        assert workers.wait_all(30_000)
