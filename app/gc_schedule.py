"""Python's cyclic garbage collector on the GUI's schedule: young generations often, the full one
only when the app is idle.

Measured (bench/RESULTS.md, "Event loop while scoring"): with indexing and scoring out of the
GUI process, the stalls over 100 ms that were left were the collector's automatic full
(generation 2) collections, 95–166 ms each, which traverse every tracked object: Qt and numpy
module state plus the ~15 objects of each of 10,000 worklist records, and which CPython starts
whenever the heap has grown by a quarter — exactly what indexing a big folder does.

:class:`CollectorSchedule` turns automatic collection off and instead:
- collects generations 0 and 1 every :data:`YOUNG_INTERVAL_MS` (objects from the last half
  second: a few milliseconds even while 1,500 files a second are indexed), so short-lived
  cyclic garbage is freed as before;
- runs the full collection only when nothing has been indexed or scored for :data:`IDLE_FULL_S`
  seconds (and then at most every :data:`IDLE_FULL_S` seconds), then ``gc.freeze()``s the
  survivors (the worklist, the modules), so the next full collection looks only at what was
  allocated since: a few milliseconds.
Frozen objects are still freed by reference counting (worklist records hold no cycles); only
cyclic garbage among them would wait, for :meth:`CollectorSchedule.stop` (window closed), which
unfreezes and restores automatic collection.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Slot

logger = logging.getLogger(__name__)

YOUNG_INTERVAL_MS = 500
IDLE_FULL_S = 20.0


class CollectorSchedule(QObject):
    """Run the garbage collector from the event loop (see the module's docstring).

    Args:
        is_busy: whether background work (indexing, scoring) is under way now.
        young_interval_ms: how often generations 0 and 1 are collected.
        idle_full_s: quiet time before a full collection.
    """

    def __init__(self, is_busy: Callable[[], bool], young_interval_ms: int = YOUNG_INTERVAL_MS,
                 idle_full_s: float = IDLE_FULL_S, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._is_busy = is_busy
        self._idle_full_s = float(idle_full_s)
        self._timer = QTimer(self)
        self._timer.setInterval(int(young_interval_ms))
        self._timer.timeout.connect(self._tick)
        self._last_busy = time.monotonic()
        self._last_full = time.monotonic()
        self._was_enabled = gc.isenabled()
        self.full_collections = 0
        self.active = False

    def start(self) -> None:
        """Collect everything now (start-up objects are long-lived), freeze it, and take over."""
        if self.active:
            return
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        self.active = True
        self._timer.start()

    def stop(self) -> None:
        """Give collection back to CPython (and unfreeze what this schedule froze)."""
        if not self.active:
            return
        self._timer.stop()
        self.active = False
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()

    @Slot()
    def _tick(self) -> None:
        gc.collect(1)
        now = time.monotonic()
        if self._is_busy():
            self._last_busy = now
            return
        if now - max(self._last_busy, self._last_full) >= self._idle_full_s:
            t = time.perf_counter()
            gc.collect()
            gc.freeze()
            self._last_full = time.monotonic()
            self.full_collections += 1
            logger.debug("idle full collection: %.0f ms", (time.perf_counter() - t) * 1000)
