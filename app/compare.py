"""Two detectors side by side: a scatter of their scores over the worklist, flag thresholds drawn.

Records keep every detector's scores (:mod:`app.records`), so after re-scoring a worklist with
a new detector the previous scores are still there. :func:`compare_scores` pairs the two
detectors' results (pure, tested): cases scored by both, who flags what at the current
operating point, and Spearman's rank correlation. :class:`CompareDialog` plots them
(pyqtgraph): one point per case, coloured by agreement, each detector's threshold as a dashed
line; clicking a point shows that case in the viewer.

Thresholds: in specificity mode each detector is thresholded at that specificity on its *own*
calibration normals; with a raw score threshold (meaningful for one detector only) the other
detector gets the specificity that threshold achieves on the first one's normals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from cxrscreen.app.records import CaseRecord
from cxrscreen.app.state import OperatingPoint
from cxrscreen.engine.detector import NormalCalibration

Axis = Literal["score", "percentile"]
COLOURS = {"both": (196, 40, 40), "only_x": (230, 140, 20), "only_y": (120, 60, 180), "neither": (130, 130, 130)}
LEGEND = {"both": "flagged by both", "only_x": "flagged by X only", "only_y": "flagged by Y only", "neither": "flagged by neither"}


@dataclass(frozen=True)
class ModelRef:
    """A detector the comparison can use.

    Attributes:
        model_id: its id.
        name: its display name.
        calibration: its calibration normals (None: unknown, no threshold drawn).
    """

    model_id: str
    name: str
    calibration: NormalCalibration | None


@dataclass(frozen=True)
class Comparison:
    """Two detectors' results on the cases both scored.

    Attributes:
        paths: the cases, in worklist order.
        x, y: scores (or percentiles) of detector X and Y, (N,).
        threshold_x, threshold_y: the flag thresholds on the same axis (None: unknown).
        flag_x, flag_y: (N,) bool, score > threshold.
        spearman: rank correlation of the two (NaN with fewer than 3 cases).
    """

    paths: tuple[Path, ...]
    x: np.ndarray
    y: np.ndarray
    threshold_x: float | None
    threshold_y: float | None
    flag_x: np.ndarray
    flag_y: np.ndarray
    spearman: float

    def counts(self) -> dict[str, int]:
        """Cases per agreement group ("both", "only_x", "only_y", "neither")."""
        fx, fy = self.flag_x, self.flag_y
        return {"both": int(np.sum(fx & fy)), "only_x": int(np.sum(fx & ~fy)), "only_y": int(np.sum(~fx & fy)),
                "neither": int(np.sum(~fx & ~fy))}

    def groups(self) -> np.ndarray:
        """(N,) group name of each case."""
        g = np.full(len(self.paths), "neither", dtype=object)
        g[self.flag_x & self.flag_y] = "both"
        g[self.flag_x & ~self.flag_y] = "only_x"
        g[~self.flag_x & self.flag_y] = "only_y"
        return g


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; ties share their mean rank)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v), dtype=np.float64)
    r[order] = np.arange(1, len(v) + 1)
    uniq, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    if len(uniq) < len(v):
        sums = np.bincount(inverse, weights=r)
        r = (sums / counts)[inverse]
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (NaN when undefined: fewer than 3 cases or a constant)."""
    if len(x) < 3:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def thresholds(op: OperatingPoint, x: ModelRef, y: ModelRef, active_id: str | None) -> tuple[float | None, float | None]:
    """Each detector's raw score threshold at the operating point (see the module docstring)."""
    if op.mode == "specificity":
        spec = op.specificity
    else:
        active = x if x.model_id == active_id else (y if y.model_id == active_id else None)
        if active is None or active.calibration is None:
            spec = 0.95
        else:
            spec = min(max(op.achieved_specificity(active.calibration), 1e-6), 1 - 1e-6)

    def one(m: ModelRef) -> float | None:
        if m.calibration is None:
            return None
        if op.mode == "score" and m.model_id == active_id:
            return op.threshold(m.calibration)
        return m.calibration.threshold_at_specificity(spec)

    return one(x), one(y)


def compare_scores(records: Iterable[CaseRecord], x: ModelRef, y: ModelRef, threshold_x: float | None,
                   threshold_y: float | None, axis: Axis = "score") -> Comparison:
    """Pair the two detectors' results on every readable case scored by both."""
    if axis not in ("score", "percentile"):
        raise ValueError(f"axis must be 'score' or 'percentile', got {axis!r}")
    paths, sx, sy, px, py = [], [], [], [], []
    for rec in records:
        a, b = rec.scores.get(x.model_id), rec.scores.get(y.model_id)
        if a is None or b is None or not rec.readable:
            continue
        paths.append(rec.path)
        sx.append(a.score)
        sy.append(b.score)
        px.append(a.percentile)
        py.append(b.percentile)
    sx_a, sy_a = np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64)
    flag_x = sx_a > threshold_x if threshold_x is not None else np.zeros(len(paths), bool)
    flag_y = sy_a > threshold_y if threshold_y is not None else np.zeros(len(paths), bool)
    if axis == "score":
        vx, vy, tx, ty = sx_a, sy_a, threshold_x, threshold_y
    else:
        vx, vy = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
        tx = float(x.calibration.percentile(threshold_x)) if threshold_x is not None and x.calibration else None
        ty = float(y.calibration.percentile(threshold_y)) if threshold_y is not None and y.calibration else None
    return Comparison(tuple(paths), vx, vy, tx, ty, flag_x, flag_y, spearman(sx_a, sy_a))


class CompareDialog(QDialog):
    """Scatter of two detectors' scores over the worklist.

    Args:
        records: returns the worklist's records (read again on every refresh).
        models: the detectors that may be compared, by model id.
        operating: the window's operating point (thresholds follow it).
        active_id: the loaded detector's id.

    Signals:
        case_chosen(Path): a point was clicked.
    """

    case_chosen = Signal(object)

    def __init__(self, records: Callable[[], Iterable[CaseRecord]], models: Mapping[str, ModelRef],
                 operating: OperatingPoint, active_id: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare two detectors")
        self.setObjectName("compare_dialog")
        self.resize(900, 760)
        self._records = records
        self.models = dict(models)
        self.operating = operating
        self.active_id = active_id
        self.comparison: Comparison | None = None
        self.x_combo, self.y_combo, self.axis_combo = QComboBox(), QComboBox(), QComboBox()
        for mid, ref in self.models.items():
            label = f"{ref.name}  ({mid[:8]})"
            self.x_combo.addItem(label, mid)
            self.y_combo.addItem(label, mid)
        others = [i for i in range(self.y_combo.count()) if self.y_combo.itemData(i) != active_id]
        if active_id is not None and self.x_combo.findData(active_id) >= 0:
            self.x_combo.setCurrentIndex(self.x_combo.findData(active_id))
        if others:
            self.y_combo.setCurrentIndex(others[0])
        self.axis_combo.addItem("scores", "score")
        self.axis_combo.addItem("percentile among each detector's normals", "percentile")
        for c in (self.x_combo, self.y_combo, self.axis_combo):
            c.currentIndexChanged.connect(self.refresh)
        top = QHBoxLayout()
        for text, w in (("X:", self.x_combo), ("Y:", self.y_combo), ("Axes:", self.axis_combo)):
            top.addWidget(QLabel(text))
            top.addWidget(w, 1 if w is not self.axis_combo else 0)
        self.plot = pg.PlotWidget(background="w")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)  # "400 (x0.001)" reads as another number
            self.plot.getAxis(axis).setTextPen("#333333")
        self.legend = self.plot.addLegend(offset=(10, 10), labelTextColor="#222222")
        self.scatter = pg.ScatterPlotItem(size=7, pxMode=True, hoverable=True)
        self.scatter.sigClicked.connect(self._on_click)
        self.plot.addItem(self.scatter)
        self.line_x = pg.InfiniteLine(angle=90, pen=pg.mkPen((196, 40, 40), width=1.5, style=Qt.PenStyle.DashLine),
                                      label="X threshold", labelOpts={"position": 0.95, "color": (150, 30, 30)})
        self.line_y = pg.InfiniteLine(angle=0, pen=pg.mkPen((196, 40, 40), width=1.5, style=Qt.PenStyle.DashLine),
                                      label="Y threshold", labelOpts={"position": 0.9, "color": (150, 30, 30)})
        self.plot.addItem(self.line_x)
        self.plot.addItem(self.line_y)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.summary)
        self.operating.changed.connect(self.refresh)
        self.refresh()

    def set_pair(self, x_id: str, y_id: str) -> None:
        """Compare these two detectors."""
        self.x_combo.setCurrentIndex(self.x_combo.findData(x_id))
        self.y_combo.setCurrentIndex(self.y_combo.findData(y_id))
        self.refresh()

    def refresh(self) -> None:
        """Recompute from the worklist and redraw."""
        xid, yid = self.x_combo.currentData(), self.y_combo.currentData()
        if xid is None or yid is None:
            self.summary.setText("Two detectors with scores in this worklist are needed.")
            return
        x, y = self.models[xid], self.models[yid]
        tx, ty = thresholds(self.operating, x, y, self.active_id)
        axis: Axis = self.axis_combo.currentData()
        c = compare_scores(self._records(), x, y, tx, ty, axis)
        self.comparison = c
        groups = c.groups()
        brushes = [pg.mkBrush(*COLOURS[g], 190) for g in groups]
        self.scatter.setData(x=c.x, y=c.y, brush=brushes, pen=None, data=list(c.paths))
        self.legend.clear()
        counts = c.counts()
        for g in ("both", "only_x", "only_y", "neither"):
            if counts[g]:
                self.legend.addItem(pg.ScatterPlotItem(brush=pg.mkBrush(*COLOURS[g]), pen=None, size=8),
                                    f"{LEGEND[g]} ({counts[g]})")
        unit = "score" if axis == "score" else "percentile among normals"
        self.plot.setLabel("bottom", f"X: {x.name} — {unit}")
        self.plot.setLabel("left", f"Y: {y.name} — {unit}")
        for line, t in ((self.line_x, c.threshold_x), (self.line_y, c.threshold_y)):
            line.setVisible(t is not None)
            if t is not None:
                line.setValue(t)
        op = (f"{100 * self.operating.specificity:g} % specificity on each detector's normals"
              if self.operating.mode == "specificity" else "the raw score threshold (and its specificity for the other)")
        rho = "—" if not np.isfinite(c.spearman) else f"{c.spearman:.3f}"
        self.summary.setText(
            f"{len(c.paths):,} cases scored by both. Flags at {op}: both {counts['both']:,}, X only {counts['only_x']:,}, "
            f"Y only {counts['only_y']:,}, neither {counts['neither']:,}. Spearman rank correlation {rho}. "
            "Click a point to show the case.")
        self.plot.enableAutoRange()

    def _on_click(self, _item: pg.ScatterPlotItem, points: list, _ev: object = None) -> None:
        if len(points):
            self.case_chosen.emit(points[0].data())
