"""The worklist panel: filter box, "flagged only", counts, and the table."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.records import CaseRecord
from cxrscreen.app.worklist.model import Column, WorklistModel
from cxrscreen.app.worklist.proxy import WorklistProxy

ROW_HEIGHT = 44
# every column but File keeps its width; File takes what is left (its text elided at the start),
# so the table fits its panel without sideways scrolling down to MIN_FILE_WIDTH
_WIDTHS: dict[Column, int] = {
    Column.THUMBNAIL: 48, Column.FLAG: 36, Column.SCORE: 74, Column.PERCENTILE: 44,
    Column.PATIENT: 80, Column.STUDY: 88, Column.VIEW: 54, Column.STATUS: 92,
}
MIN_FILE_WIDTH = 90


class _KeepEndDelegate(QStyledItemDelegate):
    """Elides at the start, so a long path keeps its end: "…/IM-0001.jpeg"."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # noqa: N802 (Qt name)
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideLeft


class WorklistPanel(QWidget):
    """Table over a :class:`WorklistProxy`, with its filter controls.

    Signals:
        current_changed(object): the current case's path (None when there is none).
    """

    current_changed = Signal(object)

    def __init__(self, model: WorklistModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = WorklistProxy(self)
        self.proxy.setSourceModel(model)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter: file, patient, study, view, status (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.flagged_box = QCheckBox("Flagged only")
        self.flagged_box.setToolTip("Show only cases above the operating point (Ctrl+Shift+F)")
        self.unread_box = QCheckBox("Unread only")
        self.unread_box.setToolTip("Show only cases not read yet (Ctrl+U)")
        self.counts_label = QLabel()
        # the drift check of the active detector's scores (app/controllers/calibration.py)
        self.drift_label = QLabel()
        self.drift_label.setWordWrap(True)
        self.drift_label.hide()
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(40, 40))
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._keep_end = _KeepEndDelegate(self.table)
        self.table.setItemDelegateForColumn(Column.FILE, self._keep_end)
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(ROW_HEIGHT)
        vh.hide()
        hh = self.table.horizontalHeader()
        hh.setHighlightSections(False)
        hh.setSectionsMovable(True)
        for col, width in _WIDTHS.items():
            self.table.setColumnWidth(col, width)
        hh.setSectionResizeMode(Column.THUMBNAIL, QHeaderView.ResizeMode.Fixed)
        hh.setSectionResizeMode(Column.FILE, QHeaderView.ResizeMode.Stretch)
        hh.setMinimumSectionSize(36)
        hh.setStretchLastSection(False)
        # View and Status right after File, Patient and Study last: when the panel is too narrow
        # for every column, only the identifier columns (pseudonyms by default) scroll out of view
        for col in (Column.VIEW, Column.STATUS):
            hh.moveSection(hh.visualIndex(col), hh.visualIndex(Column.PATIENT))
        self.proxy.sort_default()
        hh.setSortIndicator(Column.SCORE, Qt.SortOrder.DescendingOrder)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.flagged_box)
        top.addWidget(self.unread_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.drift_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.counts_label)
        self.filter_edit.textChanged.connect(self.proxy.set_filter_text)
        self.flagged_box.toggled.connect(self.proxy.set_flagged_only)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        model.status_changed.connect(self.table.viewport().update)
        # Patient and Study take room only when some file has identifiers (DICOM); PNG/JPEG have none
        self._has_ids = {Column.PATIENT: False, Column.STUDY: False}
        model.rowsInserted.connect(self._on_rows_inserted)
        model.modelReset.connect(self._on_model_reset)
        self._on_model_reset()
        self.proxy.layoutAboutToBeChanged.connect(self._remember_current_visible)
        self.proxy.layoutChanged.connect(self._keep_current_visible)
        self._current_was_visible = False

    # ------------------------------------------------------------------ identifier columns
    def _on_model_reset(self) -> None:
        self._has_ids = {Column.PATIENT: False, Column.STUDY: False}
        self._on_rows_inserted(QModelIndex(), 0, self.model.rowCount() - 1)

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if all(self._has_ids.values()):
            return
        for row in range(first, last + 1):
            m = self.model.record(row).meta
            if m is not None:
                self._has_ids[Column.PATIENT] |= bool(m.patient_id or m.patient_name)
                self._has_ids[Column.STUDY] |= bool(m.study_uid or m.accession_number or m.study_date)
        for col, shown in self._has_ids.items():
            self.table.setColumnHidden(col, not shown)

    # ------------------------------------------------------------------ current case
    def current_path(self) -> Path | None:
        """The current case's file, or None."""
        idx = self.table.currentIndex()
        if not idx.isValid():
            return None
        return self.model.record(self.proxy.mapToSource(idx).row()).path

    def selected_records(self) -> list[CaseRecord]:
        """Selected cases, in worklist order."""
        rows = sorted(i.row() for i in self.table.selectionModel().selectedRows())
        return [self.model.record(self.proxy.mapToSource(self.proxy.index(r, 0)).row()) for r in rows]

    def visible_paths(self) -> list[Path]:
        """Files in worklist order (sorted and filtered)."""
        return [self.model.record(self.proxy.mapToSource(self.proxy.index(r, 0)).row()).path
                for r in range(self.proxy.rowCount())]

    def select_path(self, path: Path) -> bool:
        """Make a file the current case (if it is shown)."""
        row = self.model.row_of(path)
        if row is None:
            return False
        idx = self.proxy.mapFromSource(self.model.index(row, self._left_column()))
        if not idx.isValid():
            return False
        self._set_current(idx)
        return True

    def select_row(self, proxy_row: int) -> bool:
        """Make the case at a worklist position current."""
        if not 0 <= proxy_row < self.proxy.rowCount():
            return False
        self._set_current(self.proxy.index(proxy_row, self._left_column()))
        return True

    def move(self, step: int) -> bool:
        """Go ``step`` cases down (negative: up) the worklist."""
        idx = self.table.currentIndex()
        row = idx.row() + step if idx.isValid() else 0
        return self.select_row(min(max(row, 0), self.proxy.rowCount() - 1))

    def next_flagged(self) -> bool:
        """Go to the next flagged case below the current one (wrapping)."""
        n = self.proxy.rowCount()
        start = self.table.currentIndex().row() if self.table.currentIndex().isValid() else -1
        for k in range(1, n + 1):
            r = (start + k) % n
            rec = self.model.record(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
            if self.model.is_flagged(rec):
                return self.select_row(r)
        return False

    def neighbours(self, count: int = 1) -> list[Path]:
        """Files just below and above the current case (for prefetching)."""
        idx = self.table.currentIndex()
        if not idx.isValid():
            return []
        out = []
        for step in [*range(1, count + 1), *range(-1, -count - 1, -1)]:
            r = idx.row() + step
            if 0 <= r < self.proxy.rowCount():
                rec = self.model.record(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
                if rec.readable:
                    out.append(rec.path)
        return out

    def _left_column(self) -> int:
        """The left-most column: moving to a row never scrolls the flag out of sight."""
        return self.table.horizontalHeader().logicalIndex(0)

    def _set_current(self, idx: QModelIndex) -> None:
        sel = self.table.selectionModel()
        sel.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                            | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            self.current_changed.emit(None)
            return
        self.current_changed.emit(self.model.record(self.proxy.mapToSource(current).row()).path)

    def _remember_current_visible(self) -> None:
        idx = self.table.currentIndex()
        self._current_was_visible = idx.isValid() and self.table.viewport().rect().intersects(self.table.visualRect(idx))

    def _keep_current_visible(self) -> None:
        # rows move while scores stream in: keep the case the user is reading in view
        idx = self.table.currentIndex()
        if self._current_was_visible and idx.isValid():
            self.table.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)
