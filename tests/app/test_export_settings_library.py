"""Pure pieces: CSV rows, pseudonyms, settings, model library, detector card."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import os
from pathlib import Path

import pytest

from cxrscreen.app.detector_card import card_sections
from cxrscreen.app.export import COLUMNS, ExportContext, export_path, export_rows, select_records, write_export
from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.pseudonym import key_fingerprint, new_key, pseudonymise
from cxrscreen.app.records import CaseRecord, CaseScore
from cxrscreen.app.settings import AppSettings
from cxrscreen.engine.detector import read_metadata
from cxrscreen.engine.io import RadiographMeta

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
    # without identifiers the path is relative to the opened folder (here none: the file name),
    # and that starts with "=": guarded
    assert back[1]["path"] == "'=cmd.png"
    assert real[1]["path"] == "/d/=cmd.png"  # the full path is not a formula: it starts with "/"


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


def test_settings_of_version_0_run_the_engine_by_its_namespaced_module(settings_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from cxrscreen.app.settings import SETTINGS_VERSION

    old_module = "engine"  # the engine's module before the one namespace (settings version 0)
    for command, expected in [
        (["/opt/engine env/bin/python", "-m", old_module], ["/opt/engine env/bin/python", "-m", "cxrscreen.engine"]),
        (["/opt/py", "-X", "utf8", "-m", old_module, "--quiet"], ["/opt/py", "-X", "utf8", "-m", "cxrscreen.engine", "--quiet"]),
        (["/opt/cxrscreen-app", old_module], ["/opt/cxrscreen-app", old_module]),  # no -m: not a module, kept
        (["/opt/py", "-m", "engines"], ["/opt/py", "-m", "engines"]),
    ]:
        settings_path.unlink(missing_ok=True)
        q = QSettings(str(settings_path), QSettings.Format.IniFormat)  # as version 0 left it: no version key
        q.setValue("engine/command", " ".join(f"'{c}'" for c in command))
        q.sync()
        s = AppSettings(settings_path)
        assert s.engine_command == expected
        s.sync()
        again = AppSettings(settings_path)  # migrated once, stamped with the version
        assert again.engine_command == expected and again._q.value("settings/version") in (SETTINGS_VERSION,
                                                                                             str(SETTINGS_VERSION))
    fresh = settings_path.with_name("fresh.ini")
    AppSettings(fresh).sync()
    assert not fresh.exists() or "version" not in fresh.read_text()  # an empty store stays empty


def test_pseudonym_key_lives_in_its_own_private_file(settings_path: Path) -> None:
    s = AppSettings(settings_path)
    key = s.pseudonym_key()
    s.sync()
    assert s.key_path == settings_path.parent / "pseudonym.key"
    assert os.stat(s.key_path).st_mode & 0o777 == 0o600
    assert not settings_path.exists() or key.hex() not in settings_path.read_text()
    assert AppSettings(settings_path).pseudonym_key() == key
    os.chmod(s.key_path, 0o644)  # made readable by someone: back to owner-only, same key
    assert AppSettings(settings_path).pseudonym_key() == key and os.stat(s.key_path).st_mode & 0o777 == 0o600


def test_a_key_kept_in_the_settings_moves_to_the_key_file(settings_path: Path) -> None:
    legacy = bytes(range(100, 132))
    old = AppSettings(settings_path)
    old._q.setValue("privacy/pseudonym_key", legacy.hex())  # where version 0.1 kept it
    old.sync()
    assert legacy.hex() in settings_path.read_text()
    s = AppSettings(settings_path)
    assert s.pseudonym_key() == legacy  # the same pseudonyms as before the move
    s.sync()
    assert legacy.hex() not in settings_path.read_text()
    assert s.key_path.read_text().strip() == legacy.hex() and os.stat(s.key_path).st_mode & 0o777 == 0o600
    assert AppSettings(settings_path).pseudonym_key() == legacy


def test_export_paths_are_relative_with_identifying_parts_pseudonymised(tiny_detector: Path, tmp_path: Path) -> None:
    root = Path("/data/hospital")
    ctx = dataclasses.replace(_ctx(tiny_detector), roots=(Path("/data"), root))
    meta = RadiographMeta(path=Path("x"), format="dicom", rows=4, columns=4, patient_id="MRN77", patient_name="SMITH^JOHN",
                          accession_number="ACC991", study_date="20240131")
    cases = {
        root / "chest" / "IM-0001.dcm": "chest/IM-0001.dcm",  # nothing identifying: kept
        root / "1.2.840.113619.2.55.3.6" / "1.2.840.113619.2.55.3.6.1.dcm": None,  # UIDs
        root / "DOE^JANE" / "a.png": None,  # a DICOM person name
        root / "2024" / "12345678" / "a.png": None,  # a long number (an id, a birth date)
        root / "Smith John" / "a.png": None,  # the case's patient name
        root / "MRN77_chest" / "a.png": None,  # the case's patient id
        Path("/elsewhere/ACC991.dcm"): None,  # outside the opened folders: the file name only
    }
    for path, expected in cases.items():
        got = export_path(path, meta, ctx)
        assert not got.startswith("/") and "/data" not in got and "hospital" not in got
        if expected is not None:
            assert got == expected
        else:
            for word in ("1.2.840", "DOE", "JANE", "12345678", "Smith", "MRN77", "ACC991", "elsewhere"):
                assert word not in got, (path, got)
            assert "F-" in got
    assert export_path(root / "1.2.3.4.5" / "a.dcm", meta, ctx) == export_path(root / "1.2.3.4.5" / "a.dcm", meta, ctx)
    assert export_path(root / "1.2.3.4.5.dcm", meta, ctx).endswith(".dcm")  # the extension stays
    assert export_path(root / "2024" / "12345678" / "a.png", meta, ctx).startswith("2024/F-")
    shown = dataclasses.replace(ctx, include_identifiers=True)
    assert export_path(root / "DOE^JANE" / "a.png", meta, shown) == "/data/hospital/DOE^JANE/a.png"
    out = tmp_path / "with_ids.csv"
    write_export(out, export_rows(_records(ctx.model.model_id), shown))
    assert os.stat(out).st_mode & 0o777 == 0o600  # a file with identifiers: owner only


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
