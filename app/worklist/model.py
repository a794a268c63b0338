"""The worklist table model: one row per file, over a list of :class:`CaseRecord`.

Records are only appended (indexing streams them in) or cleared; scores, flags, thumbnails and
identifier visibility change cells in place (``dataChanged`` over the touched rows and
columns only). Flags are computed from the active detector's score and the current threshold
at read time, so moving the operating point updates every flag with one signal.

The model sorts itself (:meth:`WorklistModel.sort`, which the proxy forwards to): one Python
sort over the records' :data:`SORT_ROLE` values, then one ``layoutChanged``. The proxy only
filters. (A sorting ``QSortFilterProxyModel`` calls back into Python twice per comparison:
inserting 10,000 rows took 3-7 s on a busy two-core machine; bench/reading_db.py.) Rows are
records in the current order: ``row`` is a position, ``i`` below a record's insertion index.
Missing values (unscored, unreadable) sort last in both directions, in file order.

Stable order: sorting and the "flagged only" / "unread only" filters read a *snapshot* of the
scores and reading states. While the order is not frozen the snapshot follows every change and
the list keeps itself sorted; once frozen (the reader has started, :mod:`app.session`), a score
or a read mark changes what a row shows but not where it is, and records that arrive go last in
arrival order, until :meth:`WorklistModel.refresh_order_keys` and a sort (the reader's "Re-sort").

Images the detector's out-of-scope gate refused have no score and no flag; they sort apart,
after every scored image and before the unscored ones (their active score is -inf).
"""
from __future__ import annotations

import dataclasses
from enum import IntEnum

import numpy as np
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QModelRoleDataSpan, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPixmap

from cxrscreen.app.records import CaseRecord, CaseScore, patient_text, study_text, view_text
from cxrscreen.app.session import ReadingSession
from cxrscreen.engine.detector import NormalCalibration
from cxrscreen.engine.scoring import ScoreResult

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
FLAG_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # bool | None: flagged under the current threshold
Index = QModelIndex | QPersistentModelIndex
REORDER_MS = 1000  # before the reader starts, new scores re-sort the rows at most this often (each re-sort
# re-filters every row: 10,000 rows cost 0.1-0.4 s of the GUI thread on a busy 2-core machine)


class Column(IntEnum):
    """Worklist columns, in display order."""

    THUMBNAIL = 0
    FLAG = 1
    SCORE = 2
    PERCENTILE = 3
    FILE = 4
    PATIENT = 5
    STUDY = 6
    VIEW = 7
    STATUS = 8
    READ = 9


HEADERS: dict[Column, tuple[str, str]] = {
    Column.THUMBNAIL: ("", "Thumbnail (made on demand from the decoded image)"),
    Column.FLAG: ("Flag", "Flagged: score above the operating point's threshold"),
    Column.FILE: ("File", "Path relative to the opened folder"),
    Column.PATIENT: ("Patient", "Patient name and id (a keyed pseudonym while identifiers are hidden)"),
    Column.STUDY: ("Study", "Study date and accession (year and a pseudonym while identifiers are hidden)"),
    Column.VIEW: ("View", "View position and modality from the DICOM header"),
    Column.SCORE: ("Score", "Anomaly score of the active detector (higher = more anomalous)"),
    Column.PERCENTILE: ("Pctl", "Percentile among the detector's held-out normal images: "
                                "percent of them scoring lower"),
    Column.STATUS: ("Status", "Scoring status, or why the file cannot be read"),
    Column.READ: ("Read", "● unread; read; or the reader's mark (agree / disagree with the flag, "
                          "confirmed normal / abnormal) and a comment"),
}
MARK_TEXT: dict[str, str] = {"agree": "✓ agree", "disagree": "✗ disagree", "normal": "✓ normal",
                             "abnormal": "✓ abnormal"}
_N_COLUMNS = len(Column)
_MISSING = 1e15  # beyond any score or percentile
_OUT_OF_SCOPE = 5e14  # between the scored rows and the missing ones
OUT_OF_SCOPE_MARK = "⊘"  # the Status column says why; the tooltip too
_NUMERIC = (Column.SCORE, Column.PERCENTILE, Column.FLAG)
_FILE_COL, _READ_COL = int(Column.FILE), int(Column.READ)
_COLUMNS: tuple[Column, ...] = tuple(Column)
_NUMERIC_INTS = frozenset(int(c) for c in _NUMERIC)
_THUMB, _FLAG_COL, _SCORE_COL = int(Column.THUMBNAIL), int(Column.FLAG), int(Column.SCORE)
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_DECORATION = int(Qt.ItemDataRole.DecorationRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_ALIGNMENT = int(Qt.ItemDataRole.TextAlignmentRole)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
_FONT = int(Qt.ItemDataRole.FontRole)
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_LEFT = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
_FLAG_BRUSH = QBrush(QColor(196, 40, 40))
_UNREAD_BRUSH = QBrush(QColor(30, 100, 200))
_ERROR_BRUSH = QBrush(QColor(150, 150, 150))
_BOLD = QFont()
_BOLD.setBold(True)


class WorklistModel(QAbstractTableModel):
    """Table model over case records.

    Args:
        pseudonym_key: the installation's key, for pseudonyms of hidden identifiers.
        thumbnail: returns a file's thumbnail or None (and may start making it); called only
            for rows being painted, so thumbnails are made lazily.
    """

    counts_changed = Signal()
    results_applied = Signal(str, object)  # model id, list[ScoreResult]: scores to remember
    status_changed = Signal()  # status texts changed (queued/not): repaint, nothing to re-sort

    def __init__(self, pseudonym_key: bytes, thumbnail: Callable[[Path], QPixmap | None] | None = None,
                 parent: Any = None) -> None:
        super().__init__(parent)
        self._key = pseudonym_key
        self._thumbnail = thumbnail
        self._records: list[CaseRecord] = []
        self._row_of: dict[Path, int] = {}  # path -> record index i
        self._order: list[int] = []  # row -> i
        self._pos: list[int] = []  # i -> row
        self._sort_col = -1
        self._sort_desc = False
        self._roots: list[Path] = []
        self._model_id: str | None = None
        self._threshold: float | None = None
        self._calibration: NormalCalibration | None = None  # the active detector's, for percentiles
        self._show_ids = False
        self._queued: set[Path] = set()
        self._missing_high = False
        # the active detector's scores by row (NaN: none) and unreadable rows, for O(1) counts
        self._active = np.zeros(0, dtype=np.float64)
        self._unreadable = np.zeros(0, dtype=bool)
        self._pct = np.zeros(0, dtype=np.float64)
        self._read = np.zeros(0, dtype=bool)
        # what sorting and the flag / unread filters see (see the module docstring)
        self._snap_score = np.zeros(0, dtype=np.float64)
        self._snap_pct = np.zeros(0, dtype=np.float64)
        self._snap_read = np.zeros(0, dtype=bool)
        self._frozen = False
        self._reorder_timer = QTimer(self)
        self._reorder_timer.setSingleShot(True)
        self._reorder_timer.setInterval(REORDER_MS)
        self._reorder_timer.timeout.connect(self._reorder_now)
        self._session: ReadingSession | None = None
        self._text: list[tuple[str, str, str, str] | None] = []  # file, patient, study, view
        self._haystack: list[str | None] = []

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 (Qt name)
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Column(section)][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADERS[Column(section)][1]
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def multiData(self, index: Index, span: QModelRoleDataSpan) -> None:  # noqa: N802
        # The delegate asks for ~7 roles per cell at once: answer them in one Python call (each
        # C++ -> Python call must take the GIL, which the worker threads are using).
        if not index.isValid():
            return
        row, col = index.row(), index.column()
        if not 0 <= row < len(self._records) or not 0 <= col < _N_COLUMNS:
            return
        i = self._order[row]
        rec = self._records[i]
        for k in range(len(span)):
            item = span[k]
            item.setData(self._value(i, col, rec, item.role()))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if not 0 <= row < len(self._records) or not 0 <= col < _N_COLUMNS:
            return None
        i = self._order[row]
        return self._value(i, col, self._records[i], role)

    def _value(self, row: int, col: int, rec: CaseRecord, role: int) -> Any:
        # roles as plain ints: enum comparisons cost more than the work on a repaint path
        if role == _DISPLAY:
            return self._display(row, rec, _COLUMNS[col])
        if role == SORT_ROLE:
            return self._sort_value(row, rec, _COLUMNS[col])
        if role == _DECORATION:
            if col == _THUMB and rec.readable and self._thumbnail is not None:
                return self._thumbnail(rec.path)
            return None
        if role == _TOOLTIP:
            return self._tooltip(rec, _COLUMNS[col])
        if role == _ALIGNMENT:
            return _RIGHT if col in _NUMERIC_INTS else _LEFT
        if role == _FOREGROUND:
            if not rec.readable:
                return _ERROR_BRUSH
            if col == _FLAG_COL and self.is_flagged(rec):
                return _FLAG_BRUSH
            if col == _READ_COL and not self._read[row]:
                return _UNREAD_BRUSH
            return None
        if role == _FONT:
            if (col == _FLAG_COL or col == _SCORE_COL) and self.is_flagged(rec):
                return _BOLD
            if (col == _FILE_COL or col == _READ_COL) and not self._read[row]:
                return _BOLD  # unread cases stand out, as unread mail does
            return None
        if role == FLAG_ROLE:
            return self.is_flagged(rec)
        return None

    # ------------------------------------------------------------------ cells
    def _texts(self, row: int, rec: CaseRecord) -> tuple[str, str, str, str]:
        cached = self._text[row]
        if cached is None:
            cached = (self._file_text(rec.path), patient_text(rec.meta, self._show_ids, self._key),
                      study_text(rec.meta, self._show_ids, self._key), view_text(rec.meta))
            self._text[row] = cached
        return cached

    def _display(self, row: int, rec: CaseRecord, col: Column) -> str | None:
        if col == Column.THUMBNAIL:
            return None
        if col in (Column.FILE, Column.PATIENT, Column.STUDY, Column.VIEW):
            return self._texts(row, rec)[col - Column.FILE]
        if col == Column.STATUS:
            return self.status_text(rec)
        if col == Column.READ:
            return self.read_text(row, rec)
        score = self.active_score(rec)
        if score is None:
            return OUT_OF_SCOPE_MARK if col == Column.FLAG and self.out_of_scope_reason(rec) else ""
        if col == Column.SCORE:
            return f"{score.score:.4g}"
        if col == Column.PERCENTILE:
            return f"{score.percentile:.1f}"
        flagged = self.is_flagged(rec)
        return "⚑" if flagged else ("—" if flagged is False else "")

    def _sort_value(self, row: int, rec: CaseRecord, col: Column) -> Any:
        # Missing values sort last in both directions, in file order among themselves (Qt's
        # descending sort reverses ties, so the row is part of the value; exact below 2**53).
        missing = _MISSING + row if self._missing_high else -(_MISSING + row)
        if col in (Column.THUMBNAIL, Column.FILE):
            return self._texts(row, rec)[0].lower()
        if col in (Column.PATIENT, Column.STUDY, Column.VIEW):
            return self._texts(row, rec)[col - Column.FILE].lower()
        if col == Column.STATUS:
            return self.status_text(rec).lower()
        if col == Column.READ:
            return 1.0 if self._snap_read[row] else 0.0
        score, pct = self._snap_score[row], self._snap_pct[row]
        if np.isneginf(score):  # out of scope: apart, after every scored image, before the unscored ones
            return _OUT_OF_SCOPE + row if self._missing_high else -(_OUT_OF_SCOPE + row)
        if np.isnan(score):
            return missing
        if col == Column.SCORE:
            return float(score)
        if col == Column.PERCENTILE:
            return float(pct)
        # flagged first (descending), then by percentile, then score
        flagged = self._threshold is not None and score > self._threshold
        return (1.0 if flagged else 0.0) + float(pct) / 1000.0

    def _tooltip(self, rec: CaseRecord, col: Column) -> str | None:
        if not rec.readable:
            return f"{rec.path}\nCannot be read: {rec.error}"
        if col in (Column.FILE, Column.THUMBNAIL):
            return str(rec.path)
        if col in (Column.SCORE, Column.PERCENTILE) and self.active_score(rec) is not None:
            s = self.active_score(rec)
            assert s is not None
            return f"score {s.score:.6g}; higher than {s.percentile:.1f} % of the detector's calibration normals"
        if col in (Column.STATUS, Column.FLAG) and (col == Column.STATUS or self.out_of_scope_reason(rec)):
            return self.status_text(rec)
        if col == Column.READ and self._session is not None and self._session.comment(rec.path):
            return self._session.comment(rec.path)
        if col == Column.FLAG and self.is_flagged(rec) is not None:
            return "flagged: above the operating point" if self.is_flagged(rec) else "not flagged"
        return None

    def _file_text(self, path: Path) -> str:
        for root in self._roots:
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            return str(rel) if str(rel) != "." else path.name
        return path.name

    # ------------------------------------------------------------------ record queries
    def active_score(self, rec: CaseRecord) -> CaseScore | None:
        """The active detector's score of a record, if any."""
        if self._model_id is None:
            return None
        return rec.scores.get(self._model_id)

    def out_of_scope_reason(self, rec: CaseRecord) -> str | None:
        """Why the active detector's gate refused a record, or None."""
        return rec.out_of_scope.get(self._model_id) if self._model_id is not None else None

    def is_flagged(self, rec: CaseRecord) -> bool | None:
        """True/False under the current threshold; None when unscored or no threshold."""
        score = self.active_score(rec)
        if score is None or self._threshold is None:
            return None
        return score.score > self._threshold

    def status_text(self, rec: CaseRecord) -> str:
        """What the status column says about a record."""
        if not rec.readable:
            return f"unreadable: {rec.error}"
        if self._model_id is None:
            return "indexed"
        if self._model_id in rec.scores:
            return "scored"
        if self._model_id in rec.out_of_scope:
            return f"out of scope: {rec.out_of_scope[self._model_id]}"
        if self._model_id in rec.score_errors:
            return f"failed: {rec.score_errors[self._model_id]}"
        if rec.path in self._queued:
            return "queued"
        return "not scored"

    def read_text(self, row: int, rec: CaseRecord) -> str:
        """What the Read column says: ● (unread), "read", or the reader's mark and a comment sign."""
        if self._session is None:
            return ""
        mark, comment = self._session.mark(rec.path), self._session.comment(rec.path)
        if mark is not None:
            return MARK_TEXT[mark] + (" ✎" if comment else "")
        if comment:
            return "✎ comment"
        return "read" if self._read[row] else "●"

    def snapshot_flagged(self, row: int) -> bool:
        """Flagged as the current order sees it (the snapshot's score; see the module docstring)."""
        score = self._snap_score[self._order[row]]
        return self._threshold is not None and not np.isnan(score) and bool(score > self._threshold)

    def snapshot_unread(self, row: int) -> bool:
        """Unread as the current order sees it."""
        return not self._snap_read[self._order[row]]

    def is_read(self, row: int) -> bool:
        """Whether the case in a row is read (or reviewed) now."""
        return bool(self._read[self._order[row]])

    def filter_text(self, row: int) -> str:
        """Lower-case text the worklist filter searches (what the row shows)."""
        i = self._order[row]
        hay = self._haystack[i]
        if hay is None:
            rec = self._records[i]
            hay = " ".join((*self._texts(i, rec), self.status_text(rec))).lower()
            self._haystack[i] = hay
        return hay

    def record(self, row: int) -> CaseRecord:
        """The record shown in a row."""
        return self._records[self._order[row]]

    def records(self) -> Sequence[CaseRecord]:
        """All records, in insertion order (do not mutate)."""
        return self._records

    def row_of(self, path: Path) -> int | None:
        """The row of a file, or None."""
        i = self._row_of.get(path)
        return None if i is None else self._pos[i]

    @property
    def model_id(self) -> str | None:
        """The active detector's model id."""
        return self._model_id

    @property
    def threshold(self) -> float | None:
        """The current flag threshold (score > threshold)."""
        return self._threshold

    def counts(self) -> dict[str, int]:
        """Totals for the status bar: files, readable, scored, flagged, unreadable, out of scope (O(1) in Python)."""
        n = len(self._records)
        active = self._active[:n]
        scored = int(np.count_nonzero(np.isfinite(active)))
        flagged = int(np.count_nonzero(active > self._threshold)) if self._threshold is not None else 0
        unreadable = int(np.count_nonzero(self._unreadable[:n]))
        read = self._read[:n]
        flagged_unread = int(np.count_nonzero((active > self._threshold) & ~read)) if self._threshold is not None else 0
        out_of_scope = int(np.count_nonzero(np.isneginf(active)))
        return {"files": n, "readable": n - unreadable, "scored": scored, "flagged": flagged,
                "unreadable": unreadable, "read": int(np.count_nonzero(read)), "flagged_unread": flagged_unread,
                "out_of_scope": out_of_scope}

    def progress_by_folder(self) -> list[tuple[Path, int, int, int]]:
        """Per opened folder: (folder, files, read, flagged unread), in the order they were opened.

        Files opened one by one (outside every folder) are not counted here.
        """
        n = len(self._records)
        out = []
        for root in self._roots:
            rows = np.fromiter((i for i, rec in enumerate(self._records) if rec.path.is_relative_to(root)),
                               dtype=np.int64)
            read = self._read[:n][rows]
            flagged = (self._active[:n][rows] > self._threshold) if self._threshold is not None else np.zeros(rows.size, bool)
            out.append((root, int(rows.size), int(np.count_nonzero(read)), int(np.count_nonzero(flagged & ~read))))
        return out

    def stale_rows(self) -> int:
        """Rows whose score is not where the current order placed them (a re-sort would move them)."""
        n = len(self._records)
        live, snap = self._active[:n], self._snap_score[:n]
        both_nan = np.isnan(live) & np.isnan(snap)
        return int(np.count_nonzero(~both_nan & (live != snap)))

    def _store_active(self, row: int, rec: CaseRecord) -> None:
        score = rec.scores.get(self._model_id) if self._model_id is not None else None
        ok = score is not None and rec.readable
        if not ok and rec.readable and self._model_id in rec.out_of_scope:
            self._active[row] = -np.inf  # out of scope: counted apart, never above a threshold
            self._pct[row] = np.nan
        else:
            self._active[row] = score.score if ok else np.nan  # type: ignore[union-attr]
            self._pct[row] = score.percentile if ok else np.nan  # type: ignore[union-attr]
        if not self._frozen:
            self._snap_score[row], self._snap_pct[row] = self._active[row], self._pct[row]

    def _grow(self, n: int) -> None:
        if n > self._active.size:
            size = max(n, 2 * self._active.size, 1024)

            def grown(old: np.ndarray, fill: float | bool) -> np.ndarray:
                new = np.full(size, fill, dtype=old.dtype)
                new[: old.size] = old
                return new

            self._active, self._pct = grown(self._active, np.nan), grown(self._pct, np.nan)
            self._snap_score, self._snap_pct = grown(self._snap_score, np.nan), grown(self._snap_pct, np.nan)
            self._unreadable, self._read = grown(self._unreadable, False), grown(self._read, False)
            self._snap_read = grown(self._snap_read, False)

    # ------------------------------------------------------------------ reading state and order
    def set_session(self, session: ReadingSession) -> None:
        """Show this session's reading state and marks (the model observes it)."""
        self._session = session
        session.states_changed.connect(self._on_states)
        session.mark_changed.connect(lambda path: self._on_states([path]))

    def _on_states(self, paths: list[Path]) -> None:
        if self._session is None:
            return
        rows = []
        for path in paths:
            r = self._row_of.get(path)
            if r is None:
                continue
            self._read[r] = self._session.is_read(path)
            if not self._frozen:
                self._snap_read[r] = self._read[r]
            rows.append(r)
        if rows:
            self._changed_rows(rows, Column.FILE, Column.READ)
            if self._sort_col == Column.READ:
                self._reorder_if_live()

    @property
    def order_frozen(self) -> bool:
        """Whether sorting and filtering keep their snapshot (the reader has started)."""
        return self._frozen

    def set_order_frozen(self, frozen: bool) -> None:
        """Freeze (or release, which also refreshes and sorts) the order's snapshot."""
        self._frozen = bool(frozen)
        if not self._frozen:
            self.refresh_order_keys()
            self._apply_order()

    @property
    def sort_column(self) -> int:
        """The column the rows are sorted by (-1: insertion order)."""
        return self._sort_col

    @property
    def sort_order(self) -> Qt.SortOrder:
        return Qt.SortOrder.DescendingOrder if self._sort_desc else Qt.SortOrder.AscendingOrder

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by a column (missing values last in both directions, in file order)."""
        if not -1 <= column < _N_COLUMNS:
            raise ValueError(f"sort column must be in [-1, {_N_COLUMNS - 1}], got {column}")
        self._sort_col, self._sort_desc = int(column), order == Qt.SortOrder.DescendingOrder
        self._missing_high = not self._sort_desc
        self._apply_order()

    def _apply_order(self) -> None:
        """Put the rows in the sort order of their snapshot keys (one layout change, if any)."""
        n = len(self._records)
        if n < 2:
            return
        new = self._sorted_order()
        if new == self._order:
            return
        self.layoutAboutToBeChanged.emit()
        old = self._order
        pos = [0] * n
        for row, i in enumerate(new):
            pos[i] = row
        self._order, self._pos = new, pos
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(persistent, [self.createIndex(pos[old[p.row()]], p.column()) for p in persistent])
        self.layoutChanged.emit()

    def _sorted_order(self) -> list[int]:
        """Record indices in the current sort order (insertion order when unsorted)."""
        n = len(self._records)
        if self._sort_col < 0:
            return list(range(n))
        col = _COLUMNS[self._sort_col]
        keys = [self._sort_value(i, rec, col) for i, rec in enumerate(self._records)]
        return sorted(range(n), key=keys.__getitem__, reverse=self._sort_desc)  # stable: ties keep file order

    def _reorder_if_live(self) -> None:
        # before the reader starts, the rows follow the scores: at most every REORDER_MS, as
        # a re-sort re-filters every row (scores come in slices of a few dozen)
        if not self._frozen and not self._reorder_timer.isActive():
            self._reorder_timer.start()

    @property
    def reorder_pending(self) -> bool:
        """Whether new scores wait for the next re-sort (before the reader starts: at most every REORDER_MS)."""
        return self._reorder_timer.isActive()

    def _reorder_now(self) -> None:
        if not self._frozen:
            self._apply_order()

    def refresh_order_keys(self) -> None:
        """Take the live scores and reading states into the order (the proxy must then re-sort)."""
        n = len(self._records)
        self._snap_score[:n] = self._active[:n]
        self._snap_pct[:n] = self._pct[:n]
        self._snap_read[:n] = self._read[:n]
        self._haystack = [None] * n

    # ------------------------------------------------------------------ changes
    def clear(self, roots: Iterable[Path] = ()) -> None:
        """Remove every row; file names are shown relative to ``roots`` from now on."""
        self.beginResetModel()
        self._records.clear()
        self._row_of.clear()
        self._order.clear()
        self._pos.clear()
        self._text.clear()
        self._haystack.clear()
        self._queued.clear()
        self._active = np.zeros(0, dtype=np.float64)
        self._unreadable = np.zeros(0, dtype=bool)
        for name in ("_pct", "_snap_score", "_snap_pct"):
            setattr(self, name, np.zeros(0, dtype=np.float64))
        for name in ("_read", "_snap_read"):
            setattr(self, name, np.zeros(0, dtype=bool))
        self._frozen = False
        self._roots = [Path(r) for r in roots if Path(r).is_dir()]
        self.endResetModel()
        self.counts_changed.emit()

    def add_roots(self, roots: Iterable[Path]) -> None:
        """Also show files relative to these folders (added by drag and drop)."""
        for r in roots:
            p = Path(r)
            if p.is_dir() and p not in self._roots:
                self._roots.append(p)

    def add_records(self, records: Sequence[CaseRecord]) -> list[CaseRecord]:
        """Append records whose file is not listed yet; returns the ones added."""
        new: list[CaseRecord] = []
        seen: set[Path] = set()
        for rec in records:
            if rec.path in self._row_of or rec.path in seen:
                continue
            seen.add(rec.path)
            new.append(rec)
        if not new:
            return []
        first = len(self._records)
        self._grow(first + len(new))
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)  # appended: last, in arrival order
        for i, rec in enumerate(new):
            self._row_of[rec.path] = first + i
            self._order.append(first + i)
            self._pos.append(first + i)
            self._records.append(rec)
            self._text.append(None)
            self._haystack.append(None)
            self._unreadable[first + i] = not rec.readable
            self._read[first + i] = self._session is not None and self._session.is_read(rec.path)
            self._store_active(first + i, rec)
            if self._frozen:  # arrived after the reader started: last, in arrival order
                self._snap_score[first + i] = self._snap_pct[first + i] = np.nan
            else:
                self._snap_read[first + i] = self._read[first + i]
        if first == 0 and not self._frozen:  # into an empty list (a known folder): sorted as inserted
            self._order = self._sorted_order()
            for row, i in enumerate(self._order):
                self._pos[i] = row
        self.endInsertRows()
        if not self._frozen and self._sort_col >= 0:
            numeric = _COLUMNS[self._sort_col] in _NUMERIC
            if not numeric or not np.all(np.isnan(self._snap_score[first:first + len(new)])):
                self._apply_order()  # (unscored rows would go last in file order: where they are)
        self.counts_changed.emit()
        return new

    def set_active_model(self, model_id: str | None, threshold: float | None,
                         calibration: NormalCalibration | None = None) -> None:
        """Show this detector's scores, flagged above ``threshold``.

        With ``calibration`` (the detector's active one: its own or a site calibration), the
        percentiles of this detector's scores are among that calibration's normals, whatever
        calibration the engine or the study database reported them with.
        """
        if model_id == self._model_id and threshold == self._threshold and calibration == self._calibration:
            return
        self._model_id, self._threshold, self._calibration = model_id, threshold, calibration
        self._rescore_active()
        self._queued.clear()
        for row, rec in enumerate(self._records):
            self._store_active(row, rec)
        self.refresh_order_keys()  # another detector: the reader asked for its order
        self._apply_order()
        self._changed_all(Column.FLAG, Column.STATUS)

    def _rescore_active(self) -> None:
        """The active detector's percentiles among the active calibration's normals."""
        if self._calibration is None or self._model_id is None:
            return
        for rec in self._records:
            score = rec.scores.get(self._model_id)
            if score is not None:
                rec.scores[self._model_id] = self._rescored(score)

    def _rescored(self, score: CaseScore) -> CaseScore:
        if self._calibration is None:
            return score
        return dataclasses.replace(score, percentile=float(self._calibration.percentile(score.score)))

    def set_threshold(self, threshold: float | None) -> None:
        """Move the flag threshold (flags update at once)."""
        if threshold == self._threshold:
            return
        self._threshold = threshold
        self._changed_all(Column.FLAG, Column.SCORE)  # the flag, and the score's bold font
        if self._sort_col == Column.FLAG:
            self._reorder_if_live()

    def set_show_identifiers(self, show: bool) -> None:
        """Show real patient/study identifiers, or pseudonyms."""
        if bool(show) == self._show_ids:
            return
        self._show_ids = bool(show)
        self._text = [None] * len(self._records)
        self._changed_all(Column.PATIENT, Column.STUDY)

    def mark_queued(self, paths: Iterable[Path]) -> None:
        """These files wait to be scored by the active detector.

        Only the status text changes: no dataChanged (which would make the proxy re-check
        every row's sort position and filter), a repaint request instead. A text filter on
        "queued" is re-evaluated when the filter changes.
        """
        self._queued.update(paths)
        self._haystack = [None] * len(self._records)
        self.status_changed.emit()

    def clear_queued(self) -> None:
        """Nothing is waiting any more (a run ended or was cancelled)."""
        if self._queued:
            self._queued.clear()
            self._haystack = [None] * len(self._records)
            self.status_changed.emit()

    def apply_results(self, model_id: str, results: Sequence[ScoreResult]) -> None:
        """Store a batch of scoring results for a detector."""
        rows = []
        for res in results:
            r = self._row_of.get(res.path)
            if r is None:
                continue
            rec = self._records[r]
            if res.out_of_scope is not None:
                rec.out_of_scope[model_id] = res.out_of_scope
                rec.scores.pop(model_id, None)
                rec.score_errors.pop(model_id, None)
            elif res.score is not None and res.percentile is not None:
                score = CaseScore(float(res.score), float(res.percentile), res.acquisition)
                rec.scores[model_id] = self._rescored(score) if model_id == self._model_id else score
                rec.score_errors.pop(model_id, None)
            else:
                rec.score_errors[model_id] = res.error or "not scored"
            self._queued.discard(res.path)
            if model_id == self._model_id:
                self._store_active(r, rec)
            rows.append(r)
        if model_id == self._model_id:
            self._changed_rows(rows, Column.FLAG, Column.STATUS)
            self._reorder_if_live()
        self.results_applied.emit(model_id, results)

    def apply_stored(self, found: dict[Path, dict[str, CaseScore]]) -> None:
        """Scores remembered for these files' content (a renamed or copied image): shown, not stored again."""
        rows = []
        for path, scores in found.items():
            r = self._row_of.get(path)
            if r is None or not scores:
                continue
            self._records[r].scores.update(scores)
            if self._model_id in scores:
                self._records[r].scores[self._model_id] = self._rescored(scores[self._model_id])
                self._store_active(r, self._records[r])
                rows.append(r)
        self._changed_rows(rows, Column.FLAG, Column.STATUS)
        if rows:
            self._reorder_if_live()

    def set_score(self, path: Path, model_id: str, score: CaseScore) -> None:
        """Store one result (from the viewer, which scores the image it shows)."""
        r = self._row_of.get(path)
        if r is None:
            return
        self._records[r].scores[model_id] = self._rescored(score) if model_id == self._model_id else score
        self._records[r].score_errors.pop(model_id, None)
        self._queued.discard(path)
        if model_id == self._model_id:
            self._store_active(r, self._records[r])
            self._changed_rows([r], Column.FLAG, Column.STATUS)
            self._reorder_if_live()
        self.results_applied.emit(model_id, [ScoreResult(path, score.score, score.percentile,
                                                         acquisition=score.acquisition)])

    def mark_unreadable(self, path: Path, reason: str) -> None:
        """A file whose header read but whose pixels do not: keep it, with the reason."""
        r = self._row_of.get(path)
        if r is None or self._records[r].error == reason:
            return
        self._records[r].error = reason
        self._unreadable[r] = True
        self._store_active(r, self._records[r])
        self._queued.discard(path)
        self._changed_rows([r], Column.THUMBNAIL, Column.STATUS)

    def thumbnail_changed(self, path: Path) -> None:
        """A thumbnail arrived: repaint its cell."""
        r = self._row_of.get(path)
        if r is not None:  # createIndex: no bounds check calling back into Python
            idx = self.createIndex(self._pos[r], Column.THUMBNAIL)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def _changed_all(self, first: Column, last: Column) -> None:
        if self._records:
            if not self._frozen:
                self._haystack = [None] * len(self._records)
            self.dataChanged.emit(self.createIndex(0, first), self.createIndex(len(self._records) - 1, last))
        self.counts_changed.emit()

    def _changed_rows(self, records: Iterable[int], first: Column, last: Column) -> None:
        """One dataChanged per run of consecutive rows (``records``: record indices)."""
        records = set(records)
        if not records:
            return
        if not self._frozen:  # a frozen order keeps what the text filter matched too
            for i in records:
                self._haystack[i] = None
        ordered = sorted(self._pos[i] for i in records)
        start = prev = ordered[0]
        for r in ordered[1:] + [None]:  # type: ignore[list-item]
            if r is not None and r == prev + 1:
                prev = r
                continue
            self.dataChanged.emit(self.createIndex(start, first), self.createIndex(prev, last))
            if r is not None:
                start = prev = r
        self.counts_changed.emit()
