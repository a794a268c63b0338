"""Detector ▸ Combine detectors…: two library detectors trained in the app become one ensemble detector,
built by the real engine (`cxrscreen ensemble`, a child process) and added to the library."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrscreen.app.ensemble import EnsembleDialog, EnsembleJob, candidates
from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.engine.detector import Detector

MEMBERS = ("msacl", "amae")


@pytest.fixture(scope="module")
def member_runs(ensemble_runs) -> dict[str, Path]:
    """tests/conftest.py's two tiny runs (MSACL, AMAE) on the same known normals, each exported."""
    return ensemble_runs


def _library(tmp_path: Path, runs: dict[str, Path], imported: Path | None = None) -> ModelLibrary:
    """A library with the two detectors as the app registers an in-app training (card: training_job.run_dir),
    and one imported detector (no run folder: not a candidate)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    library = ModelLibrary(tmp_path / "library")
    for name in MEMBERS:
        staged = tmp_path / f"staged_{name}.onnx"
        shutil.copy(runs["root"] / f"{name}.onnx", staged)
        library.register(staged, {"source": "trained in the app", "training_job": {
            "method": name, "method_title": name.upper(), "run_dir": str(runs[name]),
            "folders": {"normal": str(runs["root"] / "normal")}}})
    if imported is not None:
        library.add(imported)
    return library


def test_candidates_are_the_detectors_trained_here_whose_run_folder_exists(member_runs, tiny_detector, tmp_path,
                                                                         qtbot) -> None:
    library = _library(tmp_path, member_runs, imported=tiny_detector)
    assert len(library.entries()) == 3
    found = candidates(library)
    assert sorted(c.entry.name for c in found) == ["AMAE site A", "MSACL site A"]
    assert all(c.run_dir in (member_runs["msacl"], member_runs["amae"]) for c in found)
    assert "known normals: normal" in found[0].label
    # a run folder that is gone: no longer a candidate
    moved = tmp_path / "moved"
    card = json.loads((found[0].entry.folder / "card.json").read_text())
    card["training_job"]["run_dir"] = str(moved)
    (found[0].entry.folder / "card.json").write_text(json.dumps(card))
    assert len(candidates(library)) == 1

    dialog = EnsembleDialog(found)
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and "at least two" in dialog.hint.text()
    dialog.set_checked([0])
    assert not ok.isEnabled()
    dialog.set_checked([0, 1])
    assert ok.isEnabled() and dialog.name.text() == f"Ensemble: {found[0].entry.name} + {found[1].entry.name}"
    dialog.name.setText("   ")
    assert not ok.isEnabled() and "name" in dialog.hint.text()


def test_runs_the_engine_refuses_give_its_one_line_reason(member_runs, tmp_path, qtbot) -> None:
    # the AMAE run as if trained on other known normals: another calibration hold-out
    other = tmp_path / "run_other"
    shutil.copytree(member_runs["amae"], other)
    data = json.loads((other / "data.json").read_text())
    data["normal_calibration"][0], data["normal_train"][0] = data["normal_train"][0], data["normal_calibration"][0]
    (other / "data.json").write_text(json.dumps(data))
    library = _library(tmp_path, {**member_runs, "amae": other})
    job = EnsembleJob(library, candidates(library), "Mixed", tmp_path / "staging")
    with qtbot.waitSignal(job.failed, timeout=180_000) as got:
        job.start()
    message = got.args[0]
    assert "held out other calibration normals" in message and "\n" not in message
    assert len(library.entries()) == 2 and not list((tmp_path / "staging").glob("*.onnx"))


def test_the_detector_menu_combines_through_the_engine(member_runs, make_window, tmp_path, qtbot) -> None:
    w: MainWindow = make_window()
    tools = w.model_tools
    detector_menu = next(a.menu() for a in w.menuBar().actions() if a.text().replace("&", "") == "Detector")
    assert tools.ensemble_action in detector_menu.actions()
    errors: list[str] = []
    w.report_error = lambda title, text: errors.append(f"{title}: {text}")  # type: ignore[method-assign]
    assert tools.combine_detectors() is None and "needs at least two detectors" in errors[-1]  # empty library
    library = _library(tmp_path / "lib", member_runs)
    w.library = library
    dialog = EnsembleDialog(candidates(library), w)
    qtbot.addWidget(dialog)
    dialog.set_checked([0, 1])
    chosen = dialog.chosen()
    job = tools.combine_detectors(dialog)
    assert job is not None
    assert tools.combine_detectors(dialog) is None and "being built" in errors[-1]  # one at a time
    with qtbot.waitSignal(job.succeeded, timeout=180_000) as got:
        pass
    entry = got.args[0]
    assert library.find(entry.model_id) is not None and [e.card.get("method") for e in library.entries()].count("ensemble") == 1
    det = Detector(entry.path, provider="cpu")  # the engine's file, in the library
    assert det.meta.method == "ensemble" and len(det.meta.training["member_runs"]) == 2
    assert {m["model_id"] for m in entry.card["ensemble"]["members"]} == {c.entry.model_id for c in chosen}
    assert not job.staged.parent.exists() and not job.running  # the staging folder is emptied and removed
    assert "is in the model library" in w.statusBar().currentMessage() and len(errors) == 2


def test_stopping_a_build_leaves_nothing_behind(member_runs, tmp_path, qtbot) -> None:
    library = _library(tmp_path, member_runs)
    job = EnsembleJob(library, candidates(library), "Stopped", tmp_path / "staging")
    reported: list[str] = []
    job.failed.connect(reported.append)
    job.succeeded.connect(lambda entry: reported.append(f"registered {entry.name}"))
    job.start()
    qtbot.wait(2500)
    job.stop()  # what quitting the app does after its question
    qtbot.waitUntil(lambda: not job.running, timeout=15_000)
    qtbot.wait(200)  # the process's end reaches the job through the event loop
    assert len(library.entries()) == 2 and not list((tmp_path / "staging").glob("*"))
    assert reported == []  # no error dialog while the app quits
