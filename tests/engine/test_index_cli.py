"""`cxrscreen index` and the header JSON it writes: identical headers after a round trip, the
same records and order as scan_folder, unreadable files reported, bad JSON refused, clean stop."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrscreen.engine.cli import main as cli_main
from cxrscreen.engine.index_cli import IDENTIFIER_FIELDS
from cxrscreen.engine.io import WindowPreset, scan_folder
from cxrscreen.engine.io.dicom_write import write_dicom
from cxrscreen.engine.io.meta_json import meta_from_json, meta_to_json

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    img = (np.arange(48 * 64).reshape(48, 64) % 4096).astype(np.uint16)
    write_dicom(root / "a.dcm", img, photometric="MONOCHROME1", bits_stored=12,
                window=[WindowPreset(2000, 3000, "lung"), WindowPreset(1000, 500, "bone")],
                tags={"PatientID": "P-123", "PatientName": "Doe^Jane", "ImagerPixelSpacing": [0.143, 0.15],
                      "NumberOfFrames": None})
    Image.fromarray((img >> 4).astype(np.uint8)).save(root / "sub" / "b.png")
    (root / "sub" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def test_header_round_trip_is_identical(folder: Path) -> None:
    metas = [item.meta for item in scan_folder(folder) if item.meta is not None]
    assert len(metas) == 2
    for meta in metas:
        obj = json.loads(json.dumps(meta_to_json(meta)))
        assert meta_from_json(obj) == meta
    dicom = metas[0]
    assert dicom.window_presets[1].name == "bone" and dicom.pixel_spacing_mm == (0.143, 0.15)


@pytest.mark.parametrize("change, message", [
    (lambda o: o.pop("rows"), "lacks: rows"),
    (lambda o: o.update(rows="48"), "rows must be an integer"),
    (lambda o: o.update(rows=True), "rows must be an integer"),
    (lambda o: o.update(format="gif"), "format must be one of"),
    (lambda o: o.update(voi="gamma"), "voi must be one of"),
    (lambda o: o.update(extra=1), "unknown header fields: extra"),
    (lambda o: o.update(pixel_spacing_mm=[0.1]), "pixel_spacing_mm must be two numbers"),
    (lambda o: o.update(window_presets=[{"center": 1, "width": 2}]), "window preset needs"),
    (lambda o: o.update(inverted="yes"), "inverted must be true or false"),
])
def test_malformed_header_json_is_refused(folder: Path, change, message: str) -> None:
    meta = next(item.meta for item in scan_folder(folder) if item.meta is not None)
    obj = meta_to_json(meta)
    change(obj)
    with pytest.raises(ValueError, match=message):
        meta_from_json(obj)
    with pytest.raises(ValueError, match="JSON object"):
        meta_from_json([1, 2])


def test_jsonl_stream_matches_scan_folder(folder: Path, capsys) -> None:
    assert cli_main(["index", "--identifiers", str(folder)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"event": "start", "roots": [str(folder)]}
    records = [ev for ev in lines if ev["event"] == "record"]
    expected = list(scan_folder(folder))
    assert [Path(r["path"]) for r in records] == [item.path for item in expected]
    assert [r["seq"] for r in records] == list(range(len(expected)))
    for rec, item in zip(records, expected):
        assert (rec["meta"] is None) == (item.meta is None)
        if item.meta is not None:
            assert meta_from_json(rec["meta"]) == item.meta
        assert rec["error"] == (item.error.reason if item.error else None)
    assert records[-1]["error"] and "c.png" in records[-1]["path"]
    assert lines[-1]["event"] == "done" and lines[-1]["count"] == 3 and lines[-1]["unreadable"] == 1


def test_jsonl_has_identifiers_only_when_asked(folder: Path, capsys) -> None:
    assert cli_main(["index", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "P-123" not in out and "Doe" not in out
    meta = next(json.loads(line)["meta"] for line in out.splitlines() if 'a.dcm"' in line)
    assert all(meta[name] is None for name in IDENTIFIER_FIELDS)
    assert meta["photometric"] == "MONOCHROME1" and meta["window_presets"][1]["name"] == "bone"  # the rest is kept
    assert cli_main(["index", "--identifiers", str(folder)]) == 0
    assert "P-123" in capsys.readouterr().out


def test_csv_has_no_patient_identifiers_and_refuses_to_overwrite(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "index.csv"
    assert cli_main(["index", str(folder), "--format", "csv", "--out", str(out)]) == 0
    text = out.read_text()
    assert "P-123" not in text and "Doe" not in text and "uid" not in text.splitlines()[0]
    rows = list(csv.DictReader(text.splitlines()))
    assert [Path(r["path"]).name for r in rows] == ["a.dcm", "b.png", "c.png"]
    assert rows[0]["photometric"] == "MONOCHROME1" and rows[0]["rows"] == "48" and rows[0]["bits_stored"] == "12"
    assert rows[2]["error"] and rows[2]["format"] == ""
    before = out.read_bytes()
    assert cli_main(["index", str(folder), "--format", "csv", "--out", str(out)]) == 1
    assert out.read_bytes() == before
    assert cli_main(["index", str(folder), "--format", "csv", "--out", "-"]) == 1  # csv needs a file


def test_sigterm_stops_with_code_3_and_a_stopped_event(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    img = np.full((32, 32), 100, np.uint8)
    write_dicom(root / "seed.dcm", img)
    for i in range(3000):  # hard links: many files, cheap to make
        (root / f"f{i:05d}.dcm").hardlink_to(root / "seed.dcm")
    proc = subprocess.Popen([sys.executable, "-m", "cxrscreen.engine", "index", str(root)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "start"
    assert json.loads(proc.stdout.readline())["event"] == "record"  # the first file comes at once
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    last = json.loads(out.splitlines()[-1])
    assert proc.returncode == 3 and last["event"] == "stopped"
    assert 0 < last["count"] < 3001
