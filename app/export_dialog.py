"""The export dialog: which cases, and whether real identifiers go into the file."""
from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.export import ExportScope


class ExportDialog(QDialog):
    """Choose the export scope and identifier handling.

    Args:
        counts: how many cases each scope covers ("flagged", "all", "selected").
    """

    def __init__(self, counts: dict[str, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export results to CSV")
        layout = QVBoxLayout(self)
        box = QGroupBox("Cases")
        inner = QVBoxLayout(box)
        self._group = QButtonGroup(self)
        self._buttons: dict[str, QRadioButton] = {}
        for scope, text in (("flagged", "Flagged cases"), ("all", "All cases (including unreadable files)"),
                            ("selected", "Selected cases")):
            b = QRadioButton(f"{text} ({counts.get(scope, 0)})")
            b.setEnabled(counts.get(scope, 0) > 0)
            self._group.addButton(b)
            self._buttons[scope] = b
            inner.addWidget(b)
        default = "flagged" if counts.get("flagged", 0) else "all"
        self._buttons[default].setChecked(True)
        layout.addWidget(box)
        self.ids_box = QCheckBox("Include real patient and study identifiers")
        note = QLabel("By default patients, studies and series are written as keyed pseudonyms "
                      "(HMAC-SHA256 with this installation's secret key): the same patient gets the "
                      "same pseudonym in every export from this computer. File paths are written "
                      "relative to the opened folder, with UID-like or name-like parts pseudonymised; "
                      "with identifiers included, in full.")
        note.setWordWrap(True)
        self.warning = QLabel("<b>The file will contain patient identifiers.</b> Handle it as patient data.")
        self.warning.setStyleSheet("color: #b82020;")
        self.warning.setVisible(False)
        self.ids_box.toggled.connect(self.warning.setVisible)
        layout.addWidget(self.ids_box)
        layout.addWidget(self.warning)
        layout.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Choose file…")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    @property
    def scope(self) -> ExportScope:
        """The chosen scope."""
        for scope, b in self._buttons.items():
            if b.isChecked():
                return scope  # type: ignore[return-value]
        return "all"

    @property
    def include_identifiers(self) -> bool:
        return self.ids_box.isChecked()
