"""The operating-point control: flag threshold as a specificity on known normals, or a raw score."""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QWidget

from cxrscreen.app.state import PRESET_SPECIFICITIES, OperatingPoint
from cxrscreen.engine.detector import NormalCalibration

_CUSTOM_SPEC = "custom specificity"
_RAW = "raw score threshold"


class OperatingPointControl(QWidget):
    """Combo (90 / 95 / 99 % specificity, custom, raw score) and a value box, bound to an
    :class:`OperatingPoint`.

    Signals:
        edited(): the user changed the operating point here.
    """

    edited = Signal()

    def __init__(self, state: OperatingPoint, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._calibration: NormalCalibration | None = None
        self._custom = False  # the user picked "custom specificity" (even if it equals a preset)
        self.mode_combo = QComboBox()
        for s in PRESET_SPECIFICITIES:
            self.mode_combo.addItem(f"{100 * s:g} % specificity", s)
        self.mode_combo.addItem(_CUSTOM_SPEC, _CUSTOM_SPEC)
        self.mode_combo.addItem(_RAW, _RAW)
        self.mode_combo.setToolTip("Flag images scoring above this share of the detector's held-out "
                                   "known-normal images (specificity), or above a raw score")
        self.value_box = QDoubleSpinBox()
        self.value_box.setKeyboardTracking(False)
        self.value_box.setToolTip("Specificity in percent, or the raw score threshold")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.mode_combo, 1)
        row.addWidget(self.value_box)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Flag at", row)
        form.addRow(self.summary)
        self.mode_combo.currentIndexChanged.connect(self._on_combo)
        self.value_box.valueChanged.connect(self._on_value)
        state.changed.connect(self.refresh)
        self.refresh()

    def set_calibration(self, calibration: NormalCalibration | None) -> None:
        """The active detector's calibration (for thresholds and the summary)."""
        self._calibration = calibration
        self.refresh()

    def refresh(self) -> None:
        """Show the state (signals blocked: no feedback loop)."""
        st = self.state
        with QSignalBlocker(self.mode_combo), QSignalBlocker(self.value_box):
            if st.mode == "score":
                self.mode_combo.setCurrentIndex(self.mode_combo.findData(_RAW))
                self.value_box.setDecimals(6)
                self.value_box.setRange(-1e9, 1e9)
                self.value_box.setSingleStep(self._score_step())
                self.value_box.setSuffix("")
                self.value_box.setValue(st.score_threshold)
                self.value_box.setEnabled(True)
            else:
                i = self.mode_combo.findData(st.specificity)
                if self._custom or i < 0:
                    i = -1
                self.mode_combo.setCurrentIndex(i if i >= 0 else self.mode_combo.findData(_CUSTOM_SPEC))
                self.value_box.setDecimals(1)
                self.value_box.setRange(50.0, 99.9)
                self.value_box.setSingleStep(0.5)
                self.value_box.setSuffix(" %")
                self.value_box.setValue(100 * st.specificity)
                self.value_box.setEnabled(i < 0)
        cal = self._calibration
        if cal is None:
            self.summary.setText("No detector loaded.")
            return
        t = st.threshold(cal)
        achieved, lo, hi = cal.achieved_specificity(t)
        which = f"{cal.n_normals} calibration normals" if not cal.name else \
            f"the {cal.n_normals} confirmed normals of site calibration “{cal.name}”"
        text = (f"flag score > {t:.5g}; {100 * achieved:.1f} % of {which} are at or below it "
                f"(95 % interval {100 * lo:.1f}–{100 * hi:.1f} %)")
        if st.mode != "score" and cal.floor_raises(st.specificity):
            text += (f"; raised to the {100 * st.specificity:g} % point of {len(cal.training_normal_scores)} training "
                     "normals, which score higher than the held-out ones")
        note = cal.operating_point_note(st.specificity) if st.mode != "score" else None
        self.summary.setText(text + (f"\n⚠ {note}" if note else ""))
        self.summary.setStyleSheet("color: #c06000;" if note else "")

    def _score_step(self) -> float:
        cal = self._calibration
        if cal is None:
            return 0.001
        s = cal.normal_scores
        spread = (s[-1] - s[0]) if len(s) > 1 else abs(s[0])
        return max(spread / 100.0, 1e-6)

    def _on_combo(self, index: int) -> None:
        data = self.mode_combo.itemData(index)
        self._custom = data == _CUSTOM_SPEC
        if data == _RAW:
            cal = self._calibration
            # start the raw threshold where the current point is, so nothing jumps
            value = self.state.threshold(cal) if cal is not None else self.state.score_threshold
            self.state.set_score_threshold(value)
        elif data == _CUSTOM_SPEC:
            if self.state.mode == "score":  # from a raw score: keep the specificity it had
                self.state.set_specificity(self.state.specificity)
            self.refresh()
            return
        else:
            self.state.set_specificity(float(data))
        self.edited.emit()

    def _on_value(self, value: float) -> None:
        if self.mode_combo.currentData() == _RAW:
            self.state.set_score_threshold(float(value))
        else:
            self.state.set_specificity(min(max(value / 100.0, 0.001), 0.999))
        self.edited.emit()
