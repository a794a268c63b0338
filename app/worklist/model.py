"""The worklist table model: one row per file, over a list of :class:`CaseRecord`.

Rows are only appended (indexing streams them in) or cleared; scores, flags, thumbnails and
identifier visibility change cells in place (``dataChanged`` over the touched rows and
columns only). Flags are computed from the active detector's score and the current threshold
at read time, so moving the operating point updates every flag with one signal.

Sorting reads :data:`SORT_ROLE`: numbers for numeric columns, lower-case text otherwise.
Missing values (unscored, unreadable) sort last in both directions, in file order: the proxy
tells the model its sort order (:meth:`WorklistModel.set_missing_sorts_high`). Images the
detector's out-of-scope gate refused have no score and no flag; they sort apart, after every
scored image and before the unscored ones.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QModelRoleDataSpan, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPixmap

from app.records import CaseRecord, CaseScore, patient_text, study_text, view_text
from engine.scoring import ScoreResult

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
FLAG_ROLE = int(Qt.ItemDataRole.UserRole) + 2  # bool | None: flagged under the current threshold
Index = QModelIndex | QPersistentModelIndex


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
}
_N_COLUMNS = len(Column)
_MISSING = 1e15  # beyond any score or percentile
_OUT_OF_SCOPE = 5e14  # between the scored rows and the missing ones
OUT_OF_SCOPE_MARK = "⊘"  # the Status column says why; the tooltip too
_NUMERIC = (Column.SCORE, Column.PERCENTILE, Column.FLAG)
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
    status_changed = Signal()  # status texts changed (queued/not): repaint, nothing to re-sort

    def __init__(self, pseudonym_key: bytes, thumbnail: Callable[[Path], QPixmap | None] | None = None,
                 parent: Any = None) -> None:
        super().__init__(parent)
        self._key = pseudonym_key
        self._thumbnail = thumbnail
        self._records: list[CaseRecord] = []
        self._row_of: dict[Path, int] = {}
        self._roots: list[Path] = []
        self._model_id: str | None = None
        self._threshold: float | None = None
        self._show_ids = False
        self._queued: set[Path] = set()
        self._missing_high = False
        # the active detector's scores by row (NaN: none) and unreadable rows, for O(1) counts
        self._active = np.zeros(0, dtype=np.float64)
        self._unreadable = np.zeros(0, dtype=bool)
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
        rec = self._records[row]
        for i in range(len(span)):
            item = span[i]
            item.setData(self._value(row, col, rec, item.role()))

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if not 0 <= row < len(self._records) or not 0 <= col < _N_COLUMNS:
            return None
        return self._value(row, col, self._records[row], role)

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
            return None
        if role == _FONT:
            if (col == _FLAG_COL or col == _SCORE_COL) and self.is_flagged(rec):
                return _BOLD
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
        score = self.active_score(rec)
        if score is None:
            if self.out_of_scope_reason(rec) is not None:
                return _OUT_OF_SCOPE + row if self._missing_high else -(_OUT_OF_SCOPE + row)
            return missing
        if col == Column.SCORE:
            return score.score
        if col == Column.PERCENTILE:
            return score.percentile
        # flagged first (descending), then by percentile, then score
        return (1.0 if self.is_flagged(rec) else 0.0) + score.percentile / 1000.0

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

    def filter_text(self, row: int) -> str:
        """Lower-case text the worklist filter searches (what the row shows)."""
        hay = self._haystack[row]
        if hay is None:
            rec = self._records[row]
            hay = " ".join((*self._texts(row, rec), self.status_text(rec))).lower()
            self._haystack[row] = hay
        return hay

    def record(self, row: int) -> CaseRecord:
        """The record shown in a row."""
        return self._records[row]

    def records(self) -> Sequence[CaseRecord]:
        """All records, in insertion order (do not mutate)."""
        return self._records

    def row_of(self, path: Path) -> int | None:
        """The row of a file, or None."""
        return self._row_of.get(path)

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
        out_of_scope = int(np.count_nonzero(np.isneginf(active)))
        return {"files": n, "readable": n - unreadable, "scored": scored, "flagged": flagged,
                "unreadable": unreadable, "out_of_scope": out_of_scope}

    def _store_active(self, row: int, rec: CaseRecord) -> None:
        score = rec.scores.get(self._model_id) if self._model_id is not None else None
        if score is None and rec.readable and self._model_id in rec.out_of_scope:
            self._active[row] = -np.inf  # out of scope: counted apart, never above a threshold
            return
        self._active[row] = score.score if score is not None and rec.readable else np.nan

    def _grow(self, n: int) -> None:
        if n > self._active.size:
            size = max(n, 2 * self._active.size, 1024)
            active = np.full(size, np.nan)
            active[: self._active.size] = self._active
            unreadable = np.zeros(size, dtype=bool)
            unreadable[: self._unreadable.size] = self._unreadable
            self._active, self._unreadable = active, unreadable

    # ------------------------------------------------------------------ changes
    def clear(self, roots: Iterable[Path] = ()) -> None:
        """Remove every row; file names are shown relative to ``roots`` from now on."""
        self.beginResetModel()
        self._records.clear()
        self._row_of.clear()
        self._text.clear()
        self._haystack.clear()
        self._queued.clear()
        self._active = np.zeros(0, dtype=np.float64)
        self._unreadable = np.zeros(0, dtype=bool)
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
        self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
        for i, rec in enumerate(new):
            self._row_of[rec.path] = first + i
            self._records.append(rec)
            self._text.append(None)
            self._haystack.append(None)
            self._unreadable[first + i] = not rec.readable
            self._store_active(first + i, rec)
        self.endInsertRows()
        self.counts_changed.emit()
        return new

    def set_active_model(self, model_id: str | None, threshold: float | None) -> None:
        """Show this detector's scores, flagged above ``threshold``."""
        if model_id == self._model_id and threshold == self._threshold:
            return
        self._model_id, self._threshold = model_id, threshold
        self._queued.clear()
        for row, rec in enumerate(self._records):
            self._store_active(row, rec)
        self._changed_all(Column.FLAG, Column.STATUS)

    def set_threshold(self, threshold: float | None) -> None:
        """Move the flag threshold (flags update at once)."""
        if threshold == self._threshold:
            return
        self._threshold = threshold
        self._changed_all(Column.FLAG, Column.SCORE)  # the flag, and the score's bold font

    def set_show_identifiers(self, show: bool) -> None:
        """Show real patient/study identifiers, or pseudonyms."""
        if bool(show) == self._show_ids:
            return
        self._show_ids = bool(show)
        self._text = [None] * len(self._records)
        self._changed_all(Column.PATIENT, Column.STUDY)

    def set_missing_sorts_high(self, high: bool) -> None:
        """Whether missing values sort as +inf (ascending order) or -inf (descending)."""
        self._missing_high = bool(high)

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

    def apply_results(self, model_id: str, results: Iterable[ScoreResult]) -> None:
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
                rec.scores[model_id] = CaseScore(float(res.score), float(res.percentile))
                rec.score_errors.pop(model_id, None)
            else:
                rec.score_errors[model_id] = res.error or "not scored"
            self._queued.discard(res.path)
            if model_id == self._model_id:
                self._store_active(r, rec)
            rows.append(r)
        if model_id == self._model_id:
            self._changed_rows(rows, Column.FLAG, Column.STATUS)

    def set_score(self, path: Path, model_id: str, score: CaseScore) -> None:
        """Store one result (from the viewer, which scores the image it shows)."""
        r = self._row_of.get(path)
        if r is None:
            return
        self._records[r].scores[model_id] = score
        self._records[r].score_errors.pop(model_id, None)
        self._queued.discard(path)
        if model_id == self._model_id:
            self._store_active(r, self._records[r])
        if model_id == self._model_id:
            self._changed_rows([r], Column.FLAG, Column.STATUS)

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
            idx = self.createIndex(r, Column.THUMBNAIL)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def _changed_all(self, first: Column, last: Column) -> None:
        if self._records:
            self._haystack = [None] * len(self._records)
            self.dataChanged.emit(self.createIndex(0, first), self.createIndex(len(self._records) - 1, last))
        self.counts_changed.emit()

    def _changed_rows(self, rows: Iterable[int], first: Column, last: Column) -> None:
        """One dataChanged per run of consecutive rows."""
        ordered = sorted(set(rows))
        if not ordered:
            return
        for r in ordered:
            self._haystack[r] = None
        start = prev = ordered[0]
        for r in ordered[1:] + [None]:  # type: ignore[list-item]
            if r is not None and r == prev + 1:
                prev = r
                continue
            self.dataChanged.emit(self.createIndex(start, first), self.createIndex(prev, last))
            if r is not None:
                start = prev = r
        self.counts_changed.emit()
