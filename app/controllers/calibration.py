"""Drift and site calibration in the window: does this worklist score like the detector's normals, and which calibration is in use.

- After each scoring run (and when a detector or calibration is chosen), the active detector's
  scores in the worklist are checked for drift (:func:`engine.drift.check_drift`); the
  worklist's banner says the result in words and numbers (an orange box with ⚠ when drift is
  found and the promise is estimated to fail by more than 5 points: the flag rate cannot be
  trusted; orange text for a significant shift whose estimate stays within 5 points, or when the
  test cannot tell but the estimate falls short, as on a small folder; the ⚠ box too when the
  images were acquired unlike the detector's training normals, :mod:`engine.acquisition`, from the
  descriptors scoring gives each image and the study database keeps, against the detector's known
  normals or, under a site calibration made with descriptors, its confirmed normals), and the study database
  records it (folders counted, no path).
- Detector ▸ Calibration: the detector's own calibration or one of its site calibrations kept
  in the model library (:mod:`engine.site_calibration`); "Calibrate on confirmed normals…" makes
  one from the worklist's cases marked *confirmed normal* (their scores by the active
  detector: nothing is re-run and the detector file is unchanged); "Import site calibration…"
  adds one written by ``cxrscreen recalibrate``. A detector outside the library is added to it
  first (the library keeps both calibrations). The threshold, the percentiles, the export and
  the detector card follow the active calibration.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu

from cxrscreen.app.library import LibraryError
from cxrscreen.app.studydb import DriftRecord
from cxrscreen.engine.acquisition import BANDS, AcquisitionReport, check_acquisition, p_text
from cxrscreen.engine.acquisition import MIN_IMAGES as ACQ_MIN_IMAGES
from cxrscreen.engine.detector import Detector, DetectorError, NormalCalibration, acquisition_reference_words
from cxrscreen.engine.drift import DriftReport, check_drift
from cxrscreen.engine.site_calibration import SiteCalibrationError, read_file, site_calibration

if TYPE_CHECKING:
    from cxrscreen.app.main_window import MainWindow

logger = logging.getLogger(__name__)
DRIFT_STYLE = "QLabel { background: #fff0d8; color: #8a4a00; padding: 4px; border: 1px solid #e0a040; }"
CAUTION_STYLE = "QLabel { color: #8a4a00; padding: 2px; }"  # a small shift, or a short estimate on a small folder
QUIET_STYLE = "QLabel { color: palette(mid); padding: 2px; }"


def drift_banner(report: DriftReport, calibration_label: str) -> tuple[str, str]:
    """The worklist banner's text and style for a drift check: ⚠ and the orange box only when the
    promise is estimated to fail by more than 5 points (:attr:`DriftReport.warning`); orange text
    for a caution (a small significant shift, or a short estimate on a small folder); plain
    otherwise."""
    text = ("⚠ " if report.warning else "") + report.message + f" [{calibration_label}]"
    return text, DRIFT_STYLE if report.warning else CAUTION_STYLE if report.caution else QUIET_STYLE


class CalibrationController(QObject):
    """Drift banner, drift records and the choice of calibration for one window.

    Args:
        window: the main window (its detector, library, worklist, reading controller).
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.report: DriftReport | None = None
        self._recorded: tuple | None = None  # what was last written to the database
        self.menu: QMenu | None = None
        self.calibrate_action = QAction("Calibrate on confirmed normals…", window)
        self.calibrate_action.setToolTip("Set a site operating point on the worklist's cases marked confirmed normal "
                                         "(the detector file is not changed)")
        self.calibrate_action.triggered.connect(lambda: self.calibrate_from_marks())
        self.import_action = QAction("Import site calibration…", window)
        self.import_action.triggered.connect(lambda: self.import_file())
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(lambda: self.update_drift(record=False))

    # ------------------------------------------------------------------ calibration
    def apply_library(self, detector: Detector) -> None:
        """Use the library's active calibration for a detector that was just loaded."""
        entry = self.window.library.find(detector.meta.model_id)
        detector.set_calibration(entry.active_calibration if entry is not None else None)

    def site_calibrations(self) -> list[NormalCalibration]:
        """The active detector's site calibrations in the library."""
        d = self.window.detector
        entry = self.window.library.find(d.meta.model_id) if d is not None else None
        return entry.site_calibrations if entry is not None else []

    def use(self, name: str | None) -> None:
        """Make the site calibration ``name`` (None: the detector's own) the active one."""
        w = self.window
        if w.detector is None:
            return
        try:
            entry = w.library.set_active_calibration(w.detector.meta.model_id, name)
        except LibraryError as exc:
            w.report_error("Calibration not changed", exc.reason)
            return
        w.detector.set_calibration(entry.active_calibration)
        self.calibration_changed()
        w.statusBar().showMessage(f"Now using the {w.detector.calibration.label}.", 8000)

    def calibration_changed(self) -> None:
        """The active calibration changed: threshold, percentiles, panels and drift follow."""
        w = self.window
        if w.detector is None:
            return
        cal = w.detector.calibration
        w.model.set_active_model(w.detector.meta.model_id, w.operating.threshold(cal), cal)
        w.operating_control.set_calibration(cal)
        if w.current_path is not None:
            w.show_result(w.current_path)
        self.fill_menu()
        self.update_drift(record=False)

    def confirmed_normals(self) -> tuple[np.ndarray, np.ndarray]:
        """The active detector's scores (n,) of the worklist's cases marked confirmed normal, and the
        acquisition descriptors (k, 4) of those that have one."""
        w = self.window
        if w.detector is None:
            return np.zeros(0), np.zeros((0, len(BANDS)))
        mid = w.detector.meta.model_id
        marked = set(w.reading.session.marked("normal"))
        found = [r.scores[mid] for r in w.model.records() if r.path in marked and mid in r.scores]
        d = [s.acquisition for s in found if s.acquisition is not None]
        return (np.array([s.score for s in found], dtype=np.float64),
                np.asarray(d, dtype=np.float64).reshape(-1, len(BANDS)))

    def calibrate_from_marks(self, name: str | None = None) -> NormalCalibration | None:
        """A site calibration from the confirmed normals (asks for its name unless given); made active."""
        w = self.window
        if w.detector is None:
            w.report_error("No detector", "Load a detector first (Ctrl+L).")
            return None
        scores, descriptors = self.confirmed_normals()
        if scores.size == 0:
            w.report_error("No confirmed normals", "Mark cases of this batch as confirmed normal first (reading "
                                                   "marks); their scores set the site operating point.")
            return None
        need = NormalCalibration.normals_needed(w.operating.specificity)
        if name is None:
            warn = (f"\n\n⚠ {scores.size} confirmed normals: {100 * w.operating.specificity:g} % specificity needs at "
                    f"least {need}; the threshold will rest on too few." if scores.size < need else "")
            name, ok = QInputDialog.getText(w, "Calibrate on confirmed normals",
                                            f"A site calibration from {scores.size} confirmed normals of this "
                                            f"worklist. Name it (e.g. the site or the batch):{warn}")
            if not ok:
                return None
        try:
            cal = site_calibration(scores, w.detector.meta.calibration, name,
                                   source=f"{scores.size} reader-confirmed normals (marked in the app)",
                                   descriptors=descriptors)
        except SiteCalibrationError as exc:
            w.report_error("No site calibration", exc.reason)
            return None
        return self._keep(cal)

    def import_file(self, path: Path | None = None) -> NormalCalibration | None:
        """Add a site calibration file (``cxrscreen recalibrate``) of the active detector; made active."""
        w = self.window
        if w.detector is None:
            w.report_error("No detector", "Load the detector the calibration belongs to first (Ctrl+L).")
            return None
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(w, "Import site calibration", str(w.detector.path.parent),
                                                    "Site calibrations (*.json);;All files (*)")
            if not chosen:
                return None
            path = Path(chosen)
        try:
            cal = read_file(path, w.detector.meta.model_id)
        except SiteCalibrationError as exc:
            w.report_error("Cannot import the site calibration", exc.reason)
            return None
        return self._keep(cal)

    def _keep(self, cal: NormalCalibration) -> NormalCalibration | None:
        w = self.window
        if w.detector is None:
            return None
        mid = w.detector.meta.model_id
        try:
            if w.library.find(mid) is None:
                w.library.add(w.detector.path)  # the library keeps both calibrations
                w.model_tools.refresh_library_menu()
            w.library.add_site_calibration(mid, cal)
        except (LibraryError, DetectorError, OSError) as exc:
            w.report_error("Site calibration not kept", str(exc))
            return None
        w.detector.set_calibration(cal)
        self.calibration_changed()
        note = cal.operating_point_note(w.operating.specificity)
        w.statusBar().showMessage(f"Now using the {cal.label}." + (f" ⚠ {note}" if note else ""), 12000)
        return cal

    def fill_menu(self, menu: QMenu | None = None) -> None:
        """The Detector ▸ Calibration submenu: the choices, then the two actions."""
        if menu is not None:
            self.menu = menu
            menu.aboutToShow.connect(self.fill_menu)
        if self.menu is None:
            return
        self.menu.clear()
        w = self.window
        group = QActionGroup(self.menu)
        if w.detector is not None:
            own = w.detector.meta.calibration
            active = w.detector.calibration
            for cal in (own, *self.site_calibrations()):
                act = QAction(cal.label, self.menu, checkable=True)
                act.setChecked(cal.name == active.name)
                act.triggered.connect(lambda _c=False, name=cal.name or None: self.use(name))
                group.addAction(act)
                self.menu.addAction(act)
            self.menu.addSeparator()
        self.menu.addAction(self.calibrate_action)
        self.menu.addAction(self.import_action)
        for a in (self.calibrate_action, self.import_action):
            a.setEnabled(w.detector is not None)

    # ------------------------------------------------------------------ drift
    def scores_changed(self) -> None:
        """Scores or the operating point changed: the banner is recomputed shortly (one check per
        burst), except while a scoring run goes on (checked once at its end: the event loop stays free)."""
        if self.window.is_scoring:
            return
        if not self._timer.isActive():
            self._timer.start()

    def update_drift(self, record: bool = True) -> DriftReport | None:
        """Check the worklist's scores by the active detector; show it; with ``record``, store it."""
        w = self.window
        label = w.worklist.drift_label
        if w.detector is None:
            self.report = None
            label.hide()
            return None
        mid = w.detector.meta.model_id
        found = [r.scores[mid] for r in w.model.records() if mid in r.scores]
        scores = np.array([s.score for s in found], dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            self.report = None
            label.hide()
            return None
        cal = w.detector.calibration
        spec = w.operating.specificity if w.operating.mode == "specificity" else \
            min(max(w.operating.achieved_specificity(cal), 0.001), 0.999)
        r = check_drift(scores, cal, specificity=spec, acquisition=self._acquisition(found))
        self.report = r
        text, style = drift_banner(r, cal.label)
        label.setText(text)
        label.setStyleSheet(style)
        label.setToolTip("Drift check: the lower part of this worklist's scores against the calibration normals "
                         f"(p-value for 'no drift' allowing up to {100 * r.max_abnormal_share:.0f} % abnormal studies; "
                         f"share at or below the normals' {', '.join(f'{100 * q:g}' for q in r.levels)} % quantiles: "
                         f"{', '.join(f'{100 * b:.1f}' for b in r.batch_below)} %; the least an undrifted worklist has: "
                         f"{', '.join(f'{100 * f:.1f}' for f in r.floor)} %)" + _acquisition_tip(r))
        label.show()
        key = (mid, cal.name, r.n, round(r.p_value, 12))
        store = w.reading.store
        if record and store is not None and r.tested and key != self._recorded:
            self._recorded = key
            try:
                store.record_drift(DriftRecord(time.time(), w.reading.session.reader, mid, cal.label, len(w.roots),
                                               r.to_dict()))
            except RuntimeError as exc:  # the database thread has ended (window closing)
                logger.info("drift check not recorded: %s", exc)
        return r

    def _acquisition(self, found: list) -> AcquisitionReport | None:
        """The acquisition check of the worklist's images with descriptors, against the active
        detector's known normals or, while a site calibration is in use, its confirmed normals;
        None when that reference is missing."""
        w = self.window
        reference = w.detector.check_reference if w.detector is not None else None
        if reference is None:
            return None
        d = [s.acquisition for s in found if s.acquisition is not None]
        return check_acquisition(np.asarray(d, dtype=np.float64), reference,
                                 against=acquisition_reference_words(w.detector.calibration))


def _acquisition_tip(r: DriftReport) -> str:
    """The tooltip's line on the acquisition check."""
    a = r.acquisition
    if a is None:
        return ""
    if not a.tested:
        return f"\nAcquisition check: {a.n} images with a descriptor, too few (at least {ACQ_MIN_IMAGES})."
    shares = ", ".join(f"{b} {100 * v:.0f} %" for b, v in zip(BANDS, a.auc))
    return (f"\nAcquisition check ({a.n} images against {a.against}, {a.n_reference} of them): "
            f"share of image pairs where this folder's detail is stronger: {shares} (like the normals: "
            f"{100 * (0.5 - a.tolerance):.0f}–{100 * (0.5 + a.tolerance):.0f} %; {p_text(a.p_value)})")

