"""Identifiers only where the user asked for them (issues 14 and 20), checked by a scan.

DICOMs are written with a known patient name, id, accession number, study date and study /
series / SOP instance UIDs; then every command that writes output runs on them (index as JSON
lines and CSV, score as CSV and JSON lines, eval, demo-detector and export of a small detector
trained in a folder named after the patient, the app's CSV export with identifiers hidden), and
every output file and everything printed is searched for those identifiers. With
``--identifiers`` (or identifiers shown in the app's export) they are found: the scan can see.

The engine's commands write file paths as the user gave them, so the engine's inputs here have
neutral names; the app's export, which writes paths relative to the opened folder with
identifying parts pseudonymised, gets files named by their SOP Instance UID in a folder named
after the patient.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from cxrscreen.app.export import ExportContext, export_rows, write_export
from cxrscreen.app.pseudonym import new_key
from cxrscreen.app.records import CaseRecord, CaseScore
from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.detector import read_metadata
from cxrscreen.engine.io import scan_folder
from cxrscreen.engine.io.dicom_write import write_dicom
from cxrscreen.engine.synth.chest import generate_chest

PATIENT = {"PatientName": "ZEBRAQUIST^HORTENSE", "PatientID": "MRN8675309", "AccessionNumber": "ACC4242XYZ",
           "StudyDate": "19870412", "StudyInstanceUID": "1.2.826.0.1.3680043.99.1111",
           "SeriesInstanceUID": "1.2.826.0.1.3680043.99.2222"}
SOP_UIDS = [f"1.2.826.0.1.3680043.99.3333.{i}" for i in range(4)]
SECRETS = ("ZEBRAQUIST", "HORTENSE", "MRN8675309", "ACC4242XYZ", "19870412", "1987-04-12", "3680043.99")


def _dicoms(folder: Path, named_by_uid: bool) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, uid in enumerate(SOP_UIDS):
        path = folder / (f"{uid}.dcm" if named_by_uid else f"case_{i}.dcm")
        chest = generate_chest(int(rng.integers(1 << 30)), 96).pixels  # a frontal chest: the scope gate passes it
        write_dicom(path, np.round(np.clip(chest, 0, 1) * 4095).astype(np.uint16), bits_stored=12,
                    tags={**PATIENT, "SOPInstanceUID": uid})
        paths.append(path)
    return paths


def _found(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace").upper()
    return [s for s in SECRETS if s.upper() in text]


def _scan(files: list[Path], printed: str) -> dict[str, list[str]]:
    hits = {str(p): _found(p.read_bytes()) for p in files}
    hits["printed"] = _found(printed.encode())
    return {k: v for k, v in hits.items() if v}


@pytest.mark.slow
def test_no_command_writes_identifiers_unless_asked(tiny_detector: Path, tmp_path: Path, capsys) -> None:
    study = tmp_path / "study"
    images = _dicoms(study, named_by_uid=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"study/{p.name},{i % 2}\n" for i, p in enumerate(images)))
    out = tmp_path / "out"
    work = tmp_path / "ZEBRAQUIST_HORTENSE_MRN8675309"  # hospital folders are often named after patients
    commands = [
        ["index", str(study)],
        ["index", str(study), "--out", str(out / "index.jsonl")],
        ["index", str(study), "--format", "csv", "--out", str(out / "index.csv")],
        ["score", str(study), "--model", str(tiny_detector), "--out", str(out / "scores.csv")],
        ["score", str(study), "--model", str(tiny_detector), "--format", "jsonl", "--out", "-"],
        ["eval", "--model", str(tiny_detector), "--labels", str(labels), "--out", str(out / "eval.json"), "--bootstrap", "10"],
        ["demo-detector", "--out", str(out / "demo.onnx"), "--epochs", "1", "--normals", "80", "--work", str(work),
         "--progress", "none"],
        ["export", str(work / "run"), "--out", str(out / "exported.onnx"), "--name", "tiny"],
    ]
    for argv in commands:
        assert cli(argv) == 0, argv
    printed = capsys.readouterr()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} == {"index.jsonl", "index.csv", "scores.csv", "eval.json", "eval.scores.csv", "eval.png",
                                       "demo.onnx", "exported.onnx"}
    assert _scan(files, printed.out + printed.err) == {}
    for detector in (out / "demo.onnx", out / "exported.onnx"):  # no run or data folder paths either
        assert str(tmp_path) not in detector.read_bytes().decode("latin-1")
        training = read_metadata(detector).training
        assert training["normal_train"] > 0 and len(training["run_sha256"]) == 64
        source = dict(training["source"])  # the kind and how the hold-out was made (counts and words), no path
        hold_out = source.pop("hold_out")
        assert source == {"kind": "folders"} and set(hold_out) <= {"unit", "patients", "of", "key", "shared",
                                                                   "patients_known"}
    # the demo detector stores no acquisition reference: its synthetic lesions are not real disease
    assert "acquisition" not in read_metadata(out / "demo.onnx").scope

    # asked for: found (the scan sees them)
    assert cli(["index", str(study), "--identifiers", "--out", str(tmp_path / "ids.jsonl")]) == 0
    assert set(_found((tmp_path / "ids.jsonl").read_bytes())) >= {"ZEBRAQUIST", "MRN8675309", "ACC4242XYZ", "3680043.99"}


def test_app_export_hides_identifiers_in_every_column(tiny_detector: Path, tmp_path: Path) -> None:
    root = tmp_path / "opened"
    _dicoms(root / "ZEBRAQUIST^HORTENSE" / "MRN8675309", named_by_uid=True)
    (root / f"{SOP_UIDS[0]}.9.dcm").write_bytes(b"DICM broken")  # an unreadable file keeps its reason, not its name
    meta = read_metadata(tiny_detector)
    records = [CaseRecord(item.path, item.meta, None if item.error is None else item.error.reason,
                          scores={} if item.error else {meta.model_id: CaseScore(0.5, 50.0)})
               for item in scan_folder(root)]
    assert len(records) == 5 and sum(r.meta is not None for r in records) == 4

    def export(include: bool) -> Path:
        ctx = ExportContext(meta, 0.1, "95 % specificity", include, new_key(),
                            datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), roots=(root,))
        path = tmp_path / f"export_{include}.csv"
        write_export(path, export_rows(records, ctx))
        return path

    hidden = export(False)
    assert _scan([hidden], "") == {}
    assert str(tmp_path) not in hidden.read_text(encoding="utf-8-sig")
    assert set(_found(export(True).read_bytes())) >= {"ZEBRAQUIST", "MRN8675309", "3680043.99"}
