"""The reading controller: the session model, the study database and the worklist, wired.

:class:`app.session.ReadingSession` is the Qt-free model of what the reader did; this thin
controller adapts it to Qt (napari's pattern: ``ViewerModel`` plus ``_qt`` controls):

- it opens the study database (:class:`app.studydb.StudyStore`, a thread of its own) and lists
  an opened folder from it: known files appear at once with their scores, reading state and
  marks; only new or changed files are indexed and scored;
- it stores what happens: every score batch, reading state, mark and export (audit);
- it keeps the reader's place. Until the reader starts (moves, or reads a case), the list
  follows the scores and the top case is current: nothing has been read, so re-sorting cannot
  cost a case. Once started, rows never move under the reader (the model's order snapshot is
  frozen); new scores wait, counted in the worklist, until the reader presses S (Re-sort).
- it marks a case read after it was on screen for :data:`READ_AFTER_MS`, or on M; before the
  reader starts, the top case the app shows while the folder is still being listed or scored
  (:attr:`ReadingController.settling`) counts only once the scores have settled; gives the
  marks their keys; N goes to the next unread flagged case; Esc leaves the filter box;
- it writes the position label "(n of N)", the counts and "N shown" whenever the visible
  list changes, and the progress "37 of 120 read, 5 flagged unread" in the status bar.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QHeaderView, QInputDialog, QLabel, QWidget

from cxrscreen.app.reader_sets import ExportMode, ReaderSetError, ReaderSets, export_reader_sets
from cxrscreen.app.records import CaseRecord, CaseScore
from cxrscreen.app.session import ReadingSession
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.status_bar import counts_text
from cxrscreen.app.studydb import DB_FILE, FileToRegister, KnownFile, Mark, ScoreRow, StoredScore, StudyDatabaseError, StudyStore
from cxrscreen.app.viewer.view import RadiographView
from cxrscreen.app.worklist.model import Column, WorklistModel
from cxrscreen.app.worklist.panel import WorklistPanel
from cxrscreen.engine.scoring import ScoreResult

logger = logging.getLogger(__name__)
READ_AFTER_MS = 1500  # a case on screen this long counts as read
COUNTS_MS = 150  # counts and progress are rewritten at most this often
READ_COLUMN_WIDTH = 86
MARK_WORDS: dict[str, str] = {"agree": "agree with the flag", "disagree": "disagree with the flag",
                              "normal": "confirmed normal", "abnormal": "confirmed abnormal"}
READER_SETS_DIR = "reader-sets"  # in the data folder: the sets sent to the New-detector panel


class _StoreSignals(QObject):
    """Carries the database thread's callbacks to the GUI thread."""

    scanned = Signal(int, object)  # token, (known, unknown)
    registered = Signal(object)  # {path: {model id: StoredScore}}
    failed = Signal(str)


class ReadingController(QObject):
    """Reading state, study database and reading order for one window.

    Signals:
        sets_for_training(ReaderSets): the reader sent the confirmed cases to training (folders
            of links under the data folder's :data:`READER_SETS_DIR`).
        resorted(): the reader asked for the order to be applied again (S).

    Args:
        model: the worklist model.
        panel: the worklist panel (table, filter, counts label).
        viewer: the radiograph view (its title shows the position).
        settings: where the database lives and who reads.
        counts_label: the status bar's counts label.
        show_message: the status bar's message function (text, milliseconds).
        parent: the window (dialogs open over it).
    """

    sets_for_training = Signal(object)
    resorted = Signal()

    def __init__(self, model: WorklistModel, panel: WorklistPanel, viewer: RadiographView, settings: AppSettings,
                 counts_label: QLabel, show_message: Callable[[str, int], None], parent: QWidget) -> None:
        super().__init__(parent)
        self.model, self.panel, self.viewer = model, panel, viewer
        self.proxy = panel.proxy
        self.counts_label = counts_label
        self._message = show_message
        self._parent = parent
        self.session = ReadingSession(settings.reader_name)
        model.set_session(self.session)
        self._signals = _StoreSignals(self)
        self._signals.scanned.connect(self._on_scanned)
        self._signals.registered.connect(self._on_registered)
        self._signals.failed.connect(lambda m: self._message(m, 10000))
        self.db_error: str | None = None
        self.store: StudyStore | None = StudyStore(settings.data_file(DB_FILE), on_error=self._signals.failed.emit)
        try:
            self.store.start()
        except StudyDatabaseError as exc:
            self.db_error = f"{exc}\n\nScores and reading marks are not remembered in this session."
            self.store = None
        self._scans: dict[int, Callable[[list[CaseRecord], list[Path]], None]] = {}
        self._token = 0
        self._auto_select = False
        self._shown: Path | None = None
        # the studies' progress of the worklist (root None) or of one opened folder ("" when none):
        # set by the studies controller, so the progress counts studies too
        self.study_progress: Callable[[Path | None], str] = lambda _root: ""
        # whether the worklist is still filling in (files being listed or scored, or new scores not
        # yet sorted in), set by the window:
        # before the reader starts, the case on screen is then only the top so far (see _on_read_timer)
        self.settling: Callable[[], bool] = lambda: False
        # ------------------------------------------------------------------ wiring
        self._read_timer = QTimer(self)
        self._read_timer.setSingleShot(True)
        self._read_timer.setInterval(READ_AFTER_MS)
        self._read_timer.timeout.connect(self._on_read_timer)
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(COUNTS_MS)
        self._counts_timer.timeout.connect(self.update_counts)
        self._top_timer = QTimer(self)
        self._top_timer.setSingleShot(True)
        self._top_timer.setInterval(0)
        self._top_timer.timeout.connect(self._keep_top_current)
        self.session.started_changed.connect(model.set_order_frozen)
        self.session.state_set.connect(self._store_state)
        self.session.mark_set.connect(self._store_mark)
        self.session.states_changed.connect(lambda _p: self._counts_soon())
        model.counts_changed.connect(self._counts_soon)
        model.rowsInserted.connect(self._on_rows_inserted)
        model.results_applied.connect(self._store_scores)
        for sig in (self.proxy.rowsInserted, self.proxy.rowsRemoved):
            sig.connect(self._on_visible_changed)
        for sig in (self.proxy.layoutChanged, self.proxy.modelReset):
            sig.connect(self._on_visible_changed)
        panel.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        panel.table.pressed.connect(lambda _i: self.session.start())
        panel.filter_edit.installEventFilter(self)
        panel.unread_box.toggled.connect(self.set_unread_only)
        header = panel.table.horizontalHeader()
        header.moveSection(header.visualIndex(Column.READ), header.visualIndex(Column.FLAG) + 1)
        header.setSectionResizeMode(Column.READ, QHeaderView.ResizeMode.Interactive)
        panel.table.setColumnWidth(Column.READ, READ_COLUMN_WIDTH)
        self.export_action = QAction("Export confirmed cases for training…", self)
        self.export_action.setToolTip("Confirmed normal (O) and confirmed abnormal (X) cases as folders of links "
                                      "or lists, for the New-detector panel")
        self.export_action.triggered.connect(lambda _c=False: self.export_confirmed())
        self._sets_root = settings.data_file(READER_SETS_DIR)
        self.train_action = QAction("Train a detector on confirmed cases…", self)
        self.train_action.setToolTip("Confirmed normal (O) and confirmed abnormal (X) cases as the New-detector "
                                     "panel's known-normal and confirmed-abnormal folders (its checks apply)")
        self.train_action.triggered.connect(lambda _c=False: self.send_to_training())

    # ================================================================== opening a worklist
    def new_worklist(self) -> None:
        """A new worklist replaces the old: forget its reading state and pending listings."""
        self._scans.clear()
        self._read_timer.stop()
        self._shown = None
        self.session.clear()

    def list_known(self, paths: list[Path], then: Callable[[list[CaseRecord], list[Path]], None]) -> None:
        """List ``paths`` from the database; ``then(known_records, unknown_paths)`` follows (GUI thread).

        Known records carry their stored scores; their reading state is loaded into the session.
        Without a database every file is unknown.
        """
        if self.store is None:
            QTimer.singleShot(0, lambda: then([], list(paths)))
            return
        self._token += 1
        token = self._token
        self._scans[token] = then
        self.store.scan(list(paths), lambda result: self._signals.scanned.emit(token, result))

    @property
    def listing(self) -> bool:
        """Whether a database listing is still running."""
        return bool(self._scans)

    def _on_scanned(self, token: int, result: tuple[list[KnownFile], list[Path]]) -> None:
        then = self._scans.pop(token, None)
        if then is None:
            return  # the worklist was replaced meanwhile
        known, unknown = result
        self.session.load((k.path, k.state, k.mark, k.comment) for k in known)
        records = [_record(k) for k in known]
        if self.store is not None:
            self.store.audit("opened", self.session.reader, self.model.model_id,
                             f"files={len(known) + len(unknown)}; known={len(known)}")
        then(records, unknown)

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        if self.store is None:
            return
        new = [self.model.record(r) for r in range(first, last + 1)]
        files = [FileToRegister(r.path, r.meta, r.error) for r in new if r.content is None]
        if files:  # indexed just now: hash, remember, and look for this content's scores
            self.store.register(files, self._signals.registered.emit)

    def _on_registered(self, found: dict[Path, dict[str, StoredScore]]) -> None:
        self.model.apply_stored({p: _scores(s)[0] for p, s in found.items()})

    # ================================================================== storing
    def _store_scores(self, model_id: str, results: list[ScoreResult]) -> None:
        if self.store is None:
            return
        threshold = self.model.threshold if model_id == self.model.model_id else None
        rows = []
        for r in results:
            flagged = None if threshold is None or r.score is None else bool(r.score > threshold)
            rows.append(ScoreRow(r.path, model_id, r.score, r.percentile, flagged, threshold,
                                 None if r.score is not None else (r.error or "not scored"), r.acquisition))
        self.store.put_scores(rows)

    def _store_state(self, change: tuple[Path, str]) -> None:
        if self.store is not None:
            self.store.set_state(change[0], change[1], self.session.reader, self.model.model_id)  # type: ignore[arg-type]

    def _store_mark(self, change: tuple[Path, Mark | None, str]) -> None:
        if self.store is not None:
            self.store.add_mark(change[0], change[1], change[2], self.session.reader, self.model.model_id)

    def case_analysed(self, path: Path, model_id: str, levels: np.ndarray) -> None:
        """Remember a summary of a case's heatmap (its peak level and the area past 95 %)."""
        if self.store is not None and levels.size:
            self.store.put_heatmap(path, model_id, {"peak_level": float(np.max(levels)),
                                                    "area_above_95": float(np.mean(levels >= 0.95))})

    def audit_export(self, model_id: str, scope: str, count: int, identifiers: bool) -> None:
        """An export happened (no path: the file name may carry identifiers)."""
        if self.store is not None:
            self.store.audit("exported", self.session.reader, model_id,
                             f"scope={scope}; cases={count}; identifiers={'included' if identifiers else 'pseudonymised'}")

    def close(self) -> None:
        """Commit what is queued and close the database."""
        self._read_timer.stop()
        if self.store is not None:
            self.store.close()
            self.store = None

    # ================================================================== the reader's place
    def case_shown(self, path: Path) -> None:
        """The viewer shows this case: it becomes read if it stays :data:`READ_AFTER_MS`."""
        self._shown = path
        self.update_position()
        if not self.session.is_read(path):
            self._read_timer.start()

    def _on_read_timer(self) -> None:
        if self._shown is None or self._shown != self.panel.current_path():
            return
        if not self.session.started and (self.settling() or self._top_timer.isActive()):
            # the app put this case on screen as the most suspicious *so far* while scores still
            # arrive: reading it would start the session and freeze the order with most scores not
            # placed (a fresh 642-image folder froze after its first score). It counts once the
            # scores have settled (the timer runs again) or as soon as the reader acts. Likewise
            # while the new top is about to be put on screen (the last scores were just sorted
            # in): under load both timers fall due together, and this one must not win.
            self._read_timer.start()
            return
        self.session.mark_read(self._shown)

    def _on_current_row(self, current: QModelIndex, previous: QModelIndex) -> None:
        # the window may already show the new case (decoded earlier): its dwell counts
        if self._shown is None or self._shown != self.panel.current_path():
            self._read_timer.stop()
            self._shown = None
        if previous.isValid() and current.isValid() and not self._auto_select:
            self.session.start()  # the reader moved (keys, mouse, arrows)
        self.update_position()

    def _on_visible_changed(self, *_args: object) -> None:
        self.update_position()
        self._counts_soon()
        if not self.session.started and not self._top_timer.isActive():
            self._top_timer.start()

    def _keep_top_current(self) -> None:
        # before the reader starts, the most suspicious case is the one on screen
        if self.session.started or not self.proxy.rowCount():
            return
        if self.panel.table.currentIndex().row() != 0:
            self._auto_select = True
            try:
                self.panel.select_row(0)
            finally:
                self._auto_select = False

    def position(self, path: Path) -> tuple[int, int]:
        """(place, cases shown): place is 1-based in the visible order, 0 when filtered out."""
        row = self.model.row_of(path)
        n = self.proxy.rowCount()
        if row is None:
            return 0, n
        idx = self.proxy.mapFromSource(self.model.index(row, 0))
        return (idx.row() + 1 if idx.isValid() else 0), n

    def title(self, path: Path) -> str:
        """The viewer's title: file name and place, e.g. "a.dcm   (3 of 24)"."""
        row = self.model.row_of(path)
        name = self.model.index(row, Column.FILE).data() if row is not None else path.name
        pos, n = self.position(path)
        return f"{name}   ({pos} of {n})" if pos else f"{name}   (not in the {n:,} shown)"

    def update_position(self) -> None:
        """Rewrite the viewer's title for the case it shows."""
        case = self.viewer.case
        if case is not None:
            self.viewer.set_title(self.title(case.path))

    # ================================================================== reader actions
    def next_case(self, step: int) -> bool:
        """J / K: the next or previous case in the visible order."""
        self.session.start()
        return self.panel.move(step)

    def next_unread_flagged(self) -> bool:
        """N: the next unread flagged case below the current one (wrapping)."""
        self.session.start()
        n = self.proxy.rowCount()
        current = self.panel.table.currentIndex()
        start = current.row() if current.isValid() else -1
        for k in range(1, n + 1):
            r = (start + k) % n
            rec = self.model.record(self.proxy.mapToSource(self.proxy.index(r, 0)).row())
            if self.model.is_flagged(rec) and not self.session.is_read(rec.path):
                return self.panel.select_row(r)
        self._message("No unread flagged case in the list.", 5000)
        return False

    def resort(self) -> None:
        """S: place every new score and reading state (the current case stays current and in view)."""
        moved = self.model.stale_rows()
        self.proxy.resort()
        idx = self.panel.table.currentIndex()
        if idx.isValid():
            self.panel.table.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)
        self.update_position()
        self.update_counts()
        self.resorted.emit()
        self._message(f"Re-sorted: {moved:,} new scores placed." if moved else "Re-sorted.", 4000)

    def set_unread_only(self, on: bool) -> None:
        """Show only the cases unread now (a case read from then on stays until the next re-sort)."""
        if self.panel.unread_box.isChecked() != on:
            self.panel.unread_box.setChecked(on)  # comes back here through toggled
            return
        self.proxy.set_unread_only(on)

    def toggle_read(self) -> None:
        path = self.panel.current_path()
        if path is not None:
            self._read_timer.stop()
            self.session.toggle_read(path)

    def mark(self, mark: Mark) -> None:
        """Give the current case a mark (the same key again withdraws it)."""
        path = self.panel.current_path()
        if path is not None:
            self.session.toggle_mark(path, mark)
            shown = self.session.mark(path)
            self._message(f"Marked: {MARK_WORDS[shown]}." if shown else "Mark withdrawn.", 3000)

    def comment(self) -> None:
        """Ask for the current case's comment."""
        path = self.panel.current_path()
        if path is None:
            return
        text, ok = QInputDialog.getText(self._parent, "Comment", "Comment on this case (kept with the case, "
                                        "not in the audit trail):", text=self.session.comment(path))
        if ok:
            self.session.set_comment(path, text)

    def export_confirmed(self, out: Path | None = None, mode: ExportMode | None = None) -> ReaderSets | None:
        """Write the worklist's confirmed-normal and confirmed-abnormal cases as training sets.

        Asks for the folder and the form (folders of links, or lists) when not given.
        """
        normal, abnormal = self.session.marked("normal"), self.session.marked("abnormal")
        if not normal and not abnormal:
            self._message("No case is marked confirmed normal (O) or confirmed abnormal (X).", 6000)
            return None
        if mode is None:
            forms = ["Folders of links (for the New-detector panel)", "Lists of paths (text files)"]
            choice, ok = QInputDialog.getItem(self._parent, "Export confirmed cases",
                                              f"{len(normal)} confirmed normal, {len(abnormal)} confirmed "
                                              "abnormal. Write them as:", forms, 0, False)
            if not ok:
                return None
            mode = "links" if choice == forms[0] else "lists"
        if out is None:
            folder = QFileDialog.getExistingDirectory(self._parent, "Export confirmed cases into", str(Path.home()))
            if not folder:
                return None
            out = Path(folder) / time.strftime("cxrscreen-reader-sets-%Y%m%d-%H%M%S")
        try:
            written = export_reader_sets(normal, abnormal, out, mode, self.session.reader)
        except (ReaderSetError, OSError) as exc:
            self._message(f"Export of confirmed cases failed: {exc}", 10000)
            return None
        if self.store is not None:
            self.store.audit("exported reader sets", self.session.reader, self.model.model_id,
                             f"normal={len(normal)}; abnormal={len(abnormal)}; form={mode}")
        self._message(f"Wrote {len(normal)} confirmed normal and {len(abnormal)} confirmed abnormal cases "
                      f"to {out}", 10000)
        return written

    def send_to_training(self) -> ReaderSets | None:
        """Write the confirmed cases as folders of links in the data folder and send them to training.

        The New-detector panel takes them as its known-normal and confirmed-abnormal folders and
        checks them as any folder (leaks into validation, duplicates, too few images); the
        detector's card then says how many images came from reader marks.
        """
        written = self.export_confirmed(self._sets_root / time.strftime("%Y%m%d-%H%M%S"), "links")
        if written is not None:
            if self.store is not None:
                self.store.audit("sent reader sets to training", self.session.reader, self.model.model_id,
                                 f"normal={written.counts['normal']}; abnormal={written.counts['abnormal']}")
            self.sets_for_training.emit(written)
        return written

    def menu_actions(self) -> list[QAction]:
        """The Reading menu's entries for the reader sets."""
        return [self.export_action, self.train_action]

    def action_slots(self) -> dict[str, Callable[[], object]]:
        """The reading actions by shortcut id (:mod:`app.shortcuts`)."""
        return {"next_case": lambda: self.next_case(1), "previous_case": lambda: self.next_case(-1),
                "next_flagged": self.next_unread_flagged, "resort": self.resort, "toggle_read": self.toggle_read,
                "mark_agree": lambda: self.mark("agree"), "mark_disagree": lambda: self.mark("disagree"),
                "mark_normal": lambda: self.mark("normal"), "mark_abnormal": lambda: self.mark("abnormal"),
                "comment": self.comment}

    # ================================================================== counts and progress
    def _counts_soon(self) -> None:
        if not self._counts_timer.isActive():
            self._counts_timer.start()

    def progress_text(self) -> str:
        """The reading progress, e.g. "37 of 120 read, 5 flagged unread"."""
        c = self.model.counts()
        text = f"{c['read']:,} of {c['files']:,} read"
        if self.model.threshold is not None:
            text += f", {c['flagged_unread']:,} flagged unread"
        studies = self.study_progress(None)
        return f"{text}; {studies}" if studies else text

    def update_counts(self) -> None:
        """Rewrite the status bar's counts and progress and the worklist's "shown" line."""
        c = self.model.counts()
        if not c["files"]:
            self.counts_label.setText("no files")
            self.panel.counts_label.setText("")
            return
        text = counts_text(c, self.model.model_id is not None)
        self.counts_label.setText(f"{text}  |  {self.progress_text()}")
        folders = self.model.progress_by_folder()
        if len(folders) > 1:  # several folders in one worklist: each one's progress on hover
            self.counts_label.setToolTip("\n".join(
                f"{root.name or root}: {read:,} of {files:,} read, {fu:,} flagged unread"
                + (f"; {studies}" if (studies := self.study_progress(root)) else "")
                for root, files, read, fu in folders))
        else:
            self.counts_label.setToolTip("Reading progress of the worklist")
        shown = f"{text} · {self.proxy.rowCount():,} shown"
        stale = self.model.stale_rows() if self.model.order_frozen else 0
        if stale:
            shown += f" · {stale:,} new scores not placed: S re-sorts"
        self.panel.counts_label.setText(shown)

    # ================================================================== the filter box
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if obj is self.panel.filter_edit and isinstance(event, QKeyEvent):
            key = event.key()
            leave = key in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter)
            if leave and event.type() == QEvent.Type.ShortcutOverride:
                event.accept()  # Esc is the window's "cancel scoring": the filter box gets it first
                return True
            if leave and event.type() == QEvent.Type.KeyPress:
                self.panel.table.setFocus(Qt.FocusReason.ShortcutFocusReason)  # J/K work again
                return True
        return super().eventFilter(obj, event)


def _scores(stored: dict[str, StoredScore]) -> tuple[dict[str, CaseScore], dict[str, str]]:
    scores, errors = {}, {}
    for mid, s in stored.items():
        if s.score is not None and s.percentile is not None:
            scores[mid] = CaseScore(s.score, s.percentile, s.acquisition)
        elif s.error:
            errors[mid] = s.error
    return scores, errors


def _record(known: KnownFile) -> CaseRecord:
    scores, errors = _scores(known.scores)
    return CaseRecord(known.path, known.meta, known.error, scores, errors, content=known.content)
