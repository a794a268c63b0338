"""`cxrscreen score` over a folder of damaged files finishes with one row per file (issue 20).

The damaged files are the kinds the fuzzing benchmark makes (bench/fuzz_readers.py): truncated,
random bytes, a header field GDCM would abort on, an unknown VR, an infinite RescaleSlope, a
NaN float TIFF, a decompression bomb, broken JPEG markers.
"""
from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.uid import JPEGLossless

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.io.dicom_write import write_dicom
from cxrscreen.engine.synth import write_study


def _damaged_files(folder: Path) -> list[Path]:
    """One file per kind of damage; each must get a row with a reason."""
    ramp = (np.mgrid[0:64, 0:64][1] * 4).astype(np.uint8)
    out = []
    p = write_dicom(folder / "truncated.dcm", ramp)
    p.write_bytes(p.read_bytes()[:700])
    out.append(p)
    (folder / "noise.dcm").write_bytes(bytes(range(256)) * 8)
    out.append(folder / "noise.dcm")
    p = write_dicom(folder / "gdcm_abort.dcm", ramp, bits_stored=8, transfer_syntax=JPEGLossless)
    ds = pydicom.dcmread(p)
    ds.BitsStored, ds.HighBit = 7, 6  # GDCM aborts the process on this one
    ds.save_as(p)
    out.append(p)
    p = write_dicom(folder / "unknown_vr.dcm", ramp, tags={"Modality": "DX"})
    data = p.read_bytes()
    at = data.index(b"\x08\x00\x60\x00CS")
    p.write_bytes(data[:at + 4] + b"ZZ" + data[at + 6:])
    out.append(p)
    p = write_dicom(folder / "slope_inf.dcm", ramp)
    ds = pydicom.dcmread(p)
    ds[0x00281053] = RawDataElement(0x00281053, "DS", 4, b"inf ", 0, False, True)
    ds.save_as(p)
    out.append(p)
    arr = np.full((64, 64), 0.5, np.float32)
    arr[0, 0] = np.nan
    tifffile.imwrite(folder / "nan.tif", arr)
    out.append(folder / "nan.tif")
    Image.new("L", (32, 32)).save(folder / "bomb.png")
    data = bytearray((folder / "bomb.png").read_bytes())
    data[16:24] = struct.pack(">II", 16000, 16000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (folder / "bomb.png").write_bytes(bytes(data))
    out.append(folder / "bomb.png")
    Image.fromarray(ramp).save(folder / "markers.jpg")
    data = bytearray((folder / "markers.jpg").read_bytes())
    sos = data.index(b"\xff\xda")
    data[sos + 2:sos + 4] = b"\xff\xff"  # SOS segment length past the end
    (folder / "markers.jpg").write_bytes(bytes(data))
    out.append(folder / "markers.jpg")
    return out


def test_score_gives_one_row_per_damaged_file(tiny_detector: Path, tmp_path: Path) -> None:
    good = [im.path for im in write_study(tmp_path / "s", 2, 1, size=64, formats=("png", "dicom"), seed=0)]
    bad = _damaged_files(tmp_path / "s")
    out = tmp_path / "r.csv"
    assert cli(["score", str(tmp_path / "s"), "--model", str(tiny_detector), "--out", str(out)]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out, encoding="utf-8"))}
    assert sorted(rows) == sorted(p.name for p in good + bad)
    for p in good:
        assert rows[p.name]["score"] and not rows[p.name]["error"]
    for p in bad:
        assert not rows[p.name]["score"] and rows[p.name]["error"], p.name
        assert not rows[p.name]["error"].startswith("unexpected"), rows[p.name]["error"]
