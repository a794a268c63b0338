"""Checks against the real files in ../shared/data (skipped, with the reason, when absent)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrscreen.engine.io import read_header, read_radiograph, scan_folder

pytestmark = pytest.mark.real_data

SIIM = "torchxrayvision/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
SIIM_MONO1 = "torchxrayvision/Fake_MONOHR1.dcm"
RG1 = "pydicom-data/RG1_J2KI.dcm"


def test_labels_list_the_files_we_check(dicom_data: Path) -> None:
    with open(dicom_data / "labels.csv", newline="") as f:
        paths = {row["path"] for row in csv.DictReader(f)}
    assert {SIIM, SIIM_MONO1, RG1} <= paths


def test_siim_monochrome1_copy_is_the_negative_of_the_original(dicom_data: Path) -> None:
    mono2 = read_radiograph(dicom_data / SIIM)
    mono1 = read_radiograph(dicom_data / SIIM_MONO1)
    assert (mono2.meta.photometric, mono1.meta.photometric) == ("MONOCHROME2", "MONOCHROME1")
    assert mono2.pixels.shape == (1024, 1024) and mono2.meta.transfer_syntax == "1.2.840.10008.1.2.4.50"
    np.testing.assert_allclose(mono1.pixels, 1 - mono2.pixels, atol=1 / 255)
    np.testing.assert_array_equal(mono1.modality_values, mono2.modality_values)  # same stored pixels


def test_jpeg2000_monochrome1_chest_reads_with_lungs_dark(dicom_data: Path) -> None:
    r = read_radiograph(dicom_data / RG1)
    meta = r.meta
    assert (meta.rows, meta.columns, meta.bits_stored, meta.photometric) == (1955, 1841, 15, "MONOCHROME1")
    assert meta.view_position == "PA" and meta.pixel_spacing_mm is None  # file says 0\0
    h, w = r.pixels.shape

    def mean(y0: float, y1: float, x0: float, x1: float) -> float:
        return float(r.pixels[int(y0 * h): int(y1 * h), int(x0 * w): int(x1 * w)].mean())

    lungs = (mean(0.2, 0.5, 0.15, 0.35) + mean(0.2, 0.5, 0.62, 0.82)) / 2
    mediastinum = mean(0.3, 0.7, 0.45, 0.55)
    # Lungs (air, high exposure) are dark on a display; the mediastinum is bright.
    assert lungs < mediastinum - 0.1, (lungs, mediastinum)


def test_small_cr_monochrome1_files_read_inverted_with_their_window(dicom_data: Path) -> None:
    import pydicom

    path = dicom_data / "pydicom-testfiles" / "CR1_6154.dcm"
    ds = pydicom.dcmread(path)
    r = read_radiograph(path)
    assert r.pixels.shape == (16, 16) and r.meta.photometric == "MONOCHROME1"
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    x = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    window = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1
    np.testing.assert_allclose(r.pixels, 1 - window, atol=1e-5)


def test_scan_of_the_dicom_folder_reads_every_header(dicom_data: Path) -> None:
    items = list(scan_folder(dicom_data))
    assert len(items) == 6 and all(item.ok for item in items)
    assert [item.path for item in items] == sorted(item.path for item in items)  # stable order


def test_kermany_jpegs_read_exactly_like_pillow_convert_l(shared_data: Path) -> None:
    split = json.loads((shared_data / "kermany" / "splits" / "dev.json").read_text())
    paths = sorted(split["train"]["known_normal"])[:20]
    for rel in paths:
        path = shared_data / "kermany" / rel
        r = read_radiograph(path)
        expected = np.asarray(Image.open(path).convert("L")) / np.float32(255)
        np.testing.assert_array_equal(r.pixels, expected, err_msg=str(path))
        assert r.pixels.shape == (224, 224)


def test_full_size_files_read_at_their_size(shared_data: Path) -> None:
    folder = shared_data / "fullres"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:6]
    assert files, f"no images under {folder}"
    for path in files:
        header, r = read_header(path), read_radiograph(path)
        with Image.open(path) as im:
            assert r.pixels.shape == (im.height, im.width) == (header.rows, header.columns)
        assert 0.0 <= r.pixels.min() and r.pixels.max() <= 1.0
