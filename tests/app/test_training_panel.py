"""The New-detector panel end to end with the real engine (its `methods --json`, `train --check`
and training): a tiny training registered and used, cancel and resume, a killed engine, closing
the window mid-training; with the test engine (tests/app/fake_engine.py): a data error, the
panel's controls; and the library window's operations."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.training.job import JOB_FILE, JobSpec, TrainingJob, find_jobs
from cxrscreen.app.training.panel import CUSTOM, NewDetectorPanel

TINY = {"epochs": 2, "members": 2, "batch_size": 4, "threads": 1}


@pytest.fixture
def window(qtbot, settings_path: Path, tmp_path: Path):
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "data" / "models"), batch_size=4,
                   decode_workers=1)
    w.resize(1400, 900)
    w.show()
    yield w
    if w.isVisible():
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=60_000)
    w.workers.stop_all()
    assert w.workers.wait_all(30_000)
    w.deleteLater()


def _panel_with_data(qtbot, window: MainWindow, folders: dict[str, Path], validation: bool = False) -> NewDetectorPanel:
    panel = window.model_tools.open_panel()
    qtbot.waitUntil(lambda: panel.catalog is not None or panel.catalog_error is not None, timeout=60_000)
    assert panel.catalog_error is None and panel.info.name == "ddad"
    panel.set_folder("normal", folders["normal"])
    panel.set_folder("unlabeled", folders["unlabeled"])
    if validation:
        panel.set_folder("validation", folders["validation"])
    panel.set_preset("paper")  # not the default (robust-framing): no augmentation, the quickest epochs to stop
    for k, v in TINY.items():  # the paper's batch of 64 cannot train on 16 normals: the engine's check blocks it
        panel.set_option(k, v)
    qtbot.waitUntil(panel.can_train, timeout=60_000)
    return panel


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / JOB_FILE).read_text())


def _n_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix in (".png", ".dcm"))


@pytest.mark.slow
def test_tiny_training_is_registered_and_the_new_model_scores_the_worklist(
        qtbot, window: MainWindow, study: Path, tiny_detector: Path, training_folders: dict[str, Path]) -> None:
    # a worklist scored by an earlier detector
    window.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.open_paths([study])
    n = _n_images(study)
    qtbot.waitUntil(lambda: not window.indexing_active and not window.is_scoring
                    and window.model.counts()["scored"] == n, timeout=60_000)
    old_id = window.detector.meta.model_id

    panel = _panel_with_data(qtbot, window, training_folders, validation=True)
    assert panel.zones["normal"].summary_label.text().startswith("16 images")
    texts = [f.text for f in panel.findings]
    assert any(t.startswith("Only 16 known normals") for t in texts)  # a warning, not a block
    assert "8 labelled images: 4 normal, 4 abnormal" in panel.zones["validation"].summary_label.text()
    assert not panel.zones["abnormal"].isVisible()  # DDAD takes no confirmed-abnormal folder
    for k, v in TINY.items():
        panel.set_option(k, v)
    assert panel.preset_combo.currentData() == CUSTOM
    job = panel.start_training()
    assert job is not None and not panel.train_button.isEnabled() and panel.cancel_button.isVisible()
    qtbot.waitUntil(lambda: panel.last_entry is not None or panel.last_failure is not None, timeout=300_000)
    assert panel.last_failure is None, panel.last_failure
    entry = panel.last_entry
    # registered once, with its card, its validation and its ROC figure; nothing left in staging
    assert [e.model_id for e in window.library.entries()] == [entry.model_id]
    job_card = entry.card["training_job"]
    assert job_card["settings"]["epochs"] == 2 and job_card["counts"]["normal"]["images"] == 16
    assert job_card["images_used"]["unlabeled"] == 12 and job_card["device"] == "cpu" and job_card["engine_version"]
    assert entry.validation["n"] == 8 and 0.0 <= entry.validation["auroc"]["value"] <= 1.0
    assert entry.roc_image is not None and (entry.folder / "validation.json").is_file()
    assert _record(job.spec.run_dir)["status"] == "registered" and not (job.spec.run_dir / "export").exists()
    # what the panel showed while it trained
    pv = panel.progress_view
    assert pv.points["loss_a"][0] == [1.0, 2.0] and len(pv.points["loss_b"][1]) == 2
    assert "CPU" in pv.device_label.text()
    assert "AUROC" in panel.card_view.headline.text() and panel.result_box.isVisible()
    names = [a.text() for a in window.model_tools.library_menu.actions()]
    assert any(entry.name in t for t in names)

    # the new model scores the worklist; the earlier detector's scores are kept
    panel.use_button.click()
    qtbot.waitUntil(lambda: window.detector is not None and window.detector.meta.model_id == entry.model_id
                    and not window.is_scoring and window.model.counts()["scored"] == n, timeout=60_000)
    assert all({old_id, entry.model_id} <= set(r.scores) for r in window.model.records())
    compare = window.model_tools.open_compare()
    assert compare is not None and len(compare.comparison.paths) == n
    assert {compare.x_combo.currentData(), compare.y_combo.currentData()} == {old_id, entry.model_id}
    compare.close()


@pytest.mark.slow
def test_cancel_resume_a_killed_engine_and_closing_mid_training(
        qtbot, settings_path: Path, tmp_path: Path, training_folders: dict[str, Path], monkeypatch) -> None:
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "data" / "models"))
    w.show()
    try:
        panel = _panel_with_data(qtbot, w, training_folders)
        for k, v in {**TINY, "epochs": 500}.items():
            panel.set_option(k, v)
        qtbot.waitUntil(panel.can_train, timeout=60_000)  # the engine checked the changed settings
        job = panel.start_training()
        assert job is not None
        pv = panel.progress_view
        qtbot.waitUntil(lambda: len(pv.points.get("loss_a", ([], []))[0]) >= 1, timeout=120_000)
        # Cancel: the engine stops after the epoch with a checkpoint (exit code 3)
        t0 = time.monotonic()
        panel.cancel_training()
        assert "Stopping after the current epoch" in panel.status_label.text()
        qtbot.waitUntil(lambda: not job.running, timeout=60_000)
        assert time.monotonic() - t0 < 30
        assert panel.resume_button.isVisible() and panel.last_failure is None
        assert _record(job.spec.run_dir)["status"] == "stopped" and (job.spec.run_dir / "checkpoint.pt").is_file()
        assert w.library.entries() == []
        epochs_done = len(pv.points["loss_a"][0])

        # Resume continues from the checkpoint
        job2 = panel.resume_last()
        assert job2 is not None and job2.spec.run_dir == job.spec.run_dir
        qtbot.waitUntil(lambda: "resuming from epoch" in pv.log_view.toPlainText(), timeout=120_000)
        qtbot.waitUntil(lambda: len(pv.points.get("loss_a", ([], []))[0]) > epochs_done, timeout=120_000)
        # the plot keeps the epochs before the stop (read back from the run's log) and goes on after them
        xs = pv.points["loss_a"][0]
        assert xs[:epochs_done] == [float(e) for e in range(1, epochs_done + 1)] and xs[epochs_done] > epochs_done

        # the engine is killed from outside (out of memory, say): the error and its log, nothing registered
        os.kill(job2.engine.pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: panel.last_failure is not None, timeout=30_000)
        failure = panel.last_failure
        assert failure.title == "The engine process died" and failure.resumable
        assert "Nothing was added to the model library" in failure.message and failure.log_tail
        box = panel.findChild(QMessageBox, "job_error_box")
        assert box is not None and "Engine log" in box.detailedText()
        box.close()
        assert w.library.entries() == [] and _record(job.spec.run_dir)["status"] == "interrupted"
        assert panel.resume_button.isVisible()

        # closing the window mid-training asks; "No" keeps it, "Yes" stops the engine with a checkpoint
        job3 = panel.resume_last()
        qtbot.waitUntil(lambda: job3.stage == "train" and "resuming" in pv.log_view.toPlainText()
                        and job3.engine.is_running(), timeout=60_000)
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
        w.close()
        assert w.isVisible() and job3.running
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=60_000)
        assert not panel.isVisible()  # a window left open would keep the application running
        assert not job3.engine.is_running() and _record(job.spec.run_dir)["status"] in ("stopped", "interrupted")
        assert w.library.entries() == []
        # a later session lists it for Resume
        records = find_jobs(tmp_path / "data" / "runs")
        assert [r.spec.run_dir for r in records] == [job.spec.run_dir] and records[0].resumable
        assert "epochs done" in records[0].progress
    finally:
        if w.isVisible():
            monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
            w.close()
            qtbot.waitUntil(lambda: not w.isVisible(), timeout=60_000)
        w.workers.stop_all()
        assert w.workers.wait_all(30_000)
    w.deleteLater()


def test_an_engine_data_error_is_shown_and_nothing_is_registered(qtbot, tmp_path: Path, study: Path,
                                                                  fake_engine) -> None:
    import shutil

    from cxrscreen.app.training.options import read_catalog

    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(study.glob("*.png"))[:2]:  # 2 normals: the method needs 6
        shutil.copy(p, few / p.name)
    library = ModelLibrary(tmp_path / "models")
    info = read_catalog(fake_engine.command).method("dual")
    spec = JobSpec("x", "dual", "quick", {"epochs": 2}, few, study, tmp_path / "runs" / "r1")
    job = TrainingJob(spec, library, info, fake_engine.command)
    failures: list = []
    job.failed.connect(failures.append)
    with qtbot.waitSignal(job.finished, timeout=60_000):
        job.start()
    assert failures and failures[0].title == "Training failed" and not failures[0].resumable
    assert "2 normal images; dual needs at least 6" in failures[0].message
    assert library.entries() == [] and _record(spec.run_dir)["status"] == "failed"
    assert [r.resumable for r in find_jobs(tmp_path / "runs")] == [False]
    # settings the method does not take: refused before any process starts
    with pytest.raises(ValueError, match="does not use a unlabeled folder"):
        TrainingJob(JobSpec("x", "oneclass", "paper", {}, few, study, tmp_path / "runs" / "r2"), library,
                    read_catalog(fake_engine.command).method("oneclass"), fake_engine.command)
    assert not (tmp_path / "runs" / "r2").exists()


def test_panel_controls_and_state_agree_both_ways(qtbot, settings_path: Path, tmp_path: Path, fake_engine,
                                                  training_folders: dict[str, Path]) -> None:
    from cxrscreen.app.workers.base import WorkerSet

    workers = WorkerSet()
    settings = AppSettings(settings_path)
    settings.set_engine_command(fake_engine.command)
    panel = NewDetectorPanel(ModelLibrary(tmp_path / "models"), settings, workers)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: panel.info is not None, timeout=30_000)
    assert not panel.can_train() and "Drop a folder of known-normal" in panel.train_button.toolTip()
    # presets write the advanced fields; editing a field makes the preset "Custom"
    panel.set_preset("paper")
    form = panel.options_form
    assert form.values()["epochs"] == 250 and form.fields["backbone"].currentText() == "ae-u"
    form.fields["members"].setValue(5)  # as the user would
    assert panel.preset_combo.currentData() == CUSTOM and form.values()["members"] == 5
    panel.set_preset("quick")
    assert form.values()["members"] == 3 and form.values()["epochs"] == 50
    assert settings.training_preset == "quick"
    # another method: its own options and presets
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("weak"))
    assert "margin" in form.fields and "backbone" not in form.fields
    assert form.values()["batch_size"] is None  # the method's own: not passed
    assert settings.training_method == "weak"
    # a bad validation CSV is an error that blocks training, with the reason
    panel.method_combo.setCurrentIndex(panel.method_combo.findData("dual"))
    bad = tmp_path / "bad.csv"
    bad.write_text("file,diagnosis\n")
    panel.set_folder("normal", training_folders["normal"])
    panel.set_folder("unlabeled", training_folders["unlabeled"])
    panel.set_folder("validation", bad)
    qtbot.waitUntil(lambda: not panel._scans and panel._validation_thread is None, timeout=30_000)
    assert not panel.can_train() and "path' and 'label'" in panel.train_button.toolTip()
    panel.set_folder("validation", None)
    qtbot.waitUntil(panel.can_train, timeout=30_000)
    # the name follows the data until the user types one
    assert panel.name_edit.text().startswith("Dual AE-U, paper — normal")  # the title's name, not "DUAL"
    panel.name_edit.clear()
    panel.name_edit.textEdited.emit("")
    assert not panel.can_train() and panel.train_button.toolTip() == "Give the detector a name."
    panel.check.cancel()
    workers.stop_all()
    assert workers.wait_all(10_000)


def test_library_window_operations(qtbot, window: MainWindow, tiny_detector: Path, tmp_path: Path,
                                   monkeypatch) -> None:
    d = window.model_tools.open_library()
    assert d.entries == [] and d.empty_label.isVisible()
    entry = d.import_file(tiny_detector)
    assert entry is not None and [e.model_id for e in d.entries] == [entry.model_id]
    assert "local contrast (test)" in d.card.text.toPlainText()
    assert d.rename_selected("Chest baseline")
    assert d.entries[0].name == "Chest baseline"
    d.default_selected()
    assert window.library.default_id() == entry.model_id and d.table.item(0, 0).text() == "★"
    assert any(a.text().startswith("★ Chest baseline") for a in window.model_tools.library_menu.actions())
    # load it: the window shows the library's name for it
    d.load_selected()
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    assert window.detector.meta.name == "Chest baseline"
    d.refresh()
    assert not d.delete_selected(confirm=False)  # the loaded detector cannot be deleted
    assert window.library.find(entry.model_id) is not None
    d.active_model_id = None
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not d.delete_selected()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert d.delete_selected() and window.library.entries() == [] and window.library.default_id() is None
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    assert d.import_file(bad) is None and window.library.entries() == []
    d.close()


def test_the_default_detector_loads_at_start_when_none_is_given(qtbot, settings_path: Path, tmp_path: Path,
                                                                tiny_detector: Path) -> None:
    library = ModelLibrary(tmp_path / "models")
    library.set_default(library.add(tiny_detector, name="site default").model_id)
    w = MainWindow(AppSettings(settings_path), library)
    w.show()
    try:
        qtbot.waitUntil(lambda: w.detector is not None, timeout=10_000)
        assert w.detector.meta.name == "site default"
    finally:
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
        w.deleteLater()


def test_engine_command_setting(qtbot, window: MainWindow, tmp_path: Path) -> None:
    import sys

    tools = window.model_tools
    assert window.settings.engine_command == [sys.executable, "-m", "cxrscreen.engine"]
    assert not tools.edit_engine_command(str(tmp_path / "no-such-python") + " -m cxrscreen.engine")
    assert "not a program" in window.last_error
    assert tools.edit_engine_command(f"{sys.executable} -m cxrscreen.engine")
    assert AppSettings(Path(window.settings.file_name)).engine_command == [sys.executable, "-m", "cxrscreen.engine"]
    assert tools.edit_engine_command("")  # back to the default
    assert window.settings.engine_command == [sys.executable, "-m", "cxrscreen.engine"]
