"""The heatmap's colour bar: the fixed colour scale, labelled in ranks among normal pixels."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

# Ticks: rank among normal pixels -> label
_TICKS: tuple[tuple[float, str], ...] = (
    (0.50, "p50"), (0.75, "p75"), (0.90, "p90"), (0.95, "p95"), (0.99, "p99"), (1.0, "≥ max"))


class ColorBar(QWidget):
    """A vertical colour bar for the overlay LUT.

    The scale is fixed by the detector's normal calibration: level 0.95 means a heatmap value
    stronger than 95 % of the pixels of held-out normal images, in every image.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lut: np.ndarray | None = None
        self._floor = 0.9
        self._contour: float | None = None
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setMinimumWidth(100)
        self.setToolTip("Heatmap colour scale, the same for every image: where a pixel's evidence ranks "
                        "among all pixels of the detector's held-out normal images (p95 = stronger than "
                        "95 % of normal pixels). Below the lowest tick it is transparent.")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(100, 300)

    def set_scale(self, lut: np.ndarray | None, floor: float, contour_level: float | None) -> None:
        """Show the (256, 4) overlay LUT from ``floor`` to 1, and the contour level if any."""
        self._lut, self._floor, self._contour = lut, floor, contour_level
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().window())
        if self._lut is None:
            p.end()
            return
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        p.setFont(font)
        top, bottom = 34.0, self.height() - 12.0
        bar = QRectF(8.0, top, 18.0, max(10.0, bottom - top))
        p.setPen(self.palette().windowText().color())
        p.drawText(QRectF(4, 0, self.width() - 6, top - 4), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom | Qt.TextFlag.TextWordWrap,
                   "evidence vs\nnormal pixels")
        # gradient: one row per screen pixel, top = level 1
        n = max(2, int(bar.height()))
        levels = 1.0 - (np.arange(n) + 0.5) / n * (1.0 - self._floor)
        codes = np.clip(np.rint(levels * 255), 0, 255).astype(np.intp)
        rgb = np.ascontiguousarray(self._lut[codes, :3], dtype=np.uint8)  # (n, 3): a 1-pixel-wide image
        img = QImage(rgb.data, 1, n, 3, QImage.Format.Format_RGB888).copy()
        p.drawImage(bar, img)
        p.setPen(QPen(QColor(120, 120, 120)))
        p.drawRect(bar)
        p.setPen(self.palette().windowText().color())
        fm = p.fontMetrics()
        last_y = -1e9
        for level, label in _TICKS:
            if level < self._floor:
                continue
            y = bar.top() + (1.0 - level) / (1.0 - self._floor) * bar.height()
            if abs(y - last_y) < fm.height():
                continue  # no overlapping labels
            p.drawLine(int(bar.right()), int(y), int(bar.right()) + 4, int(y))
            p.drawText(int(bar.right()) + 7, int(y + fm.ascent() / 2 - 1), label)
            last_y = y
        if self._contour is not None and self._floor <= self._contour <= 1.0:
            y = bar.top() + (1.0 - self._contour) / (1.0 - self._floor) * bar.height()
            p.setPen(QPen(QColor(0, 220, 255), 2))
            p.drawLine(int(bar.left()) - 4, int(y), int(bar.right()) + 2, int(y))
        p.end()
