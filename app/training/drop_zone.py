"""A drop zone for one folder (or a CSV file): drop it, or browse; shows what it holds."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

_IDLE = 'QFrame[dropzone="true"] { border: 2px dashed #8a8a8a; border-radius: 6px; background: #fafafa; }'
_HOVER = 'QFrame[dropzone="true"] { border: 2px dashed #2a7ad5; border-radius: 6px; background: #e8f1fc; }'
_SET = 'QFrame[dropzone="true"] { border: 2px solid #6b9f6b; border-radius: 6px; background: #f4faf4; }'
_BAD = 'QFrame[dropzone="true"] { border: 2px solid #c04040; border-radius: 6px; background: #fdf2f2; }'


class DropZone(QFrame):
    """Accepts one local folder (and, with ``accept_csv``, a .csv file) by drop or Browse.

    Args:
        title: what belongs here ("Known-normal folder").
        hint: one line under the title when empty.
        accept_csv: a CSV file is accepted too (labelled validation data).

    Signals:
        path_chosen(Path): a folder (or CSV) was dropped or chosen.
        cleared(): the user removed it.
    """

    path_chosen = Signal(object)
    cleared = Signal()

    def __init__(self, title: str, hint: str, accept_csv: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("dropzone", True)  # the style sheet's selector (the labels inside are QFrames too)
        self.setAcceptDrops(True)
        self.setStyleSheet(_IDLE)
        self.accept_csv = accept_csv
        self.hint = hint
        self.path: Path | None = None
        self.setMinimumHeight(86)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        top = QHBoxLayout()
        self.title_label = QLabel(f"<b>{title}</b>")
        top.addWidget(self.title_label)
        top.addStretch(1)
        self.browse_button = QToolButton()
        self.browse_button.setText("Browse…")
        self.browse_button.clicked.connect(self.browse)
        self.clear_button = QToolButton()
        self.clear_button.setText("✕")
        self.clear_button.setToolTip("Remove")
        self.clear_button.clicked.connect(self.clear)
        self.clear_button.hide()
        top.addWidget(self.browse_button)
        top.addWidget(self.clear_button)
        layout.addLayout(top)
        self.path_label = QLabel(hint)
        self.path_label.setWordWrap(True)
        self.path_label.setStyleSheet("color: #555;")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.hide()
        layout.addWidget(self.path_label)
        layout.addWidget(self.summary_label)

    # ------------------------------------------------------------------ state
    def set_title(self, title: str, note: str = "", hint: str | None = None) -> None:
        """Change what the zone asks for (the method changed): a bold title, a note after it
        ("required, at least 20 images"); an empty zone shows the new hint."""
        self.title_label.setText(f"<b>{title}</b>" + (f" <span style='color:#555'>— {note}</span>" if note else ""))
        if hint is not None:
            self.hint = hint
            if self.path is None:
                self.path_label.setText(hint)

    def set_path(self, path: Path) -> None:
        """Show a chosen folder (emits path_chosen)."""
        self.path = Path(path)
        self.path_label.setText(str(self.path))
        self.path_label.setToolTip(str(self.path))
        self.path_label.setStyleSheet("")
        self.summary_label.setText("Reading headers…")
        self.summary_label.show()
        self.clear_button.show()
        self.setStyleSheet(_SET)
        self.path_chosen.emit(self.path)

    def set_summary(self, text: str, ok: bool = True) -> None:
        """What the folder holds (or why it cannot be used)."""
        self.summary_label.setText(text)
        self.summary_label.show()
        self.setStyleSheet(_SET if ok else _BAD)

    def clear(self) -> None:
        """Back to empty (emits cleared)."""
        had = self.path is not None
        self.path = None
        self.path_label.setText(self.hint)
        self.path_label.setToolTip("")
        self.path_label.setStyleSheet("color: #555;")
        self.summary_label.hide()
        self.clear_button.hide()
        self.setStyleSheet(_IDLE)
        if had:
            self.cleared.emit()

    def browse(self) -> None:
        """Ask for a folder (or a CSV file)."""
        start = str(self.path or Path.home())
        if self.accept_csv:
            name, _ = QFileDialog.getOpenFileName(self, "Labelled validation data: a CSV, or cancel to pick a folder",
                                                  start, "CSV (*.csv)")
            if name:
                self.set_path(Path(name))
                return
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        if folder:
            self.set_path(Path(folder))

    # ------------------------------------------------------------------ drag and drop
    def _dropped_path(self, event: QDragEnterEvent | QDropEvent) -> Path | None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()] if event.mimeData().hasUrls() else []
        if len(urls) != 1:
            return None
        p = Path(urls[0].toLocalFile())
        if p.is_dir() or (self.accept_csv and p.is_file() and p.suffix.lower() == ".csv"):
            return p
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt name)
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()
            self.setStyleSheet(_HOVER)
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        self.setStyleSheet(_SET if self.path is not None else _IDLE)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_path(event)
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.set_path(path)
