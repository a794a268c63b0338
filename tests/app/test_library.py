"""The model library: atomic install, rename, delete, import, default, library names."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrscreen.app.library import CARD_FILE, MODEL_FILE, ROC_FILE, LibraryError, ModelLibrary
from cxrscreen.engine.detector import DetectorError, read_metadata


def _fresh_export(tiny_detector: Path, folder: Path) -> Path:
    """A copy of the test detector standing in for a fresh `cxrscreen export` output."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(tiny_detector, folder / "model.onnx"))


def test_register_moves_the_file_in_with_its_card_and_attachments(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    staged = _fresh_export(tiny_detector, tmp_path / "run" / "export")
    roc = tmp_path / "roc.png"
    roc.write_bytes(b"\x89PNG fake")
    entry = lib.register(staged, {"training_job": {"method": "ddad"}, "validation": {"auroc": {"value": 0.9}}},
                         {ROC_FILE: roc}, name="Site A  chest")
    assert not staged.exists()  # moved, not copied
    assert entry.name == "Site A chest" and entry.roc_image == entry.folder / ROC_FILE
    assert entry.card["training_job"] == {"method": "ddad"} and entry.validation == {"auroc": {"value": 0.9}}
    assert entry.card["calibration"]["n_normals"] == 50 and entry.card["added"]
    assert read_metadata(entry.path).model_id == entry.model_id  # the file itself, complete
    assert sorted(p.name for p in lib.root.iterdir()) == [entry.model_id]  # no temporary folder left
    with pytest.raises(LibraryError):  # the same model twice
        lib.register(_fresh_export(tiny_detector, tmp_path / "again"), {})


def test_a_bad_file_is_never_registered(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    bad = tmp_path / "half.onnx"
    bad.write_bytes(b"\x08\x07 not a complete onnx file")
    with pytest.raises(DetectorError):
        lib.register(bad, {})
    assert lib.entries() == [] and bad.exists()  # left where it was
    staged = _fresh_export(tiny_detector, tmp_path / "export")
    with pytest.raises(LibraryError):
        lib.register(staged, {}, {"../escape.png": bad})  # attachment names are plain file names
    assert lib.entries() == [] and staged.is_file()  # the staged file is given back
    assert not any(p.name.startswith(".incoming") for p in lib.root.iterdir())


def test_hidden_and_incomplete_folders_are_not_listed(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    entry = lib.add(tiny_detector)
    # an install interrupted half-way (the app was killed) stays hidden
    incoming = lib.root / ".incoming-123"
    incoming.mkdir()
    shutil.copy(tiny_detector, incoming / MODEL_FILE)
    (lib.root / "no_card").mkdir()
    shutil.copy(tiny_detector, lib.root / "no_card" / MODEL_FILE)
    assert [e.model_id for e in lib.entries()] == [entry.model_id]


def test_rename_delete_and_default(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    entry = lib.add(tiny_detector, name="first")
    assert entry.name == "first" and lib.default_id() is None
    renamed = lib.rename(entry.model_id, "  Site B   2026 ")
    assert renamed.name == "Site B 2026"
    assert read_metadata(entry.path).name == "local contrast (test)"  # the detector file is never rewritten
    meta = lib.named(read_metadata(tiny_detector))
    assert meta.name == "Site B 2026" and meta.model_id == entry.model_id
    with pytest.raises(LibraryError):
        lib.rename(entry.model_id, "   ")
    with pytest.raises(LibraryError):
        lib.rename("no-such-id", "x")
    lib.set_default(entry.model_id)
    assert lib.default_id() == entry.model_id and lib.entries()[0].is_default
    assert json.loads((lib.root / "library.json").read_text())["default"] == entry.model_id
    lib.delete(entry.model_id)
    assert lib.entries() == [] and lib.default_id() is None and not entry.folder.exists()
    assert not any(p.name.startswith(".deleted") for p in lib.root.iterdir())
    with pytest.raises(LibraryError):
        lib.set_default("no-such-id")


def test_a_corrupt_library_file_means_no_default(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    entry = lib.add(tiny_detector)
    (lib.root / "library.json").write_text("{not json")
    assert lib.default_id() is None and lib.default() is None
    lib.set_default(entry.model_id)
    assert lib.default().model_id == entry.model_id
    (entry.folder / CARD_FILE).write_text("[]")  # a card written by something else: skipped, logged
    assert lib.entries() == []


def test_card_of_an_app_trained_detector_reads_as_a_clinician_would(tiny_detector: Path, tmp_path: Path) -> None:
    from cxrscreen.app.library_view import entry_sections

    lib = ModelLibrary(tmp_path / "models")
    job = {"method": "ddad", "preset": "paper",
           "settings": {"threads": 0, "device": "auto", "calibration_fraction": 0.1, "epochs": 250},
           "folders": {"normal": "/data/normal", "unlabeled": "/data/unlabeled"},
           "counts": {"normal": {"images": 600, "unreadable": 2}, "unlabeled": {"images": 500}},
           "images_used": {"normal_train": 540, "normal_calibration": 60, "unlabeled": 500}}
    entry = lib.register(_fresh_export(tiny_detector, tmp_path / "export"), {"training_job": job}, name="site")
    rows = dict(row for _, section in entry_sections(entry) for row in section)
    assert "CPU threads all cores" in rows["Settings"] and "Train on auto (GPU if available)" in rows["Settings"]
    assert "Held-out normals (fraction) 10%" in rows["Settings"] and "Epochs 250" in rows["Settings"]
    assert rows["Normal folder"] == "/data/normal — 600 images, 2 unreadable (left out)"
    assert rows["Images used"].startswith("540 known normals for training")


def test_a_second_detector_with_the_same_name_is_renamed_and_says_so(tiny_detector: Path, tmp_path: Path) -> None:
    import dataclasses

    import onnx

    from cxrscreen.engine.detector import METADATA_KEY

    lib = ModelLibrary(tmp_path / "models")
    first = lib.register(_fresh_export(tiny_detector, tmp_path / "a"), {}, name="Site chest")
    other = _fresh_export(tiny_detector, tmp_path / "b")  # the same graph under another model id
    model = onnx.load(str(other))
    meta = dataclasses.replace(read_metadata(other), model_id="0" * 32)
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(other))
    second = lib.register(other, {}, name="site  CHEST")  # the same name but for case and spaces
    assert first.name == "Site chest" and first.renamed_note is None
    assert second.name == "site CHEST (2)"
    assert second.renamed_note == ("A detector named “site CHEST” is already in the library, "
                                   "so this one was added as “site CHEST (2)”.")
    with pytest.raises(LibraryError, match="already named “Site chest”"):
        lib.rename(second.model_id, "Site chest")
    assert lib.rename(second.model_id, "Site chest, second").renamed_note is None
    assert lib.rename(first.model_id, "Site chest").name == "Site chest"  # its own name is no clash
