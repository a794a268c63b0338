"""Adapting a detector to a new batch (issue 22, deliverable 4): the reader's confirmed normals of
the worklist are added to the detector's own known normals (links, no pixel copied), and the
New-detector panel is set up to retrain it with its method, settings and other folders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxrscreen.app.adaptation import (
    KNOWN_LINK, MIN_CONFIRMED, AdaptationError, explanation, training_job, write_adaptation_folder,
)
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.reader_sets import reader_marks_count
from cxrscreen.app.training.job import JobSpec, write_record


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        out.append(folder / f"img{i:03d}.png")
        out[-1].write_bytes(b"x")
    return out


def test_the_adaptation_folder_links_the_old_normals_and_the_confirmed_ones(tmp_path: Path) -> None:
    from cxrscreen.engine.io import list_image_files

    known = _images(tmp_path / "site" / "normal", 5)
    new = _images(tmp_path / "batch2", MIN_CONFIRMED + 2)
    folder = write_adaptation_folder(tmp_path / "site" / "normal", new[:MIN_CONFIRMED] + new[:1], tmp_path / "a", "dr a")
    assert (folder / KNOWN_LINK).is_symlink() and (folder / KNOWN_LINK).resolve() == (tmp_path / "site" / "normal")
    assert not (folder / "confirmed_abnormal").exists()  # the empty set is not left behind
    listed = sorted(p.resolve() for p in list_image_files([folder]))  # what the engine and the panel scan
    assert listed == sorted(p.resolve() for p in known + new[:MIN_CONFIRMED])  # no pixel copied, no duplicate
    assert reader_marks_count(folder) == MIN_CONFIRMED  # the card counts the reader's marks


@pytest.mark.parametrize("case, message", [
    ("few", "adapting needs at least"), ("gone", "is not there any more"), ("inside", "not a new batch"),
    ("exists", "already exists"),
])
def test_adaptation_is_refused_with_its_reason(tmp_path: Path, case: str, message: str) -> None:
    known = _images(tmp_path / "normal", 3)
    new = _images(tmp_path / "batch2", MIN_CONFIRMED)
    confirmed = {"few": new[:MIN_CONFIRMED - 1], "inside": new[1:] + known[:1]}.get(case, new)
    normal = tmp_path / ("missing" if case == "gone" else "normal")
    out = tmp_path / "out"
    if case == "exists":
        out.mkdir()
    with pytest.raises(AdaptationError, match=message):
        write_adaptation_folder(normal, confirmed, out, "dr a")
    assert case == "exists" or not out.exists()  # nothing half-written


def test_the_explanation_says_when_it_helps_and_when_it_hurts() -> None:
    text = explanation(40, 600, "DDAD")
    assert "40 confirmed normals" in text and "600 known normals" in text
    assert "When it helps" in text and "When it hurts" in text and "0.850 → 0.916" in text and "0.905 → 0.920" in text
    assert "0.966 → 0.936" in text and "keep the old detector" in text  # the old batch's cost (AMAE, measured)


@pytest.fixture
def window(make_window, fake_engine) -> MainWindow:
    return make_window(fake_engine.command)


def test_adapt_sets_up_the_detectors_training_again_with_the_confirmed_normals(
        qtbot, window: MainWindow, tmp_path: Path, tiny_detector: Path, role_folders: dict[str, Path],
        monkeypatch) -> None:
    from cxrscreen.app.training.panel import default_runs_root
    from cxrscreen.engine.synth import write_study

    w = window
    tools = w.model_tools
    detector_menu = next(a.menu() for a in w.menuBar().actions() if a.text().replace("&", "") == "Detector")
    assert tools.adapt_action in detector_menu.actions()
    w.report_error = lambda title, text: errors.append(f"{title}: {text}")  # type: ignore[method-assign]
    errors: list[str] = []
    assert tools.adapt_to_worklist(confirm=False) is None and "Load a detector from the model library" in errors[-1]
    entry = w.library.add(tiny_detector)
    w.load_detector(entry.path)
    qtbot.waitUntil(lambda: w.detector is not None, timeout=30_000)
    assert tools.adapt_to_worklist(confirm=False) is None and "was not trained in this app" in errors[-1]
    # the in-app training that made it (as the panel records it when the detector is registered)
    spec = JobSpec(name=entry.name, method="dual", preset="custom", base_preset="quick",
                   values={"members": 5, "epochs": 50}, normal=role_folders["normal"],
                   unlabeled=role_folders["unlabeled"], run_dir=default_runs_root(w.library) / "20260101-000000-dual",
                   counts={"normal": {"images": 8, "unreadable": 0}})
    write_record(spec, "registered", model_id=entry.model_id)
    assert training_job(default_runs_root(w.library), entry.model_id).spec.name == entry.name
    written = write_study(tmp_path / "batch2", MIN_CONFIRMED + 4, 2, size=64, formats=("png",), seed=77)
    w.open_paths([tmp_path / "batch2"])
    qtbot.waitUntil(lambda: not w.indexing_active and len(w.model.records()) == MIN_CONFIRMED + 6, timeout=30_000)
    normals = [s.path for s in written if s.label == 0]
    for p in normals[:MIN_CONFIRMED - 1]:
        w.reading.session.set_mark(p, "normal")
    assert tools.adapt_to_worklist(confirm=False) is None and "adapting needs at least 20" in errors[-1]
    w.reading.session.set_mark(normals[MIN_CONFIRMED - 1], "normal")
    panel = tools.adapt_to_worklist(confirm=False)
    assert panel is not None and panel.isVisible()
    qtbot.waitUntil(lambda: panel.catalog is not None and panel.zones["normal"].path is not None, timeout=30_000)
    # the detector's method, settings and unlabeled folder; the new known-normal folder; a new name
    assert panel.info.name == "dual" and panel.options_form.values()["members"] == 5
    assert panel.zones["unlabeled"].path == role_folders["unlabeled"]
    folder = panel.zones["normal"].path
    assert folder.parent == w.settings.data_file("reader-sets") and (folder / KNOWN_LINK).resolve() == \
        role_folders["normal"].resolve()
    assert panel.name_edit.text() == f"{entry.name} · adapted" and "Press Train" in panel.status_label.text()
    qtbot.waitUntil(lambda: panel.reader_counts.get("normal") == MIN_CONFIRMED, timeout=30_000)
    qtbot.waitUntil(lambda: panel.summaries["normal"] is not None, timeout=30_000)
    assert panel.summaries["normal"].count == 8 + MIN_CONFIRMED
    qtbot.waitUntil(panel.can_train, timeout=60_000)
    args = panel.check.result.args
    assert args[args.index("--normal") + 1] == str(folder) and args[args.index("--unlabeled") + 1] == \
        str(role_folders["unlabeled"])
    assert os.path.samefile(folder / KNOWN_LINK, role_folders["normal"])
    assert sum(e.startswith("Cannot adapt") for e in errors) == 3  # the three refusals above, nothing since
    # while that window trains a detector, it is not taken over
    from cxrscreen.app.training.panel import NewDetectorPanel

    monkeypatch.setattr(NewDetectorPanel, "busy", property(lambda self: True))
    assert tools.adapt_to_worklist(confirm=False) is None and "is training a detector" in errors[-1]
    assert panel.zones["normal"].path == folder
