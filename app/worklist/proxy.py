"""Sorting and filtering of the worklist: text filter, "flagged only", "unread only", missing values last.

Sort keys and the flag / unread filters read the model's order snapshot
(:meth:`WorklistModel.refresh_order_keys`): rows keep their place while the reader works, and
:meth:`WorklistProxy.resort` re-applies the order when asked.

Sorting is the model's (:meth:`WorklistModel.sort`: one Python sort, one layout change); this
proxy keeps the model's order and filters; the row filter reads one cached lower-case string
per row.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QModelRoleDataSpan, QPersistentModelIndex, QSortFilterProxyModel, Qt

from cxrscreen.app.worklist.model import Column, WorklistModel


class WorklistProxy(QSortFilterProxyModel):
    """Sort/filter proxy over a :class:`WorklistModel`.

    Default order: most suspicious first (score, descending), unscored rows last in file order.
    ``sort`` is forwarded to the model; the proxy's own sort column stays -1.
    """

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._flagged_only = False
        self._unread_only = False
        self.setDynamicSortFilter(True)

    def source(self) -> WorklistModel:
        """The worklist model."""
        model = self.sourceModel()
        if not isinstance(model, WorklistModel):
            raise TypeError("WorklistProxy needs a WorklistModel as its source")
        return model

    # ------------------------------------------------------------------ filter state
    @property
    def filter_text(self) -> str:
        return self._text

    @property
    def flagged_only(self) -> bool:
        return self._flagged_only

    @property
    def unread_only(self) -> bool:
        return self._unread_only

    def set_unread_only(self, unread_only: bool) -> None:
        """Keep only rows unread when the order was last applied (a case read meanwhile stays)."""
        if bool(unread_only) != self._unread_only:
            self._reapply_order()
            self.beginFilterChange()
            self._unread_only = bool(unread_only)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def resort(self) -> None:
        """Take the live scores and reading states into the order, and sort and filter again."""
        self._reapply_order()
        self.beginFilterChange()  # the flag / unread filters read the new snapshot
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def _reapply_order(self) -> None:
        model = self.source()
        model.refresh_order_keys()
        model.sort(model.sort_column, model.sort_order)

    def set_filter_text(self, text: str) -> None:
        """Keep rows whose file, patient, study, view or status contains every word of ``text``."""
        text = " ".join(text.lower().split())
        if text != self._text:
            self.beginFilterChange()
            self._text = text
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_flagged_only(self, flagged_only: bool) -> None:
        """Keep only rows flagged under the current threshold."""
        if bool(flagged_only) != self._flagged_only:
            self._reapply_order()  # the reader asked: today's flags, today's order
            self.beginFilterChange()
            self._flagged_only = bool(flagged_only)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    # ------------------------------------------------------------------ Qt overrides
    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        # the model sorts itself (one Python sort, not two Python calls per comparison): this
        # proxy keeps the model's order and only filters
        self.source().refresh_order_keys()  # a sort the reader asked for uses today's values
        self.source().sort(column, order)

    def multiData(self, index: QModelIndex | QPersistentModelIndex, span: QModelRoleDataSpan) -> None:  # noqa: N802
        # one Python call per painted cell instead of one per role (see WorklistModel.multiData)
        if index.isValid():
            self.source().multiData(self.mapToSource(index), span)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802
        if source_parent.isValid():
            return False
        model = self.source()
        if self._flagged_only and not model.snapshot_flagged(source_row):
            return False
        if self._unread_only and not model.snapshot_unread(source_row):
            return False
        if self._text:
            hay = model.filter_text(source_row)
            return all(word in hay for word in self._text.split(" "))
        return True

    def sort_default(self) -> None:
        """Most suspicious first."""
        self.sort(Column.SCORE, Qt.SortOrder.DescendingOrder)
