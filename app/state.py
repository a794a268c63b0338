"""State objects: what the user chose, with signals. They hold no widgets.

Setters validate (a bad value raises ``ValueError`` naming it and the allowed ones) and emit
only when something changed; widgets listen and write back with their signals blocked while
they update themselves.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
from PySide6.QtCore import QObject, Signal

from cxrscreen.app.viewer.display import Window
from cxrscreen.engine.detector import NormalCalibration

OperatingMode = Literal["specificity", "score"]
_MODES: tuple[str, ...] = get_args(OperatingMode)
PRESET_SPECIFICITIES: tuple[float, ...] = (0.90, 0.95, 0.99)
COLORMAPS: tuple[str, ...] = ("inferno", "magma", "viridis", "plasma", "cividis")
HEATMAP_FLOORS: tuple[float, ...] = (0.90, 0.95, 0.99)  # "show evidence from" choices


class OperatingPoint(QObject):
    """The flag threshold: a specificity on the detector's known normals, or a raw score.

    A case is flagged when its score is strictly above :meth:`threshold` (the convention of
    :meth:`NormalCalibration.threshold_at_specificity`).

    Args:
        mode: "specificity" or "score".
        specificity: in (0, 1), used in "specificity" mode.
        score_threshold: a finite score, used in "score" mode.
    """

    changed = Signal()

    def __init__(self, mode: OperatingMode = "specificity", specificity: float = 0.95,
                 score_threshold: float = 0.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if mode not in _MODES:
            raise ValueError(f"operating mode must be one of {_MODES}, got {mode!r}")
        _check_specificity(specificity)
        _check_score(score_threshold)
        self._mode: OperatingMode = mode
        self._specificity = float(specificity)
        self._score = float(score_threshold)

    @property
    def mode(self) -> OperatingMode:
        """"specificity" or "score"."""
        return self._mode

    @property
    def specificity(self) -> float:
        """The target specificity (meaningful in "specificity" mode)."""
        return self._specificity

    @property
    def score_threshold(self) -> float:
        """The raw score threshold (meaningful in "score" mode)."""
        return self._score

    def set_specificity(self, specificity: float) -> None:
        """Flag at this specificity on known normals (switches to "specificity" mode)."""
        _check_specificity(specificity)
        if self._mode == "specificity" and self._specificity == float(specificity):
            return
        self._mode, self._specificity = "specificity", float(specificity)
        self.changed.emit()

    def set_score_threshold(self, threshold: float) -> None:
        """Flag above this raw score (switches to "score" mode)."""
        _check_score(threshold)
        if self._mode == "score" and self._score == float(threshold):
            return
        self._mode, self._score = "score", float(threshold)
        self.changed.emit()

    def threshold(self, calibration: NormalCalibration) -> float:
        """The score threshold for a detector: flagged means ``score > threshold``."""
        if self._mode == "score":
            return self._score
        return calibration.threshold_at_specificity(self._specificity)

    def achieved_specificity(self, calibration: NormalCalibration) -> float:
        """The fraction of the detector's calibration normals not flagged at this point."""
        scores = np.asarray(calibration.normal_scores)
        return float(np.mean(scores <= self.threshold(calibration)))

    def describe(self, calibration: NormalCalibration | None) -> str:
        """A one-line summary, e.g. "95 % specificity: score > 0.01234", with the warning when the
        calibration has too few normals for that specificity."""
        if self._mode == "score":
            head = "raw score threshold"
        else:
            head = f"{100 * self._specificity:g} % specificity"
        if calibration is None:
            return f"{head} (no detector)"
        text = f"{head}: flag score > {self.threshold(calibration):.5g}"
        note = calibration.operating_point_note(self._specificity) if self._mode == "specificity" else None
        return f"{text} (⚠ {note})" if note else text  # an export from too few normals says so on every row


class ViewerState(QObject):
    """How the current radiograph is shown: window, polarity, heatmap overlay.

    ``window`` None means the file's own rendering (what its reader produced).
    """

    window_changed = Signal()
    overlay_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._window: Window | None = None
        self._invert = False
        self._heatmap_visible = True
        self._opacity = 0.6
        self._colormap = COLORMAPS[0]
        self._contour_visible = False
        self._floor = 0.95

    # -------------------------------------------------------------- window and polarity
    @property
    def window(self) -> Window | None:
        """The VOI window, or None for the file's own rendering."""
        return self._window

    @property
    def invert(self) -> bool:
        """Whether the user inverted the polarity."""
        return self._invert

    def set_window(self, window: Window | None) -> None:
        """Set the window (None: the file's rendering)."""
        if window is not None and not isinstance(window, Window):
            raise ValueError(f"window must be a Window or None, got {type(window).__name__}")
        if window == self._window:
            return
        self._window = window
        self.window_changed.emit()

    def set_invert(self, invert: bool) -> None:
        """Invert (or not) the displayed polarity."""
        if bool(invert) == self._invert:
            return
        self._invert = bool(invert)
        self.window_changed.emit()

    # -------------------------------------------------------------- heatmap overlay
    @property
    def heatmap_visible(self) -> bool:
        return self._heatmap_visible

    @property
    def heatmap_opacity(self) -> float:
        """Alpha of the strongest colour, in [0, 1]."""
        return self._opacity

    @property
    def colormap(self) -> str:
        return self._colormap

    @property
    def contour_visible(self) -> bool:
        return self._contour_visible

    @property
    def heatmap_floor(self) -> float:
        """The level (rank among normal pixels) where colour starts, in [0, 0.99]."""
        return self._floor

    def set_heatmap_visible(self, visible: bool) -> None:
        if bool(visible) != self._heatmap_visible:
            self._heatmap_visible = bool(visible)
            self.overlay_changed.emit()

    def set_heatmap_opacity(self, opacity: float) -> None:
        if not (isinstance(opacity, (int, float)) and 0.0 <= opacity <= 1.0):
            raise ValueError(f"heatmap opacity must be in [0, 1], got {opacity!r}")
        if float(opacity) != self._opacity:
            self._opacity = float(opacity)
            self.overlay_changed.emit()

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            raise ValueError(f"colormap must be one of {COLORMAPS}, got {name!r}")
        if name != self._colormap:
            self._colormap = name
            self.overlay_changed.emit()

    def set_contour_visible(self, visible: bool) -> None:
        if bool(visible) != self._contour_visible:
            self._contour_visible = bool(visible)
            self.overlay_changed.emit()

    def set_heatmap_floor(self, floor: float) -> None:
        if not (isinstance(floor, (int, float)) and 0.0 <= floor <= 0.99):
            raise ValueError(f"heatmap floor must be in [0, 0.99], got {floor!r}")
        if float(floor) != self._floor:
            self._floor = float(floor)
            self.overlay_changed.emit()


class PrivacyState(QObject):
    """Whether patient identifiers are shown (hidden by default, never persisted)."""

    changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._show = False

    @property
    def show_identifiers(self) -> bool:
        return self._show

    def set_show_identifiers(self, show: bool) -> None:
        if bool(show) != self._show:
            self._show = bool(show)
            self.changed.emit(self._show)


def _check_specificity(value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"specificity must be in (0, 1), e.g. 0.95, got {value!r}")


def _check_score(value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(float(value))):
        raise ValueError(f"score threshold must be a finite number, got {value!r}")
