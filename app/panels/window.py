"""Window/level controls: presets from the file, auto, full range, reset, invert, exact numbers.

Bound to a :class:`ViewerState`; the current image (its presets, value range and units) is
given with :meth:`WindowControl.set_image`.
"""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QWidget,
)

from cxrscreen.app.state import ViewerState
from cxrscreen.app.viewer.display import DisplayImage, Window, auto_window, full_range_window

_FILE = "file"
_AUTO = "auto"
_FULL = "full"
_MANUAL = "manual"


class WindowControl(QWidget):
    """Preset combo, centre/width boxes, Auto / Full / Reset buttons and Invert."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._image: DisplayImage | None = None
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Window presets from the file header, auto (histogram), full range (W cycles)")
        self.center_box = QDoubleSpinBox()
        self.width_box = QDoubleSpinBox()
        for box, tip in ((self.center_box, "Window centre (level), in the image's units"),
                         (self.width_box, "Window width, in the image's units")):
            box.setKeyboardTracking(False)
            box.setDecimals(2)
            box.setRange(-1e9, 1e9)
            box.setToolTip(tip)
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Window from the image histogram, 0.5-99.5 % (A)")
        self.full_button = QPushButton("Full")
        self.full_button.setToolTip("Window over the full value range (Shift+A)")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the file's own window (R)")
        self.invert_box = QCheckBox("Invert (I)")
        numbers = QHBoxLayout()
        numbers.setContentsMargins(0, 0, 0, 0)
        numbers.addWidget(self.center_box)
        numbers.addWidget(self.width_box)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for b in (self.auto_button, self.full_button, self.reset_button):
            buttons.addWidget(b)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Preset", self.preset_combo)
        form.addRow("C / W", numbers)
        form.addRow(buttons)
        form.addRow(self.invert_box)
        self.preset_combo.activated.connect(self._on_preset)
        self.center_box.valueChanged.connect(self._on_numbers)
        self.width_box.valueChanged.connect(self._on_numbers)
        self.auto_button.clicked.connect(self.auto)
        self.full_button.clicked.connect(self.full_range)
        self.reset_button.clicked.connect(self.reset)
        self.invert_box.toggled.connect(state.set_invert)
        state.window_changed.connect(self.refresh)
        self.set_image(None)

    # ------------------------------------------------------------------ actions
    def set_image(self, image: DisplayImage | None) -> None:
        """The image on screen (its presets and units)."""
        self._image = image
        with QSignalBlocker(self.preset_combo):
            self.preset_combo.clear()
            if image is not None:
                self.preset_combo.addItem("File default", _FILE)
                for i, w in enumerate(image.presets):
                    self.preset_combo.addItem(f"{w.label or 'header'}  ({w.center:g}/{w.width:g})", i)
                self.preset_combo.addItem("Auto (histogram)", _AUTO)
                self.preset_combo.addItem("Full range", _FULL)
                self.preset_combo.addItem("Manual", _MANUAL)
        for w in (self.preset_combo, self.center_box, self.width_box, self.auto_button, self.full_button,
                  self.reset_button):
            w.setEnabled(image is not None)
        self.refresh()

    def auto(self) -> None:
        """Window from the histogram."""
        if self._image is not None:
            self.state.set_window(auto_window(self._image.values))

    def full_range(self) -> None:
        """Window over the full range of values."""
        if self._image is not None:
            self.state.set_window(full_range_window(self._image.values))

    def reset(self) -> None:
        """The file's own window (and polarity)."""
        self.state.set_window(None)
        self.state.set_invert(False)

    def next_preset(self) -> None:
        """Cycle: file default, the header's presets, auto, full range."""
        if self._image is None:
            return
        cycle: list[Window | None] = [None, *self._image.presets, auto_window(self._image.values),
                                      full_range_window(self._image.values)]
        current = self.state.window
        try:
            i = cycle.index(current)
        except ValueError:
            i = -1
        self.state.set_window(cycle[(i + 1) % len(cycle)])

    # ------------------------------------------------------------------ state <-> widgets
    def refresh(self) -> None:
        """Show the state (signals blocked)."""
        st = self.state
        img = self._image
        blockers = [QSignalBlocker(w) for w in (self.preset_combo, self.center_box, self.width_box, self.invert_box)]
        self.invert_box.setChecked(st.invert)
        if img is not None:
            window = st.window or img.default_window
            self._select(st.window)
            if window is not None:
                step = img.values.step
                decimals = 0 if step >= 1 else 4
                for box in (self.center_box, self.width_box):
                    box.setDecimals(decimals)
                    box.setSingleStep(max(step, (img.value_range[1] - img.value_range[0]) / 200.0))
                self.width_box.setMinimum(1.0 if window.function == "LINEAR" else step)
                self.center_box.setValue(window.center)
                self.width_box.setValue(window.width)
            self.center_box.setEnabled(window is not None)
            self.width_box.setEnabled(window is not None)
        del blockers

    def _select(self, window: Window | None) -> None:
        img = self._image
        assert img is not None
        if window is None:
            key: object = _FILE
        elif window in img.presets:
            key = img.presets.index(window)
        elif window.label == "auto":
            key = _AUTO
        elif window.label == "full range":
            key = _FULL
        else:
            key = _MANUAL
        self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(key)))

    def _on_preset(self, index: int) -> None:
        data = self.preset_combo.itemData(index)
        img = self._image
        if img is None:
            return
        if data == _FILE:
            self.state.set_window(None)
        elif data == _AUTO:
            self.auto()
        elif data == _FULL:
            self.full_range()
        elif isinstance(data, int):
            self.state.set_window(img.presets[data])
        else:
            self.refresh()  # "Manual" is a description, not a choice

    def _on_numbers(self, _value: float) -> None:
        img = self._image
        if img is None:
            return
        base = self.state.window or img.default_window
        function = base.function if base is not None else ("LINEAR" if img.values.step >= 1 else "LINEAR_EXACT")
        try:
            window = Window(self.center_box.value(), self.width_box.value(), function, "manual")
        except ValueError:
            self.refresh()  # e.g. a LINEAR width below 1: keep the last valid window
            return
        self.state.set_window(window)
