"""Drift banner, drift records and site calibrations in the app (library, window, card, export)."""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrscreen.app.detector_card import card_sections
from cxrscreen.app.library import LibraryError, ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.engine.detector import read_metadata
from cxrscreen.engine.site_calibration import site_calibration
from tests.app.test_main_window import SCORING_TIMEOUT_MS, window  # noqa: F401 (the window fixture, shared)


def test_library_keeps_both_calibrations_and_the_chosen_one(tiny_detector: Path, tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "lib")
    entry = lib.add(tiny_detector)
    before = hashlib.sha256(entry.path.read_bytes()).hexdigest()
    meta = read_metadata(entry.path)
    site = site_calibration(np.linspace(1.0, 2.0, 40), meta.calibration, "Site A")
    entry = lib.add_site_calibration(entry.model_id, site)
    assert entry.active_calibration == site and entry.site_calibrations == [site]
    assert entry.card["calibration"]["n_normals"] == meta.calibration.n_normals  # own kept
    with pytest.raises(LibraryError, match="already has a calibration named"):
        lib.add_site_calibration(entry.model_id, site_calibration(np.ones(3), meta.calibration, "site a"))
    entry = lib.set_active_calibration(entry.model_id, None)
    assert entry.active_calibration is None and entry.site_calibrations == [site]  # chosen off, still kept
    with pytest.raises(LibraryError, match="no site calibration named"):
        lib.set_active_calibration(entry.model_id, "Site B")
    assert hashlib.sha256(entry.path.read_bytes()).hexdigest() == before  # the detector file never changes
    # the card shows every calibration with its count and intervals, and which one is in use
    sections = dict(card_sections(meta, entry.path, site_calibrations=[site], active=site))
    assert sections["Detector"][-1] == ("Calibration in use", "site calibration “Site A” (40 confirmed normals)")
    rows = dict(sections["Site calibration “Site A” (in use)"])
    assert rows["Normals"].startswith("40 ") and "95 % interval" in rows["Threshold at 95 %"]


def test_window_checks_drift_and_calibrates_on_confirmed_normals(qtbot, window: MainWindow, study: Path,
                                                                 tiny_detector: Path, tmp_path: Path) -> None:
    detector = tmp_path / "det.onnx"
    shutil.copyfile(tiny_detector, detector)
    digest = hashlib.sha256(detector.read_bytes()).hexdigest()
    window.load_detector(detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.open_paths([study])
    qtbot.waitUntil(lambda: not window.indexing_active and window.model.rowCount() > 0, timeout=10_000)
    qtbot.waitUntil(lambda: not window.is_scoring, timeout=SCORING_TIMEOUT_MS)
    # the worklist's banner says the drift check in words, and the database recorded it
    qtbot.waitUntil(lambda: window.calibration.report is not None, timeout=5_000)
    report = window.calibration.report
    assert window.worklist.drift_label.isVisible() and report.message in window.worklist.drift_label.text()
    assert "detector calibration (50 held-out normals)" in window.worklist.drift_label.text()
    got: list = []
    window.reading.store.query(lambda db: db.drift_rows(window.detector.meta.model_id), got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got[0] and got[0][-1].report["n"] == report.n and got[0][-1].folders == 1
    # the reader confirms some normals; they set a site operating point without re-scoring
    mid = window.detector.meta.model_id
    records = [r for r in window.model.records() if mid in r.scores]
    for r in records[:5]:
        window.reading.session.set_mark(r.path, "normal")
    cal = window.calibration.calibrate_from_marks(name="Site A")
    assert cal is not None and cal.n_normals == 5
    assert sorted(cal.normal_scores) == sorted(r.scores[mid].score for r in records[:5])
    assert window.detector.calibration == cal and window.library.find(mid).active_calibration == cal
    assert hashlib.sha256(detector.read_bytes()).hexdigest() == digest
    assert window.model.threshold == window.operating.threshold(cal)
    assert "5 confirmed normals of site calibration “Site A”" in window.operating_control.summary.text()
    assert "rests on too few normals" in window.operating_control.summary.text()  # 5 < 20 for 95 %
    # percentiles now among the site's normals; the export names the calibration
    top = max(records, key=lambda r: r.scores[mid].score)
    assert top.scores[mid].percentile == pytest.approx(float(cal.percentile(top.scores[mid].score)))
    out = tmp_path / "export.csv"
    assert window.export_csv(out, scope="all", include_identifiers=False) == out
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert {r["calibration"] for r in rows} == {"site calibration “Site A” (5 confirmed normals)"}
    assert "Site A" in window.worklist.drift_label.text()
    # the detector's own calibration can be chosen again; the site one stays in the library
    window.calibration.use(None)
    assert window.detector.calibration == window.detector.meta.calibration
    assert window.library.find(mid).site_calibrations == [cal]
    assert window.model.threshold == window.operating.threshold(window.detector.meta.calibration)
    # reloading the detector brings back the library's choice
    window.calibration.use("Site A")
    window.load_detector(detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None and window.detector.calibration.name == "Site A", timeout=10_000)


def test_a_folder_processed_unlike_the_training_normals_is_warned_from_its_images(qtbot, window: MainWindow,
                                                                                tiny_detector: Path, tmp_path: Path) -> None:
    """A detector that stores its normals' detail descriptors: a sharpened folder (scores unremarkable
    to the score test) gets the ⚠ banner from the acquisition check, the database records it, and a
    site calibration (set on the site's own images) turns the check off."""
    from PIL import Image

    from cxrscreen.app.controllers.calibration import DRIFT_STYLE
    from cxrscreen.engine.acquisition import AcquisitionReference, descriptor
    from tests.engine.test_acquisition import _chests, _sharpened, _with_reference

    reference = AcquisitionReference.from_descriptors(np.stack([descriptor(p) for p in _chests(range(60))]))
    detector = _with_reference(tiny_detector, reference, tmp_path / "with_reference.onnx")
    folder = tmp_path / "sharp"
    folder.mkdir()
    for i, p in enumerate(_chests(range(400, 416))):
        Image.fromarray(np.round(255 * _sharpened(p)).astype(np.uint8)).save(folder / f"{i:02d}.png")
    window.load_detector(detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.open_paths([folder])
    qtbot.waitUntil(lambda: not window.indexing_active and window.model.rowCount() == 16, timeout=10_000)
    qtbot.waitUntil(lambda: not window.is_scoring, timeout=SCORING_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.calibration.report is not None and window.calibration.report.n == 16, timeout=5_000)
    report = window.calibration.report
    assert report.acquisition is not None and report.acquisition.n == 16 and report.acquisition_differs
    label = window.worklist.drift_label
    assert label.text().startswith("⚠ ") and "acquired or processed unlike" in label.text()
    assert label.styleSheet() == DRIFT_STYLE and "Acquisition check (16 images" in label.toolTip()
    got: list = []
    window.reading.store.query(lambda db: db.drift_rows(window.detector.meta.model_id), got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got[0][-1].report["acquisition"]["differs"] and got[0][-1].report["warning"]
    mid = window.detector.meta.model_id
    for r in list(window.model.records())[:10]:
        window.reading.session.set_mark(r.path, "normal")
    site = window.calibration.calibrate_from_marks(name="Sharp site")
    assert site is not None and site.acquisition is not None and site.acquisition.n == 10
    # under the site calibration the folder is checked against the site's own (sharpened) normals
    r = window.calibration.report
    assert r.acquisition is not None and r.acquisition.n_reference == 10 and not r.acquisition_differs
    assert "acquired" not in label.text()
    assert window.library.find(mid).active_calibration.acquisition == site.acquisition  # kept by the library


def test_the_viewer_gives_the_case_it_scores_its_descriptor(tiny_detector: Path, tmp_path: Path) -> None:
    """A case the viewer scores before the worklist does (the worklist then skips it) still counts in
    the acquisition check: its analysis carries the descriptor, as batch scoring's result would."""
    from cxrscreen.app.case_loading import analyse
    from cxrscreen.engine.acquisition import AcquisitionReference, descriptor
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.synth.chest import generate_chest
    from tests.engine.test_acquisition import _with_reference

    pixels = generate_chest(7, 128).pixels
    reference = AcquisitionReference.from_descriptors(np.random.default_rng(0).dirichlet(np.ones(4), 20))
    with_ref = Detector(_with_reference(tiny_detector, reference, tmp_path / "ref.onnx"), provider="cpu")
    np.testing.assert_allclose(analyse(pixels, with_ref).acquisition, descriptor(pixels), rtol=0, atol=1e-12)
    assert analyse(pixels, Detector(tiny_detector, provider="cpu")).acquisition is None  # nothing to check against


def test_calibrating_without_confirmed_normals_says_what_to_do(qtbot, window: MainWindow, tiny_detector: Path,
                                                               monkeypatch) -> None:
    errors: list[tuple[str, str]] = []
    monkeypatch.setattr(window, "report_error", lambda title, text: errors.append((title, text)))
    window.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    assert window.calibration.calibrate_from_marks(name="x") is None
    assert errors and errors[0][0] == "No confirmed normals" and "confirmed normal" in errors[0][1]


def test_a_recalibrate_file_is_imported_for_its_own_detector_only(qtbot, window: MainWindow, tiny_detector: Path,
                                                                    tmp_path: Path, monkeypatch) -> None:
    from cxrscreen.engine.site_calibration import to_json

    errors: list[tuple[str, str]] = []
    monkeypatch.setattr(window, "report_error", lambda title, text: errors.append((title, text)))
    window.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    meta = window.detector.meta
    site = site_calibration(np.linspace(0.0, 1.0, 30), meta.calibration, "from the CLI")
    other = tmp_path / "other.json"
    other.write_text(to_json(site, "f" * 32))
    assert window.calibration.import_file(other) is None  # another detector's calibration
    assert errors and errors[-1][0] == "Cannot import the site calibration" and "f" * 32 in errors[-1][1]
    mine = tmp_path / "mine.json"
    mine.write_text(to_json(site, meta.model_id))
    assert window.calibration.import_file(mine) == site
    assert window.detector.calibration == site and window.library.find(meta.model_id).active_calibration == site
    window.calibration.fill_menu()
    labels = {a.text(): a.isChecked() for a in window.calibration.menu.actions() if a.isCheckable()}
    assert labels == {meta.calibration.label: False, site.label: True}


def test_the_banner_warns_only_when_the_promise_is_estimated_to_fail_by_more_than_5_points() -> None:
    """A large shift: ⚠ in the orange box; a small significant shift (95 % -> 91 %): orange text,
    no ⚠; a batch like the calibration's: plain."""
    from statistics import NormalDist

    from cxrscreen.app.controllers.calibration import CAUTION_STYLE, DRIFT_STYLE, QUIET_STYLE, drift_banner
    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.drift import check_drift

    def quantiles(n: int, shift: float = 0.0) -> np.ndarray:
        return np.array([NormalDist(shift, 1.0).inv_cdf((i + 0.5) / n) for i in range(n)])

    cal = NormalCalibration(tuple(quantiles(1000).tolist()), (0.0, 1.0), (0.0, 1.0), "test normals")
    styles = {}
    for shift in (0.0, 0.3, 0.6):
        report = check_drift(np.r_[quantiles(1500, shift), np.full(3500, 10.0)], cal)
        text, styles[shift] = drift_banner(report, "detector calibration")
        assert text.endswith(report.message + " [detector calibration]")
        assert text.startswith("⚠ ") == (shift == 0.6)
    assert styles == {0.0: QUIET_STYLE, 0.3: CAUTION_STYLE, 0.6: DRIFT_STYLE}
