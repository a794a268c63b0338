"""Pure pieces: CSV rows, pseudonyms, settings, model library, detector card."""
from __future__ import annotations

import csv
import datetime
from pathlib import Path

import pytest

from app.detector_card import card_sections
from app.export import COLUMNS, ExportContext, export_rows, select_records, write_export
from app.library import ModelLibrary
from app.pseudonym import key_fingerprint, new_key, pseudonymise
from app.records import CaseRecord, CaseScore
from app.settings import AppSettings
from engine.detector import read_metadata
from engine.io import RadiographMeta

KEY = bytes(range(32))


def _ctx(tiny_detector: Path, include: bool = False) -> ExportContext:
    return ExportContext(read_metadata(tiny_detector), threshold=0.5, operating_point="95 % specificity",
                         include_identifiers=include, key=KEY,
                         exported_at=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))


def _records(mid: str) -> list[CaseRecord]:
    meta = RadiographMeta(path=Path("a.dcm"), format="dicom", rows=4, columns=4, patient_id="PID-7",
                          patient_name="DOE^JOHN", study_uid="1.2.3", series_uid="1.2.3.4",
                          view_position="PA", modality="DX")
    return [CaseRecord(Path("/d/a.dcm"), meta, scores={mid: CaseScore(0.75, 98.5)}),
            CaseRecord(Path("/d/=cmd.png"), None, scores={mid: CaseScore(0.25, 40.0)}),
            CaseRecord(Path("/d/bad.dcm"), None, error="truncated")]


def test_pseudonyms_are_keyed_stable_and_kind_specific() -> None:
    a = pseudonymise("PID-7", KEY, "patient")
    assert a == pseudonymise(" PID-7 ", KEY, "patient")  # DICOM padding ignored
    assert a.startswith("P-") and len(a) == 2 + 16
    assert a != pseudonymise("PID-7", new_key(), "patient")  # another installation
    assert a[2:10] != pseudonymise("PID-7", KEY, "study")[2:10]
    assert len(key_fingerprint(KEY)) == 8 and key_fingerprint(KEY) not in a
    with pytest.raises(ValueError):
        pseudonymise("x", b"short", "patient")


def test_export_rows_hide_identifiers_and_neutralise_formulas(tiny_detector: Path, tmp_path: Path) -> None:
    ctx = _ctx(tiny_detector)
    recs = _records(ctx.model.model_id)
    rows = export_rows(recs, ctx)
    assert set(rows[0]) == set(COLUMNS)
    assert rows[0]["patient"] == pseudonymise("PID-7", KEY, "patient")
    assert rows[0]["series"] == pseudonymise("1.2.3.4", KEY, "series")
    assert "DOE" not in str(rows) and "PID-7" not in str(rows) and "1.2.3" not in rows[0]["study"]
    assert rows[0]["flagged"] == "1" and rows[1]["flagged"] == "0" and rows[2]["flagged"] == ""
    assert rows[2]["status"] == "unreadable: truncated"
    assert rows[0]["exported_at"] == "2026-01-02T03:04:05+00:00"
    assert rows[0]["id_mode"].endswith(key_fingerprint(KEY))
    real = export_rows(recs, _ctx(tiny_detector, include=True))
    assert real[0]["patient"] == "PID-7" and real[0]["id_mode"] == "real"
    assert select_records(recs, "flagged", ctx.model.model_id, 0.5) == recs[:1]
    out = tmp_path / "x.csv"
    assert write_export(out, rows) == 3
    with pytest.raises(FileExistsError):
        write_export(out, rows)  # never over an existing file unless told
    back = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert back[1]["path"] == "/d/=cmd.png"  # a path is not a formula unless it starts with one


def test_formula_cells_are_prefixed(tiny_detector: Path) -> None:
    ctx = _ctx(tiny_detector, include=True)
    meta = RadiographMeta(path=Path("x"), format="dicom", rows=4, columns=4, patient_id="=HYPERLINK(1)")
    rows = export_rows([CaseRecord(Path("=evil.dcm"), meta)], ctx)
    assert rows[0]["path"] == "'=evil.dcm" and rows[0]["patient"] == "'=HYPERLINK(1)"


def test_settings_round_trip_and_bad_values(settings_path: Path) -> None:
    s = AppSettings(settings_path)
    assert s.operating_specificity == 0.95 and s.provider == "auto" and s.last_folder is None
    key = s.pseudonym_key()
    s.set_last_folder(Path("/data/a"))
    s.set_last_folder(Path("/data/b"))
    s.set_operating_point("score", 0.9, 0.123)
    s.set_heatmap_style(False, 0.4, "viridis", True)
    s.sync()
    t = AppSettings(settings_path)
    assert t.pseudonym_key() == key  # one key per installation
    assert t.last_folder == Path("/data/b") and t.recent_folders == [Path("/data/b"), Path("/data/a")]
    assert (t.operating_mode, t.operating_score) == ("score", 0.123)
    assert (t.heatmap_visible, t.heatmap_opacity, t.colormap, t.contour_visible) == (False, 0.4, "viridis", True)
    t._q.setValue("heatmap/opacity", "7")  # out of range: the default, not the bad value
    t._q.setValue("detector/provider", "tpu")
    assert t.heatmap_opacity == 0.6 and t.provider == "auto"
    with pytest.raises(ValueError):
        t.set_provider("tpu")  # type: ignore[arg-type]


def test_model_library_adds_and_lists(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "models")
    assert lib.entries() == []
    entry = lib.add(tiny_detector)
    assert entry.path.is_file() and entry.path.parent.name == entry.model_id
    assert entry.card["method"] == "test-local-contrast" and entry.card["source"] == str(tiny_detector.resolve())
    assert lib.add(tiny_detector) == entry  # adding again keeps the copy
    (tmp_path / "models" / "junk").mkdir()
    (tmp_path / "models" / "junk" / "model.onnx").write_bytes(b"x")  # no card: skipped
    assert [e.model_id for e in lib.entries()] == [entry.model_id]


def test_detector_card_sections(tiny_detector: Path) -> None:
    sections = dict(card_sections(read_metadata(tiny_detector), tiny_detector, "CPUExecutionProvider", "no GPU"))
    assert set(sections) >= {"Detector", "Intended use and limitations", "Method", "Calibration on known normals",
                             "Training", "Validation metrics"}
    cal = dict(sections["Calibration on known normals"])
    assert cal["Normals"].startswith("50 ") and "Threshold at 99 %" in cal
    assert dict(sections["Detector"])["Runs on"] == "CPU — fallback: no GPU"
    assert dict(sections["Validation metrics"]) == {"": "none in the file"}
