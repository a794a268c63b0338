"""The indexing controller: fills the worklist when folders or files are opened.

Moved out of the main window (which keeps ``open_paths`` for what it shows, and delegates):
the study database lists the files it knows at once (:class:`app.controllers.reading.ReadingController`);
only new or changed files are indexed, header only, by :class:`app.workers.index_process.FolderIndexer`
(an engine process); found records are inserted in slices, one per event-loop turn; every new
record the active detector has not scored goes to :class:`app.controllers.scoring.ScoringController`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

from cxrscreen.app.records import CaseRecord
from cxrscreen.app.workers.index_process import FolderIndexer

if TYPE_CHECKING:
    from cxrscreen.app.main_window import MainWindow

RECORDS_PER_TURN = 200  # indexed files inserted per event-loop turn
MAX_LISTED_FILES = 500  # more new files than this: index their folders rather than a list of files


class IndexingController(QObject):
    """Indexing for one window.

    Args:
        window: the main window (worklist model and panel, workers, scoring, status bar).
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.indexers: list[FolderIndexer] = []  # scans still running (adding while one runs: both stream in)
        self.started_at = 0.0  # when the latest open began (time.monotonic)
        self._pending: list[CaseRecord] = []
        self._result: tuple[int, float] | None = None  # (files, seconds) once scanning ended
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._insert)

    @property
    def active(self) -> bool:
        """Whether files may still be added to the worklist (listing, scanning, or inserting)."""
        return (bool(self.indexers) or bool(self._pending) or self._result is not None
                or self.window.reading.listing)

    def reset(self) -> None:
        """A new worklist: stop every scan and forget what was waiting."""
        indexers, self.indexers = self.indexers, []
        for indexer in indexers:  # their indexing_done(stopped) now comes from no listed sender
            indexer.request_stop()
        self._pending.clear()
        self._result = None

    def open(self, paths: list[Path]) -> None:
        """List known files at once, then index the others."""
        self.started_at = time.monotonic()
        # files the study database knows are listed at once; only the others are indexed
        self.window.reading.list_known(paths, lambda known, unknown: self._on_listed(paths, known, unknown))

    def _on_listed(self, roots: list[Path], known: list[CaseRecord], unknown: list[Path]) -> None:
        w = self.window
        if w.closing:
            return
        self.add(known)
        if not unknown:
            self._result = (len(known), time.monotonic() - self.started_at)
            self._finish()
            return
        # a few new files: index those; many: the folders (files already listed are skipped)
        targets = unknown if len(unknown) <= MAX_LISTED_FILES else roots
        indexer = FolderIndexer(targets, w.settings.engine_command, use_process=w.index_in_process)
        indexer.records_found.connect(self._on_records)
        indexer.indexing_done.connect(self._on_done)
        indexer.indexing_failed.connect(self._on_failed)
        self.indexers.append(indexer)
        w.workers.start(indexer)
        w.statusBar().showMessage(f"Indexing {len(unknown):,} new or changed files"
                                  + (f" ({len(known):,} known)…" if known else "…"))

    def add(self, batch: list[CaseRecord]) -> None:
        """Put records in the worklist; score the new ones the active detector has no result for."""
        w = self.window
        new = w.model.add_records(batch)
        if not new:
            return
        if w.worklist.current_path() is None:
            w.worklist.select_row(0)
        if w.detector is not None and w.auto_score_action.isChecked() and not w.scoring.auto_paused:
            mid = w.detector.meta.model_id  # files the study database knows keep their score
            todo = [r.path for r in new if r.readable and mid not in r.scores and mid not in r.score_errors]
            if todo:
                w.scoring.enqueue(todo)

    @Slot(object)
    def _on_records(self, batch: list[CaseRecord]) -> None:
        if self.sender() not in self.indexers:
            return  # a scan of a worklist that was replaced
        # insert in slices, one per event-loop turn, so a big batch never holds the loop for long
        self._pending.extend(batch)
        if not self._timer.isActive():
            self._timer.start()

    def _insert(self) -> None:
        batch = self._pending[:RECORDS_PER_TURN]
        del self._pending[:RECORDS_PER_TURN]
        if self._pending:
            self._timer.start()
        self.add(batch)
        if not self._pending and not self.indexers:
            QTimer.singleShot(0, self._finish)  # after this slice is queued for scoring

    @Slot(int, bool)
    def _on_done(self, count: int, stopped: bool) -> None:
        sender = self.sender()
        if sender not in self.indexers:
            return
        self.indexers.remove(sender)  # type: ignore[arg-type]
        if stopped or self.indexers:
            return
        self._result = (count, time.monotonic() - self.started_at)
        if not self._pending:
            self._finish()

    def _finish(self) -> None:
        """Every file is in the worklist: report, and let scoring end when done."""
        if self._result is None:
            return
        w = self.window
        count, seconds = self._result
        self._result = None
        c = w.model.counts()
        w.statusBar().showMessage(f"Listed {count:,} files in {seconds:.1f} s"
                                  + (f"; {c['unreadable']} cannot be read (see Status)" if c["unreadable"] else ""), 8000)
        w.scoring.close_input()
        if count == 0:
            w.viewer.clear("No radiographs found here (DICOM, PNG, JPEG, TIFF, BMP).")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.window.report_error("Indexing stopped",
                                 f"Indexing stopped early: {message}\nThe files found so far are listed.")
