"""engine.synth.write_study: files read back by engine.io equal the generated pixels."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxrscreen.engine.io import read_header, read_radiograph, scan_folder
from cxrscreen.engine.synth import ENCODINGS, StudyImage, generate_chest, write_study

SIZE = 64


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> tuple[Path, list[StudyImage]]:
    """8 cases: one per encoding in ENCODINGS (4 normal, 4 with a lesion)."""
    folder = tmp_path_factory.mktemp("synth") / "study"
    return folder, write_study(folder, 4, 4, size=SIZE, seed=11)


def _regenerate(item: StudyImage):
    lesion = None if item.finding == "normal" else item.finding
    return generate_chest(item.seed, SIZE, lesion=lesion)


def test_every_encoding_written_once(study):
    folder, items = study
    assert [i.encoding for i in items] == list(ENCODINGS)
    assert sorted(p.name for p in folder.iterdir()) == sorted([i.path.name for i in items] + ["labels.csv"])
    assert sum(i.label for i in items) == 4
    assert {i.finding for i in items} == {"normal", "nodule", "consolidation", "effusion"}


def test_read_back_equals_generated_pixels_within_quantisation(study):
    _, items = study
    for item in items:
        image = read_radiograph(item.path)
        expected = _regenerate(item).pixels
        tolerance = 0.5 / item.encoding.max_value + 1e-6
        assert image.pixels.shape == (SIZE, SIZE)
        assert np.abs(image.pixels - expected).max() <= tolerance, item.path.name
        assert image.meta.format == item.encoding.format
        assert image.meta.bits_stored == item.encoding.bits


def test_monochrome1_files_show_dark_lungs(study):
    _, items = study
    mono1 = [i for i in items if i.encoding.photometric == "MONOCHROME1"]
    assert len(mono1) >= 2
    for item in mono1:
        chest = _regenerate(item)
        image = read_radiograph(item.path)
        assert image.meta.photometric == "MONOCHROME1"
        # stored values are inverted: lungs high in the file ...
        stored = pydicom.dcmread(item.path).pixel_array.astype(float)
        assert stored[chest.lung_mask].mean() > stored[chest.heart_mask].mean()
        # ... and dark once read
        assert image.pixels[chest.lung_mask].mean() < image.pixels[chest.heart_mask].mean() - 0.2


def test_dicom_tags_are_plausible_and_uids_unique(study):
    _, items = study
    dicoms = [i for i in items if i.encoding.format == "dicom"]
    sops = set()
    for item in dicoms:
        meta = read_header(item.path)
        enc = item.encoding
        assert (meta.modality, meta.view_position, meta.body_part) == (enc.modality, enc.view, "CHEST")
        assert meta.photometric == enc.photometric
        assert meta.spacing_source == ("ImagerPixelSpacing" if enc.modality == "DX" else "PixelSpacing")
        assert meta.pixel_spacing_mm == pytest.approx((430.0 / SIZE, 430.0 / SIZE), abs=1e-3)
        assert meta.window_presets and meta.window_presets[0].width == enc.max_value + 1
        assert meta.study_uid and meta.series_uid and meta.sop_uid
        sops.add(meta.sop_uid)
        ds = pydicom.dcmread(item.path)
        assert ds.SOPClassUID == ("1.2.840.10008.5.1.4.1.1.1" if enc.modality == "CR" else "1.2.840.10008.5.1.4.1.1.1.1")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(sops) == len(dicoms)


def test_labels_csv_and_masks(study):
    folder, items = study
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [i.path.name for i in items]
    assert [int(r["label"]) for r in rows] == [i.label for i in items]
    assert [r["finding"] for r in rows] == [i.finding for i in items]
    for row, item in zip(rows, items):
        if item.label == 0:
            assert row["mask"] == "" and item.mask_path is None
            continue
        mask_path = (folder / row["mask"]).resolve()
        assert mask_path == item.mask_path.resolve()
        assert mask_path.parent.name == "study_masks"  # a sibling: not scanned with the study
        mask = np.asarray(Image.open(mask_path))
        np.testing.assert_array_equal(mask > 127, _regenerate(item).mask)
        assert set(np.unique(mask)) <= {0, 255}


def test_scanning_the_study_finds_only_radiographs(study):
    folder, items = study
    found = list(scan_folder(folder))
    assert all(i.ok for i in found)
    assert [i.path for i in found] == sorted(i.path for i in items)


def test_same_seed_same_study_other_seed_other_study(tmp_path):
    a = write_study(tmp_path / "a", 2, 1, size=32, formats=("dicom",), seed=5)
    b = write_study(tmp_path / "b", 2, 1, size=32, formats=("dicom",), seed=5)
    c = write_study(tmp_path / "c", 2, 1, size=32, formats=("dicom",), seed=6)
    for x, y in zip(a, b):
        assert (x.seed, x.finding) == (y.seed, y.finding)
        assert read_header(x.path).sop_uid == read_header(y.path).sop_uid
        np.testing.assert_array_equal(read_radiograph(x.path).pixels, read_radiograph(y.path).pixels)
    assert [x.seed for x in a] != [z.seed for z in c]
    assert read_header(a[0].path).sop_uid != read_header(c[0].path).sop_uid


def test_formats_restrict_the_encodings_and_mask_folder_is_settable(tmp_path):
    items = write_study(tmp_path / "s", 3, 3, size=32, formats=("png",), mask_folder=tmp_path / "m")
    assert {i.path.suffix for i in items} == {".png"}
    assert {i.encoding.bits for i in items} == {8, 16}
    assert all(i.mask_path.parent == tmp_path / "m" for i in items if i.label)
    assert not (tmp_path / "s_masks").exists()


def test_only_normals_write_no_mask_folder(tmp_path):
    items = write_study(tmp_path / "n", 2, 0, size=32)
    assert [i.label for i in items] == [0, 0]
    assert not (tmp_path / "n_masks").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"n_normal": -1}, ValueError, "n_normal"),
        ({"n_abnormal": 1.5}, ValueError, "n_abnormal"),
        ({"formats": ("jpeg",)}, ValueError, "jpeg"),
        ({"formats": ()}, ValueError, "formats"),
        ({"formats": "png"}, TypeError, "formats"),
        ({"lesions": ("tumour",)}, ValueError, "tumour"),
        ({"size": 4}, ValueError, "size"),
        ({"variation": 5.0}, ValueError, "variation"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path, kwargs, error, words):
    args = {"n_normal": 1, "n_abnormal": 1, **kwargs}
    with pytest.raises(error, match=words):
        write_study(tmp_path / "bad", args.pop("n_normal"), args.pop("n_abnormal"), **{"size": 32, **args})
    assert not (tmp_path / "bad").exists()  # checked before anything is written


def test_generation_options_are_passed_on(tmp_path):
    items = write_study(tmp_path / "o", 1, 1, size=32, formats=("png",), seed=4, lesion_strength=0.5,
                        variation=0.2, pose=False, marker=False, lesions=("effusion",))
    for item in items:
        lesion = None if item.finding == "normal" else item.finding
        expected = generate_chest(item.seed, 32, lesion=lesion, lesion_strength=0.5, variation=0.2, pose=False, marker=False)
        tolerance = 0.5 / item.encoding.max_value + 1e-6
        assert np.abs(read_radiograph(item.path).pixels - expected.pixels).max() <= tolerance
    assert {i.finding for i in items} == {"normal", "effusion"}
