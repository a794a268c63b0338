"""A QThread that can be asked to stop, and the bookkeeping that keeps it alive until it ends.

Workers are ``QThread`` subclasses whose ``run`` emits signals; receivers live in the GUI
thread, so Qt queues every emission there and no widget is touched from a worker. A thread
object must outlive its run (destroying a running ``QThread`` aborts the process), so the
window keeps every started worker in a :class:`WorkerSet` until its ``finished`` signal.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

logger = logging.getLogger(__name__)


# Linux nice value of the app's worker threads. 0: they keep the GUI thread's priority. A
# niced worker that holds the GIL is descheduled in favour of any other job on the machine while
# the GUI thread waits for that GIL (priority inversion): with one busy CPU job beside the app,
# nice 10 gave 2-3 event-loop ticks over 100 ms per 10,000-file run and 98-107 files/s, nice 0
# 0-1 ticks and 137 files/s (bench/RESULTS.md, "Worker threads' priority"). Engine processes
# are niced separately (app.engine_process.PROCESS_NICE): they share no GIL with the GUI.
WORKER_NICE = 0


def lower_thread_priority(nice: int | None = None) -> None:
    """Give the calling thread (and the threads it starts later) the nice value ``nice``.

    ``nice`` defaults to the module's ``WORKER_NICE`` read at call time (0, so by default the
    priority is left alone; the stall bench sets other values to compare). On Linux the nice
    value is per thread and inherited by threads created afterwards, so decoding pools started
    from a worker inherit it. No-op for values <= 0 and on other systems.
    """
    nice = WORKER_NICE if nice is None else nice
    if nice <= 0 or not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        logger.debug("could not lower the priority of worker thread %s", threading.get_native_id())


class StoppableThread(QThread):
    """A worker thread with a stop flag that its ``run`` polls (and may wait on).

    Subclasses implement ``work()``; ``run()`` first applies ``WORKER_NICE`` (see there).
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        lower_thread_priority()
        self.work()

    def work(self) -> None:
        """The thread's job (override)."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask ``run`` to end at its next check (returns at once)."""
        self._stop.set()
        self.requestInterruption()
        with self._cond:
            self._cond.notify_all()


class WorkerSet(QObject):
    """Started workers, kept referenced until they finish.

    ``all_finished`` is emitted when the last running worker ends (used to close the window
    only once every thread has stopped).
    """

    all_finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: set[StoppableThread] = set()

    def start(self, worker: StoppableThread) -> StoppableThread:
        """Start a worker and keep it until it finishes."""
        self._running.add(worker)
        worker.finished.connect(self._on_finished)
        worker.start()
        return worker

    @Slot()
    def _on_finished(self) -> None:
        done = [w for w in self._running if w.isFinished()]
        for w in done:  # dropping the last reference deletes the (finished) thread object
            self._running.discard(w)
        if not self._running:
            self.all_finished.emit()

    def running(self) -> list[StoppableThread]:
        """Workers still running."""
        return [w for w in self._running if not w.isFinished()]

    def stop_all(self) -> None:
        """Ask every worker to stop (returns at once)."""
        for w in list(self._running):
            w.request_stop()

    def wait_all(self, timeout_ms: int) -> bool:
        """Block until every worker has ended, up to ``timeout_ms`` each; True when all did."""
        ok = True
        for w in list(self._running):
            if not w.wait(timeout_ms):
                logger.warning("worker %s still running after %d ms", type(w).__name__, timeout_ms)
                ok = False
        return ok

    def __len__(self) -> int:
        return len(self.running())

    def __contains__(self, worker: Any) -> bool:
        return worker in self._running
