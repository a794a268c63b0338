"""The advanced settings of a method: one field per option of the engine's methods JSON.

Fields follow the option's type (int, float, choice, bool, text, path) and bounds; the tooltip
is the engine's help text and flag. The trained settings come first; the run options (kind
"run": device, threads, checkpoint interval) are a separate group, "How it runs", whose edits
never change the preset.

Widget ↔ values both ways: :meth:`OptionsForm.set_values` writes the fields with their signals
blocked; an edit by the user emits ``edited`` (the panel then calls the preset "Custom") or
``runtime_edited``. A number option whose default is None shows "default" at the bottom of its
range: not passed to the engine (the preset's or the method's value applies).
"""
from __future__ import annotations

from typing import Any, Mapping

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.training.options import MethodInfo, Option

INT_MAX = 1_000_000_000
FLOAT_MAX = 1e12
MAX_DECIMALS = 10
_PROBLEM_STYLE = "color: #b00020; font-weight: bold;"


def _decimals(o: Option, info: MethodInfo) -> int:
    """Decimals a float field shows: every value it may be given (default, bounds, the presets'), exactly.

    A preset's learning rate of 3.75e-5 shown with 6 decimals would read back as 3.8e-5 and be
    passed to the engine as a change; so the field gets as many decimals as its values need.
    """
    values = [v for v in (o.default, o.minimum, o.maximum, *(p.values.get(o.name) for p in info.presets))
              if isinstance(v, (int, float)) and not isinstance(v, bool) and v]
    needed = 6 if o.name == "lr" or any(abs(v) < 0.01 for v in values) else 3
    for v in values:
        d = next((d for d in range(MAX_DECIMALS + 1) if round(v, d) == v), MAX_DECIMALS)
        needed = max(needed, d)
    return needed


WEIGHT_FILTER = "Weights (*.pt *.pth *.bin *.safetensors *.ckpt);;All files (*)"


class PathField(QWidget):
    """A path option: its text and a Browse button that opens a folder or file chooser.

    Signals:
        edited(): the user typed or chose a path.
    """

    edited = Signal()

    def __init__(self, option: Option, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.option = option
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.line = QLineEdit()
        self.line.setPlaceholderText("(none)" if option.default is None else str(option.default))
        self.line.textEdited.connect(self.edited)
        kind = option.path_kind or "file"
        self.browse = QPushButton("Folder…" if kind == "folder" else "File…")
        self.browse.setObjectName(f"browse_{option.name}")
        self.browse.setToolTip(f"Choose the {'folder' if kind == 'folder' else 'file'} for {option.label}")
        self.browse.clicked.connect(self._choose)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.browse)

    def text(self) -> str:
        return self.line.text()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's spelling, as QLineEdit's)
        self.line.setText(text)

    def _choose(self) -> None:
        start = self.line.text().strip()
        if (self.option.path_kind or "file") == "folder":
            chosen = QFileDialog.getExistingDirectory(self, self.option.label, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self.option.label, start, WEIGHT_FILTER)
        if chosen:
            self.line.setText(chosen)
            self.edited.emit()


class OptionsForm(QWidget):
    """Fields for every option of a method.

    Signals:
        edited(): the user changed a trained setting.
        runtime_edited(): the user changed how it runs (threads, device): the preset still holds.
    """

    edited = Signal()
    runtime_edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.trained_form = QFormLayout()
        self.run_title = QLabel("<b>How it runs</b> <span style='color:#555'>(does not change what is trained, "
                                "nor the preset)</span>")
        self.run_form = QFormLayout()
        layout.addLayout(self.trained_form)
        layout.addWidget(self.run_title)
        layout.addLayout(self.run_form)
        self.fields: dict[str, QWidget] = {}
        self.tips: dict[str, str] = {}
        self.problems: dict[str, str] = {}  # what the engine's check said, by option name
        self.info: MethodInfo | None = None

    def set_method(self, info: MethodInfo) -> None:
        """Rebuild the fields for ``info``'s options."""
        for form in (self.trained_form, self.run_form):
            while form.rowCount():
                form.removeRow(0)
        self.fields.clear()
        self.tips.clear()
        self.problems.clear()
        self.info = info
        for option in info.options:
            w = self._field(option, info)
            bounds = _bounds_text(option)
            tip = (option.help or option.label) + (f" ({bounds})" if bounds else "") + f"\nengine option {option.flag}"
            self.tips[option.name] = tip
            w.setToolTip(tip)
            w.setObjectName(f"option_{option.name}")
            self.fields[option.name] = w
            (self.run_form if option.runtime else self.trained_form).addRow(option.label, w)
        self.run_title.setVisible(any(o.runtime for o in info.options))
        # new fields hold Qt's values (a spin box's minimum: --workers 1, --checkpoint-every 0), which a preset
        # change keeps as the user's run options: start them at the engine's defaults
        self.set_values(info.values_for(None))

    def _field(self, o: Option, info: MethodInfo) -> QWidget:
        signal = self.runtime_edited if o.runtime else self.edited
        if o.type == "choice":
            w = QComboBox()
            if o.default is None:
                w.addItem("default", None)
            for c in o.choices:
                w.addItem(c, c)
            w.currentIndexChanged.connect(signal)
            return w
        if o.type == "bool":
            w = QCheckBox()
            w.toggled.connect(signal)
            return w
        if o.type == "int":
            w = QSpinBox()
            low = int(o.minimum) if o.minimum is not None else -INT_MAX
            high = int(o.maximum) if o.maximum is not None else INT_MAX
            if o.default is None:  # one below the range means "default": not passed
                low -= 1
                w.setSpecialValueText("default")
            w.setRange(low, high)
            w.valueChanged.connect(signal)
            return w
        if o.type == "float":
            w = QDoubleSpinBox()
            w.setDecimals(_decimals(o, info))
            w.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
            low = float(o.minimum) if o.minimum is not None else -FLOAT_MAX
            high = float(o.maximum) if o.maximum is not None else FLOAT_MAX
            if o.default is None:
                low -= 10.0 ** -w.decimals()
                w.setSpecialValueText("default")
            w.setRange(low, high)
            w.valueChanged.connect(signal)
            return w
        if o.type == "path":
            path = PathField(o)
            path.edited.connect(signal)
            return path
        w = QLineEdit()
        w.setPlaceholderText("(none)" if o.default is None else str(o.default))
        w.textEdited.connect(signal)
        return w

    # ------------------------------------------------------------------ values
    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show these values (signals blocked: not an edit)."""
        if self.info is None:
            raise RuntimeError("set_method() first: the form has no method")
        for o in self.info.options:
            w = self.fields[o.name]
            v = values.get(o.name, o.default)
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
                elif isinstance(w, (QLineEdit, PathField)):
                    w.setText("" if v is None else str(v))

    def values(self) -> dict[str, Any]:
        """The fields' values by option name (None: default, not passed)."""
        if self.info is None:
            return {}
        out: dict[str, Any] = {}
        for o in self.info.options:
            w = self.fields[o.name]
            if isinstance(w, QComboBox):
                out[o.name] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[o.name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[o.name] = None if (o.default is None and w.value() == w.minimum()) else w.value()
            elif isinstance(w, QDoubleSpinBox):
                out[o.name] = None if (o.default is None and w.value() == w.minimum()) else w.value()
            elif isinstance(w, (QLineEdit, PathField)):
                out[o.name] = w.text().strip() or None
        return out

    def mark_problems(self, problems: Mapping[str, str]) -> None:
        """Mark the fields the engine's check named: a red "⚠" label, its sentence in the tooltip ({} clears).

        The label is marked, not the field: a style sheet on a spin box drops its native arrows.
        """
        if self.info is None:
            return
        self.problems = dict(problems)
        for o in self.info.options:
            w = self.fields[o.name]
            text = problems.get(o.name)
            label = self.label(o.name)
            label.setText(f"⚠ {o.label}" if text else o.label)
            label.setStyleSheet(_PROBLEM_STYLE if text else "")
            w.setToolTip(f"{text}\n\n{self.tips[o.name]}" if text else self.tips[o.name])

    def label(self, name: str) -> QLabel:
        """The label of an option's field."""
        w = self.fields[name]
        form = self.run_form if self.run_form.indexOf(w) >= 0 else self.trained_form
        label = form.labelForField(w)
        if not isinstance(label, QLabel):
            raise KeyError(f"no label for option {name!r}")
        return label


def _bounds_text(o: Option) -> str:
    if o.type not in ("int", "float"):
        return ""
    if o.minimum is not None and o.maximum is not None:
        return f"{o.minimum:g} to {o.maximum:g}"
    if o.minimum is not None:
        return f"at least {o.minimum:g}"
    if o.maximum is not None:
        return f"at most {o.maximum:g}"
    return ""
