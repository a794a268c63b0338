"""Heatmap controls: show, opacity, colours, where colour starts, contour; bound to a :class:`ViewerState`."""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QSlider, QWidget

from cxrscreen.app.state import COLORMAPS, HEATMAP_FLOORS, ViewerState


class HeatmapControl(QWidget):
    """Widgets for the overlay part of a :class:`ViewerState`."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.visible_box = QCheckBox("Show heatmap (H)")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Opacity of the strongest evidence ([ and ])")
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(list(COLORMAPS))
        self.floor_combo = QComboBox()
        for f in HEATMAP_FLOORS:
            self.floor_combo.addItem(f"p{100 * f:g} of normal pixels", f)
        self.floor_combo.setToolTip("Colour only evidence stronger than this share of the pixels of the "
                                    "detector's held-out normal images (a normal image has about "
                                    "1 − p of its pixels above it)")
        self.contour_box = QCheckBox("Contour at operating point (C)")
        self.contour_box.setToolTip("Outline of pixels whose evidence exceeds the operating point's "
                                    "specificity among normal pixels (e.g. 95 %: stronger than 95 % of them)")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.visible_box)
        form.addRow("Opacity", self.opacity_slider)
        form.addRow("Colours", self.colormap_combo)
        form.addRow("Show from", self.floor_combo)
        form.addRow(self.contour_box)
        self.visible_box.toggled.connect(state.set_heatmap_visible)
        self.opacity_slider.valueChanged.connect(lambda v: state.set_heatmap_opacity(v / 100.0))
        self.colormap_combo.currentTextChanged.connect(state.set_colormap)
        self.contour_box.toggled.connect(state.set_contour_visible)
        self.floor_combo.currentIndexChanged.connect(
            lambda i: state.set_heatmap_floor(float(self.floor_combo.itemData(i))))
        state.overlay_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Show the state (signals blocked)."""
        st = self.state
        widgets = (self.visible_box, self.opacity_slider, self.colormap_combo, self.contour_box, self.floor_combo)
        blockers = [QSignalBlocker(w) for w in widgets]
        self.visible_box.setChecked(st.heatmap_visible)
        self.opacity_slider.setValue(round(100 * st.heatmap_opacity))
        self.colormap_combo.setCurrentText(st.colormap)
        self.contour_box.setChecked(st.contour_visible)
        i = self.floor_combo.findData(st.heatmap_floor)
        if i < 0:  # a floor set elsewhere: show it as a choice
            self.floor_combo.addItem(f"p{100 * st.heatmap_floor:g} of normal pixels", st.heatmap_floor)
            i = self.floor_combo.count() - 1
        self.floor_combo.setCurrentIndex(i)
        del blockers
