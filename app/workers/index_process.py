"""Indexing a folder in an engine process, with an in-app thread for the first seconds.

Parsing thousands of DICOM headers is Python work: in a thread of the app it holds the GIL the
event loop needs, and because worker threads run at a lower priority, a busy machine can
deschedule the indexing thread *while it holds the GIL*, so the GUI waits on it for hundreds of
milliseconds (bench/RESULTS.md, "Event loop while scoring": every remaining stall over 100 ms
fell in the indexing phase). So :class:`FolderIndexer` runs ``[engine] index ROOTS`` (see
:mod:`engine.index_cli`) in a separate process.

A new Python process needs about half a second (more on a loaded machine) before its first
record, and the first image must be on screen at once: so the in-app
:class:`~app.workers.indexing.IndexingThread` scans the same roots meanwhile, and its records are
shown until the process's first record arrives. Then the thread is stopped and the process's
records are used, from the first one: both scan in the same stable order, and the worklist adds
a file only once (by path), so the files the thread already listed are not listed twice and none
is missed. Should the process fail (no engine, a crash), the thread goes on, or a new one
rescans, and nothing is lost either way.

The object fits :class:`app.workers.base.WorkerSet` (``start``, ``request_stop``,
``isFinished``, ``wait``, ``finished``), so closing the window waits for both to end.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, Signal, Slot

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome
from cxrscreen.app.records import CaseRecord
from cxrscreen.app.workers.indexing import IndexingThread
from cxrscreen.engine.io.meta_json import meta_from_json

logger = logging.getLogger(__name__)
STOP_GRACE_MS = 500  # an index process still running this long after SIGTERM is killed (it only
# reads headers: nothing is lost; see app.workers.scoring.STOP_GRACE_MS)


class FolderIndexer(QObject):
    """Index folders and files: in an engine process, the app's own thread until it is ready.

    Args:
        roots: folders and/or files.
        command: the engine command (default: this Python's ``-m cxrscreen.engine``); None entries and an
            empty list mean the default.
        use_process: False indexes in the thread only (as before the engine process existed).

    Signals:
        records_found(list[CaseRecord]): a batch, in scan order (a file may come twice: once
            from each scanner around the hand-over; the worklist keeps the first).
        indexing_done(int, bool): number of files found, whether it was stopped early.
        indexing_failed(str): an unexpected error ended the scan (files found so far stay).
        source_changed(str): "process" when the engine process took over, "thread" when the
            app's thread had to go on or start again.
        finished(): the thread and the process have both ended.
    """

    records_found = Signal(object)
    indexing_done = Signal(int, bool)
    indexing_failed = Signal(str)
    source_changed = Signal(str)
    finished = Signal()

    def __init__(self, roots: Sequence[str | os.PathLike[str]], command: Sequence[str] | None = None,
                 use_process: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if not roots:
            raise ValueError("nothing to index: give at least one folder or file")
        self.roots = [Path(r) for r in roots]
        self._use_process = use_process
        self._command = list(command) if command else None
        self.source = "thread"  # whose records are passed on
        self._threads: list[IndexingThread] = []
        self.engine: EngineProcess | None = None
        self._count = 0  # files found by the current source
        self._stop = False
        self._done = False
        self._finished_sent = False
        self._process_total: int | None = None
        self._thread_failed: str | None = None  # why the current thread failed, if it did

    # ------------------------------------------------------------------ WorkerSet interface
    def start(self) -> None:
        """Start the thread and, unless disabled, the engine process (returns at once)."""
        self._start_thread()
        if self._use_process:
            self.engine = EngineProcess(self._command, parent=self)
            self.engine.events.connect(self._on_events)
            self.engine.finished.connect(self._on_process_finished)
            # the app holds identifiers in memory and shows them only when its user asks
            self.engine.start(["index", "--identifiers", *[str(r) for r in self.roots]])

    def request_stop(self) -> None:
        """Stop both scanners (returns at once); ``indexing_done(count, True)`` follows."""
        if self._stop:
            return
        self._stop = True
        for thread in self._threads:
            thread.request_stop()
        if self.engine is not None:
            self.engine.terminate(STOP_GRACE_MS)
        self._emit_done(stopped=True)
        self._check_finished()

    def isFinished(self) -> bool:  # noqa: N802 (QThread's name, for WorkerSet)
        """Whether the thread(s) and the process have all ended."""
        return all(t.isFinished() for t in self._threads) and (self.engine is None or not self.engine.is_running())

    def wait(self, timeout_ms: int) -> bool:
        """Block until everything has ended (at most ``timeout_ms`` each); True when it has."""
        ok = all(t.wait(timeout_ms) for t in self._threads)
        if self.engine is not None:
            ok = self.engine.wait(timeout_ms) and ok
        return ok

    # ------------------------------------------------------------------ the thread
    def _start_thread(self) -> None:
        thread = IndexingThread(self.roots, parent=None)
        thread.records_found.connect(self._on_thread_records)
        thread.indexing_done.connect(self._on_thread_done)
        thread.indexing_failed.connect(self._on_thread_failed)
        thread.finished.connect(self._check_finished)
        self._threads.append(thread)
        thread.start()

    def _from_current_thread(self) -> bool:
        return self.source == "thread" and bool(self._threads) and self.sender() is self._threads[-1]

    @Slot(object)
    def _on_thread_records(self, batch: list[CaseRecord]) -> None:
        if self._from_current_thread() and not self._done:
            self._count += len(batch)
            self.records_found.emit(batch)

    @Slot(int, bool)
    def _on_thread_done(self, count: int, stopped: bool) -> None:
        if not self._from_current_thread() or stopped:
            return
        if self._thread_failed is not None and self.engine is not None and self.engine.is_running():
            return  # the thread failed; the process, still running, will list the files
        if self._thread_failed is not None:
            self.indexing_failed.emit(self._thread_failed)
        if self.engine is not None:
            self.engine.terminate(STOP_GRACE_MS)  # the thread got there first: the process is redundant
        self._count = count
        self._emit_done(stopped=False)

    @Slot(str)
    def _on_thread_failed(self, message: str) -> None:
        if self._from_current_thread():
            logger.warning("indexing thread failed: %s", message)
            self._thread_failed = message  # reported when nothing else can list the files

    # ------------------------------------------------------------------ the process
    @Slot(list)
    def _on_events(self, events: list[dict[str, Any]]) -> None:
        if self._stop or self._done:
            return
        batch: list[CaseRecord] = []
        for event in events:
            kind = event.get("event")
            if kind == "record":
                batch.append(_record(event))
            elif kind == "done":
                self._process_total = int(event.get("count", 0))
        if batch and self.source == "thread":
            self.source = "process"
            self._count = 0
            for thread in self._threads:
                thread.request_stop()
            logger.info("indexing: the engine process took over from the app's thread")
            self.source_changed.emit("process")
        if batch:
            self._count += len(batch)
            self.records_found.emit(batch)

    @Slot(object)
    def _on_process_finished(self, outcome: ProcessOutcome) -> None:
        if not (self._stop or self._done):
            self._after_process(outcome)
        self._check_finished()

    def _after_process(self, outcome: ProcessOutcome) -> None:
        if outcome.status == "done" and self.source == "process":
            self._count = self._process_total if self._process_total is not None else self._count
            self._emit_done(stopped=False)
            return
        if self.source == "thread":
            if outcome.status != "done":
                logger.warning("indexing process ended early (%s); the app's thread goes on", outcome.message)
            return  # the thread is still the source (an empty folder, or no engine): it finishes
        logger.warning("indexing process failed after %d files (%s); indexing again in the app",
                       self._count, outcome.message)
        self.source = "thread"
        self._count = 0
        self._thread_failed = None
        self.source_changed.emit("thread")
        self._start_thread()  # from the start: files already listed are not added twice

    # ------------------------------------------------------------------ ending
    def _emit_done(self, stopped: bool) -> None:
        if self._done:
            return
        self._done = True
        self.indexing_done.emit(self._count, stopped)

    @Slot()
    def _check_finished(self) -> None:
        engine_ended = self.engine is None or not self.engine.is_running()
        if (not self._done and self.source == "thread" and self._thread_failed is not None and engine_ended
                and self._threads[-1].isFinished()):
            self.indexing_failed.emit(self._thread_failed)  # neither could finish: keep what was found
            self._emit_done(stopped=False)
        if self._finished_sent or not self._done or not self.isFinished():
            return
        self._finished_sent = True
        self.finished.emit()


def _record(event: dict[str, Any]) -> CaseRecord:
    """A worklist record from the index process's record event."""
    path = Path(str(event.get("path", "")))
    meta_obj, error = event.get("meta"), event.get("error")
    if meta_obj is None:
        return CaseRecord(path, None, str(error) if error else "cannot be read")
    try:
        return CaseRecord(path, meta_from_json(meta_obj), None if error is None else str(error))
    except ValueError as exc:  # a bug, not the user's file: say so instead of dropping it
        logger.error("bad header from the index process for %s: %s", path, exc)
        return CaseRecord(path, None, f"internal error reading the header list: {exc}")
