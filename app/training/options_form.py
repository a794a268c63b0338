"""The advanced settings of a method: one field per option, generated from :class:`MethodInfo`.

Widget ↔ values both ways: :meth:`OptionsForm.set_values` writes the fields with their signals
blocked; an edit by the user emits ``edited`` (the panel then calls the preset "Custom").
A number option whose default is None shows "default" (with the method's value when known)
at the bottom of its range: not passed to the engine.
"""
from __future__ import annotations

from typing import Any, Mapping

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from app.training.options import MethodInfo, Option

INT_MAX = 1_000_000


class OptionsForm(QWidget):
    """Fields for every option of a method.

    Signals:
        edited(): the user changed a field of the method's settings.
        runtime_edited(): the user changed where it runs (threads, device): the preset still holds.
    """

    edited = Signal()
    runtime_edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.fields: dict[str, QWidget] = {}
        self.info: MethodInfo | None = None

    def set_method(self, info: MethodInfo) -> None:
        """Rebuild the fields for ``info``'s options."""
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields.clear()
        self.info = info
        for option in info.options:
            w = self._field(option)
            tip = option.help + (f" (engine option {option.flag})" if option.help else f"engine option {option.flag}")
            w.setToolTip(tip)
            w.setObjectName(f"option_{option.dest}")
            self.fields[option.dest] = w
            self.form.addRow(option.label, w)

    def _field(self, o: Option) -> QWidget:
        signal = self.runtime_edited if o.runtime else self.edited
        if o.kind == "choice":
            w = QComboBox()
            for c in o.choices:
                w.addItem(c, c)
            w.currentIndexChanged.connect(signal)
            return w
        if o.kind == "flag":
            w = QCheckBox()
            w.toggled.connect(signal)
            return w
        if o.kind == "int":
            w = QSpinBox()
            low = int(o.minimum) if o.minimum is not None else -INT_MAX
            if o.default is None:  # one below the range means "default": not passed
                w.setRange(low - 1, INT_MAX)
                w.setSpecialValueText("default" + (f" ({o.hint})" if o.hint is not None else ""))
            else:
                w.setRange(low, INT_MAX)
            w.valueChanged.connect(signal)
            return w
        if o.kind == "float":
            w = QDoubleSpinBox()
            w.setDecimals(6 if o.dest == "lr" else 3)
            w.setSingleStep(1e-4 if o.dest == "lr" else 0.01)
            low = float(o.minimum) if o.minimum is not None else -1e9
            if o.default is None:
                w.setRange(low, 1e9)
                w.setSpecialValueText("default" + (f" ({o.hint:g})" if isinstance(o.hint, (int, float)) else ""))
            else:
                w.setRange(low, 1e9)
            w.valueChanged.connect(signal)
            return w
        w = QLineEdit()
        w.setPlaceholderText("(none)" if o.default is None else str(o.default))
        w.textEdited.connect(signal)
        return w

    # ------------------------------------------------------------------ values
    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show these values (signals blocked: not an edit)."""
        assert self.info is not None
        for o in self.info.options:
            w = self.fields[o.dest]
            v = values.get(o.dest, o.default)
            with QSignalBlocker(w):
                if isinstance(w, QComboBox):
                    i = w.findData(str(v) if v is not None else o.default)
                    w.setCurrentIndex(max(0, i))
                elif isinstance(w, QCheckBox):
                    w.setChecked(bool(v))
                elif isinstance(w, QSpinBox):
                    w.setValue(w.minimum() if v is None else int(v))
                elif isinstance(w, QDoubleSpinBox):
                    w.setValue(w.minimum() if v is None else float(v))
                elif isinstance(w, QLineEdit):
                    w.setText("" if v is None else str(v))

    def values(self) -> dict[str, Any]:
        """The fields' values by option dest (None: default, not passed)."""
        assert self.info is not None
        out: dict[str, Any] = {}
        for o in self.info.options:
            w = self.fields[o.dest]
            if isinstance(w, QComboBox):
                out[o.dest] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[o.dest] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[o.dest] = None if (o.default is None and w.value() == w.minimum()) else w.value()
            elif isinstance(w, QDoubleSpinBox):
                out[o.dest] = None if (o.default is None and w.value() == w.minimum()) else w.value()
            elif isinstance(w, QLineEdit):
                text = w.text().strip()
                out[o.dest] = text or None
        return out
