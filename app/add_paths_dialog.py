"""File ▸ Add folders or files: one dialog that adds files, folders, or both.

The platform's file dialogs choose either files or one folder, never both. This one is Qt's own
(non-native) file dialog in "several files" mode with an extra button, **Add selected folders**,
that adds the folders selected in its list, or the folder it shows when none is selected.
Double-clicking a folder still opens it, as in every file dialog.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QAbstractItemView, QDialog, QFileDialog, QFileSystemModel, QListView, QPushButton, QWidget

NAME_FILTERS = ("Radiographs (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp)", "All files (*)")


class AddPathsDialog(QFileDialog):
    """Choose files and/or folders to add to the worklist.

    Attributes:
        chosen: what was chosen when the dialog was accepted (files and folders, in order).
    """

    def __init__(self, parent: QWidget | None, start: Path) -> None:
        super().__init__(parent, "Add folders or files", str(start))
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.setFileMode(QFileDialog.FileMode.ExistingFiles)
        self.setNameFilters(list(NAME_FILTERS))
        self.chosen: list[Path] = []
        self.folder_button = QPushButton("Add selected folders")
        self.folder_button.setToolTip("Add the folders selected in the list (recursively), "
                                      "or the folder shown when no folder is selected")
        self.folder_button.clicked.connect(self.accept_folders)
        layout = self.layout()
        layout.addWidget(self.folder_button, layout.rowCount(), 0, 1, -1)
        self._list = self.findChild(QListView, "listView")
        if self._list is not None:
            self._list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)

    def selected_folders(self) -> list[Path]:
        """Folders selected in the dialog's list (none when only files are selected)."""
        if self._list is None:
            return []
        model = self._list.model()
        out: list[Path] = []
        for index in self._list.selectionModel().selectedRows():
            if isinstance(model, QFileSystemModel) and model.isDir(index):
                out.append(Path(model.filePath(index)))
        return out

    def accept_folders(self) -> None:
        """Add the selected folders, else the folder shown, and close."""
        self.chosen = self.selected_folders() or [Path(self.directory().absolutePath())]
        self.done(QDialog.DialogCode.Accepted)

    def accept(self) -> None:
        """Files chosen the usual way (Open); folders selected with them are added too."""
        folders = self.selected_folders()
        files = [Path(f) for f in self.selectedFiles() if Path(f).is_file()]
        if folders and not files:
            self.chosen = folders
            self.done(QDialog.DialogCode.Accepted)
            return
        self.chosen = files + folders
        super().accept()


def choose_paths_to_add(parent: QWidget | None, start: Path) -> list[Path]:
    """Run the dialog; the chosen files and folders (empty when cancelled)."""
    dialog = AddPathsDialog(parent, start)
    return dialog.chosen if dialog.exec() == QDialog.DialogCode.Accepted else []
