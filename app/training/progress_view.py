"""What a running training shows: stage, phase, a progress bar with ETA, the device, a live loss
plot (pyqtgraph) and the job's log. Fed by :class:`app.training.job.TrainingJob`'s signals.

Phase titles and the loss series come from the method's description in the engine's methods
JSON (:meth:`TrainingProgressView.set_method`): the app names no method's phases or losses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QTextCharFormat
from PySide6.QtWidgets import QGridLayout, QLabel, QPlainTextEdit, QProgressBar, QWidget

from cxrscreen.app.training.job import STAGE_TEXT
from cxrscreen.app.training.options import LossSeries, MethodInfo

COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#444444")


def format_duration(seconds: float) -> str:
    """1:02:03 / 4:05 / "—" for unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class TrainingProgressView(QWidget):
    """Progress of one job; :meth:`reset` before each."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.stage_label = QLabel("")
        self.stage_label.setStyleSheet("font-weight: bold;")
        self.device_label = QLabel("")
        self.device_label.setToolTip("Where the engine trains")
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.eta_label = QLabel("")
        self.eta_label.setMinimumWidth(230)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(170)
        self.plot.setLabel("bottom", "epoch")
        self.plot.setLabel("left", "loss (lower is better)")
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)  # "400 (x0.001)" reads as another number
            self.plot.getAxis(axis).setTextPen("#333333")
        self.plot.getPlotItem().setToolTip("Training loss at the end of each epoch. Some losses include a "
                                           "log-variance term and can go below zero; what matters is that it goes "
                                           "down and levels off.")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        # top right: the losses start high on the left and fall towards the bottom right, so that corner stays free
        self.plot.addLegend(offset=(-10, 10), labelTextColor="#222222")
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.info: MethodInfo | None = None
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setMinimumHeight(70)
        grid.addWidget(self.stage_label, 0, 0)
        grid.addWidget(self.device_label, 0, 1, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.bar, 1, 0)
        grid.addWidget(self.eta_label, 1, 1)
        grid.addWidget(self.plot, 2, 0, 1, 2)
        grid.addWidget(self.log_view, 3, 0, 1, 2)
        grid.setRowStretch(2, 3)
        grid.setRowStretch(3, 1)
        self.reset()

    def reset(self) -> None:
        """Empty, for a new job."""
        self.stage_label.setText("")
        self.device_label.setText("")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%p %")
        self.eta_label.setText("")
        self.points: dict[str, tuple[list[float], list[float]]] = {}
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves.clear()
        self.plot.getPlotItem().legend.clear()
        self.log_view.clear()
        self._phase_text = ""
        self._epoch_text = ""

    # ------------------------------------------------------------------ job signals
    def on_stage(self, stage: str) -> None:
        self.stage_label.setText(STAGE_TEXT.get(stage, stage))
        if stage != "train":
            self.bar.setRange(0, 0)  # busy: these steps report no steps
            self.eta_label.setText("")

    def set_method(self, info: MethodInfo) -> None:
        """The method being trained: its phase titles and loss series."""
        self.info = info

    def on_phase(self, phase: str, index: int, count: int, event: dict) -> None:
        what = self.info.phase_title(phase) if self.info is not None else phase
        self._phase_text = f"phase {index} of {count}: {what}" if index else what
        self._epoch_text = ""
        self.stage_label.setText(f"Training — {self._phase_text}")
        total = int(event.get("total") or 0)
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(0)

    def on_progress(self, step: int, total: int, eta_s: float) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(min(step, max(1, total)))
        self.eta_label.setText(f"about {format_duration(eta_s)} left in this phase" if math.isfinite(eta_s)
                               else "estimating the time left…")

    def on_epoch(self, event: dict[str, Any]) -> None:
        epoch = event.get("epoch")
        if not isinstance(epoch, (int, float)):
            return
        if not self.points and epoch > 1:  # a resumed run: first the epochs before the stop, from its log
            spec = getattr(self.sender(), "spec", None)
            if getattr(spec, "run_dir", None) is not None:
                self.load_history(Path(spec.run_dir) / "log.jsonl", before=float(epoch))
        self._plot_epoch(event, epoch)

    def load_history(self, log: Path, before: float) -> int:
        """Plot the epoch-end events of a run's ``log.jsonl`` up to (not including) epoch ``before``.

        Returns:
            How many epochs were read (0 when the log is missing or unreadable).
        """
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except OSError:
            return 0
        n = 0
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            e = ev.get("epoch") if isinstance(ev, dict) and ev.get("epoch_end") else None
            if isinstance(e, (int, float)) and e < before:
                self._plot_epoch(ev, e)
                n += 1
        return n

    def _plot_epoch(self, event: dict[str, Any], epoch: float) -> None:
        phase = str(event.get("phase", ""))
        self._epoch_text = f"epoch {int(epoch)} of {event.get('epochs', '?')}"
        self.stage_label.setText(f"Training — {self._phase_text}, {self._epoch_text}")
        for series in self._series(phase, event):
            name = series.key if series.phase is None else f"{series.phase}: {series.key}"
            xs, ys = self.points.setdefault(name, ([], []))
            xs.append(float(epoch))
            ys.append(float(event[series.key]))
            curve = self.curves.get(name)
            if curve is None:
                colour = COLOURS[len(self.curves) % len(COLOURS)]
                curve = self.plot.plot(xs, ys, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                                       symbolBrush=colour, name=series.title)
                self.curves[name] = curve
            else:
                curve.setData(xs, ys)
        last = max((max(xs) for xs, _ in self.points.values() if xs), default=0)
        # whole epochs on the axis while there are few of them (no "1.5")
        self.plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, int(last) + 1)]] if last <= 12 else None)

    def _series(self, phase: str, event: dict[str, Any]) -> list[LossSeries]:
        """The method's loss series this epoch-end event carries (those of another phase left out)."""
        declared = self.info.loss_series if self.info is not None else ()
        return [s for s in declared if (s.phase is None or s.phase == phase)
                and isinstance(event.get(s.key), (int, float)) and not isinstance(event.get(s.key), bool)]

    def on_device(self, device: str) -> None:
        gpu = device.startswith("cuda")
        self.device_label.setText(f"on GPU ({device})" if gpu else "on CPU")
        self.device_label.setToolTip(f"The engine trains on {device}")
        self.device_label.setStyleSheet("color: #1d7a1d; font-weight: bold;" if gpu else "font-weight: bold;")

    def on_log(self, level: str, text: str) -> None:
        fmt = QTextCharFormat()
        if level == "error":
            fmt.setForeground(QColor("#b00020"))
        elif level == "warning":
            fmt.setForeground(QColor("#a05a00"))
        cursor = self.log_view.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        prefix = "" if level == "info" else f"{level}: "
        cursor.insertText(("\n" if not self.log_view.document().isEmpty() else "") + prefix + text, fmt)
        self.log_view.ensureCursorVisible()

    def finish(self, text: str, ok: bool) -> None:
        """The job ended: a full bar when it succeeded, else the bar stays where the job got to."""
        if ok or self.bar.maximum() == 0:  # done, or a busy bar (no steps known)
            self.bar.setRange(0, 1)
            self.bar.setValue(1 if ok else 0)
        self.eta_label.setText("")
        self.stage_label.setText(text)
