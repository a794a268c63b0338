"""The radiograph viewer: pyqtgraph image, heatmap overlay, contour, corner text, colour bar.

Row-major ``pg.ImageItem`` per item, y axis pointing down (row 0 at the top), aspect locked.
The image is shown from uint16 codes with the window as ImageItem levels and polarity as a
lookup table (:mod:`app.viewer.display`), so window/level on a 3000 x 3000 16-bit image is one
table lookup per pixel. The overlay is a second ImageItem placed over exactly the image's
rectangle (:mod:`app.viewer.overlay`).

Mouse: wheel zooms at the pointer, left drag pans, right drag (or Ctrl + left drag) sets the
window, double click fits.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from cxrscreen.app.case_loading import LoadedCase
from cxrscreen.app.state import ViewerState
from cxrscreen.app.viewer.colorbar import ColorBar
from cxrscreen.app.viewer.display import DisplayImage, Window, auto_window, gray_lut, window_levels
from cxrscreen.app.viewer.overlay import contour_segments, heatmap_footprint, heatmap_to_image_points, overlay_lut

_LABEL_STYLE = ("color: #f0f0f0; background: rgba(0, 0, 0, 110); padding: 2px 5px; border-radius: 3px;")
# the least width the top-left title keeps beside the badge ("…/IM-0001.png (1 of 16)" elided to its ends)
_MIN_TITLE_ROOM = 120


@lru_cache(maxsize=16)
def _gray_lut(function: str, invert: bool) -> np.ndarray:
    return gray_lut(function, invert)  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def colormap_table(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a pyqtgraph colormap."""
    cmap = pg.colormap.get(name)
    return np.asarray(cmap.getLookupTable(0.0, 1.0, 256, alpha=False), dtype=np.uint8)[:, :3]


class RadiographViewBox(pg.ViewBox):
    """A ViewBox whose right drag (or Ctrl + left drag) reports window/level moves.

    Signals:
        window_dragged(float, float, bool): screen-pixel deltas (dx, dy) and whether the drag
            ended.
        double_clicked(): the user double-clicked the image area.
    """

    window_dragged = Signal(float, float, bool)
    double_clicked = Signal()

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.setMouseMode(pg.ViewBox.PanMode)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (pyqtgraph name)
        ctrl_left = ev.button() == Qt.MouseButton.LeftButton and bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ev.button() == Qt.MouseButton.RightButton or ctrl_left:
            ev.accept()
            delta = ev.screenPos() - ev.lastScreenPos()
            self.window_dragged.emit(float(delta.x()), float(delta.y()), bool(ev.isFinish()))
            return
        super().mouseDragEvent(ev, axis)

    def mouseDoubleClickEvent(self, ev) -> None:  # noqa: N802
        self.double_clicked.emit()
        ev.accept()


class RadiographView(QWidget):
    """Shows one :class:`LoadedCase` with its heatmap, following a :class:`ViewerState`.

    Args:
        state: window, polarity and overlay choices (the view writes the window back when the
            user drags).

    Signals:
        hover_text(str): what is under the pointer (position, value, evidence).
    """

    hover_text = Signal(str)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._case: LoadedCase | None = None
        self._contour_level: float | None = None
        self._title = ""
        self._shown_data: np.ndarray | None = None
        self.graphics = pg.GraphicsView(background=QColor(0, 0, 0))
        self.viewbox = RadiographViewBox()
        self.graphics.setCentralItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(10)
        self.contour_item = pg.PlotCurveItem(pen=pg.mkPen(QColor(0, 220, 255), width=1.6, cosmetic=True),
                                             antialias=True)
        self.contour_item.setZValue(20)
        for item in (self.image_item, self.overlay_item, self.contour_item):
            self.viewbox.addItem(item)
        self.colorbar = ColorBar()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.colorbar)
        self.title_label = self._corner_label()
        self.badge_label = self._corner_label()
        self.window_label = self._corner_label()
        self.cursor_label = self._corner_label()
        self.message_label = QLabel(self.graphics)
        self.message_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet("color: #d0d0d0; font-size: 15px;")
        self.graphics.installEventFilter(self)
        self.viewbox.window_dragged.connect(self._on_window_drag)
        self.viewbox.double_clicked.connect(self.fit)
        self.viewbox.sigRangeChanged.connect(self._update_window_label)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        state.window_changed.connect(self._apply_window)
        state.overlay_changed.connect(self._apply_overlay)
        self.show_message("Open a folder (Ctrl+O), drop files here, or open the demo study (Ctrl+Shift+D).")

    # ------------------------------------------------------------------ public API
    @property
    def case(self) -> LoadedCase | None:
        """The case on screen."""
        return self._case

    def show_message(self, text: str) -> None:
        """Show a message instead of (or over) the image: loading, errors, hints."""
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))
        self._layout_labels()

    def clear(self, message: str = "") -> None:
        """Remove the image."""
        self._case = None
        self._shown_data = None
        self.image_item.clear()
        self.overlay_item.clear()
        self.contour_item.setData([], [])
        for label in (self.title_label, self.badge_label, self.window_label, self.cursor_label):
            label.hide()
        self.colorbar.set_scale(None, self.state.heatmap_floor, None)
        self.show_message(message)

    def show_case(self, case: LoadedCase, title: str, keep_view: bool = False) -> None:
        """Show a decoded case (its window reset to the file's unless ``keep_view``)."""
        new_shape = self._case is None or self._case.image.shape != case.image.shape
        self._case = case
        self._shown_data = None
        self.show_message("")
        self._title = title
        self.title_label.show()
        if not keep_view:
            self.state.set_window(None)  # each image opens in its file's window
        self._apply_window()
        self._apply_overlay()
        if new_shape or not keep_view:
            self.fit()
        self._layout_labels()

    def set_title(self, title: str) -> None:
        """Change the top-left title (the case's name and place in the worklist)."""
        if title != self._title:
            self._title = title
            self._layout_labels()

    def set_badge(self, text: str, flagged: bool | None) -> None:
        """The top-right summary (score, percentile, flag)."""
        colour = "rgba(190, 30, 30, 210)" if flagged else "rgba(0, 0, 0, 110)"
        self.badge_label.setStyleSheet(_LABEL_STYLE.replace("rgba(0, 0, 0, 110)", colour))
        self.badge_label.setText(text)
        self.badge_label.setVisible(bool(text) and self._case is not None)
        self._layout_labels()

    def set_contour_level(self, level: float | None) -> None:
        """Draw the contour at this heatmap level (rank among normal pixels), or none."""
        self._contour_level = level
        self._apply_overlay()

    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self._case is None:
            return
        h, w = self._case.image.shape
        self.viewbox.setRange(QRectF(0, 0, w, h), padding=0.02)

    def one_to_one(self) -> None:
        """One image pixel per screen (device) pixel, centred where the view is now."""
        if self._case is None:
            return
        ratio = self.graphics.devicePixelRatioF() or 1.0
        (x0, x1), (y0, y1) = self.viewbox.viewRange()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w = self.viewbox.width() * ratio
        h = self.viewbox.height() * ratio
        self.viewbox.setRange(QRectF(cx - w / 2, cy - h / 2, w, h), padding=0.0)

    def zoom(self, factor: float) -> None:
        """Zoom in (factor > 1) or out about the view's centre."""
        if self._case is not None and factor > 0:
            self.viewbox.scaleBy((1.0 / factor, 1.0 / factor))

    def zoom_factor(self) -> float:
        """Screen pixels per image pixel (logical pixels)."""
        (x0, x1), _ = self.viewbox.viewRange()
        span = x1 - x0
        return self.viewbox.width() / span if span > 0 else 1.0

    def effective_window(self) -> Window | None:
        """The window in use (the state's, else the file's), or None for the file's rendering."""
        if self._case is None:
            return None
        return self.state.window or self._case.image.default_window

    # ------------------------------------------------------------------ rendering
    def _apply_window(self) -> None:
        case = self._case
        if case is None:
            return
        img = case.image
        window = self.effective_window()
        if window is None and img.rendering is not None:
            data, levels, function, natural = img.rendering, (0.0, 65535.0), "LINEAR", False
        else:
            if window is None:  # cannot happen (a rendering exists when no default window does)
                window = auto_window(img.values)
            lo, hi = window_levels(window)
            data, function, natural = img.values, window.function, img.inverted
            levels = (data.to_code(lo), data.to_code(hi))
        lut = _gray_lut(function, natural != self.state.invert)
        if self._shown_data is not data.codes:
            self.image_item.setImage(data.codes, autoLevels=False, levels=levels, lut=lut)
            self._shown_data = data.codes
        else:
            # setLookupTable re-renders only when the table object changes: let setLevels do it
            self.image_item.setLookupTable(lut, update=False)
            self.image_item.setLevels(levels, update=True)
        self._update_window_label()

    def _apply_overlay(self) -> None:
        case = self._case
        analysis = case.analysis if case is not None else None
        st = self.state
        if analysis is None or not st.heatmap_visible:
            self.overlay_item.clear()
            self.overlay_item.setVisible(False)
            self.contour_item.setData([], [])
            self.colorbar.set_scale(None, st.heatmap_floor, None)
            self.colorbar.setVisible(analysis is not None)
            return
        assert case is not None
        lut = overlay_lut(colormap_table(st.colormap), st.heatmap_opacity, st.heatmap_floor)
        h, w = case.image.shape
        self.overlay_item.setImage(analysis.overlay_codes, autoLevels=False, levels=None, lut=lut)
        self.overlay_item.setRect(QRectF(0, 0, w, h))
        self.overlay_item.setVisible(True)
        level = self._contour_level if st.contour_visible else None
        self._draw_contour(level)
        self.colorbar.setVisible(True)
        self.colorbar.set_scale(lut, st.heatmap_floor, level)

    def _draw_contour(self, level: float | None) -> None:
        case = self._case
        if level is None or case is None or case.analysis is None:
            self.contour_item.setData([], [])
            return
        a = case.analysis
        segs = contour_segments(a.levels, level)
        if len(segs) == 0:
            self.contour_item.setData([], [])
            return
        pts = heatmap_to_image_points(segs, case.image.shape, a.aspect, a.levels.shape[0], a.box)  # (N, 2, 2) x, y
        h, w = case.image.shape
        inside = ((pts[..., 0] >= 0) & (pts[..., 0] <= w) & (pts[..., 1] >= 0) & (pts[..., 1] <= h)).all(axis=1)
        pts = pts[inside]
        self.contour_item.setData(pts[..., 0].ravel(), pts[..., 1].ravel(), connect="pairs")

    # ------------------------------------------------------------------ interaction
    def _on_window_drag(self, dx: float, dy: float, finished: bool) -> None:
        case = self._case
        if case is None:
            return
        img = case.image
        base = self.effective_window()
        if base is None:  # the file's own rendering: start from its first preset, else auto
            base = img.presets[0] if img.presets else auto_window(img.values)
        span = max(img.value_range[1] - img.value_range[0], img.values.step)
        scale = max(base.width, 0.02 * span)
        width = base.width * math.exp(dx / 250.0)  # relative: 250 px right doubles the width... about e
        center = base.center + dy * scale / 400.0
        function = base.function
        minimum = 1.0 if function == "LINEAR" else img.values.step
        if function == "LINEAR" and img.values.step < 1.0:
            function = "LINEAR_EXACT"
            minimum = img.values.step
        width = min(max(width, minimum), 4.0 * span + 1.0)
        self.state.set_window(Window(center, width, function, "manual"))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        case = self._case
        if case is None or not self.viewbox.sceneBoundingRect().contains(scene_pos):
            self.cursor_label.hide()
            return
        p = self.viewbox.mapSceneToView(scene_pos)
        x, y = p.x(), p.y()
        h, w = case.image.shape
        if not (0 <= x < w and 0 <= y < h):
            self.cursor_label.hide()
            return
        col, row = int(x), int(y)
        value = case.image.values.value_at(row, col)
        text = f"x {col}  y {row}   {value:.6g} ({case.image.unit})"
        a = case.analysis
        if a is not None:
            gh, gw = a.overlay_codes.shape
            code = int(a.overlay_codes[min(gh - 1, int(y * gh / h)), min(gw - 1, int(x * gw / w))])
            fp = heatmap_footprint((h, w), a.aspect, a.box)  # type: ignore[arg-type]
            seen = fp.x <= x <= fp.x + fp.width and fp.y <= y <= fp.y + fp.height
            text += f"   evidence p{100 * code / 255:.0f}" if seen else "   (not seen by the detector)"
        self.cursor_label.setText(text)
        self.cursor_label.show()
        self._layout_labels()
        self.hover_text.emit(text)

    def _update_window_label(self) -> None:
        case = self._case
        if case is None:
            return
        window = self.effective_window()
        if window is None:
            wl = "file rendering (VOI LUT)"
        else:
            name = window.label or "window"
            wl = f"C {window.center:.6g}  W {window.width:.6g}  {name}"
            if window.function != "LINEAR":
                wl += f" ({window.function})"
        inv = "  inverted" if self.state.invert else ""
        self.window_label.setText(f"{wl}{inv}   zoom {self.zoom_factor():.2f}×")
        self.window_label.show()
        self._layout_labels()

    # ------------------------------------------------------------------ corner labels
    def _corner_label(self) -> QLabel:
        label = QLabel(self.graphics)
        label.setStyleSheet(_LABEL_STYLE)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        label.hide()
        return label

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.graphics and event.type() == QEvent.Type.Resize:
            self._layout_labels()
        return super().eventFilter(obj, event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._layout_labels()

    def _layout_labels(self) -> None:
        g = self.graphics
        m = 8
        for label in (self.title_label, self.badge_label, self.window_label, self.cursor_label):
            label.adjustSize()
        # the title gives way to the badge (the result matters more than the file name); where
        # that leaves the title too little room, the badge goes below it instead of over it
        badge = self.badge_label.width() if self.badge_label.isVisible() else 0
        room = g.width() - 3 * m - badge - 12
        badge_y = m
        if badge and room < _MIN_TITLE_ROOM:
            room = g.width() - 2 * m - 12
            badge_y = m + self.title_label.height() + 4
        self.title_label.setText(self.title_label.fontMetrics().elidedText(
            self._title, Qt.TextElideMode.ElideMiddle, max(40, room)))
        self.title_label.adjustSize()
        self.title_label.move(m, m)
        self.badge_label.move(max(m, g.width() - self.badge_label.width() - m), badge_y)
        self.window_label.move(m, max(m, g.height() - self.window_label.height() - m))
        cursor_y = g.height() - self.cursor_label.height() - m
        if self.window_label.isVisible() and \
                self.window_label.width() + self.cursor_label.width() + 3 * m > g.width():
            cursor_y -= self.window_label.height() + 4  # no room side by side: the pointer text goes above
        self.cursor_label.move(max(m, g.width() - self.cursor_label.width() - m), max(m, cursor_y))
        self.message_label.setGeometry(40, 0, max(10, g.width() - 80), g.height())

