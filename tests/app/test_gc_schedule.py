"""CollectorSchedule: automatic collection off, young cyclic garbage still freed on every tick,
old garbage only by the full pass when idle, everything given back on stop."""
from __future__ import annotations

import gc
import weakref

from cxrscreen.app.gc_schedule import CollectorSchedule


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_young_garbage_each_tick_old_garbage_only_when_idle(qapp) -> None:
    busy = [True]
    was_enabled = gc.isenabled()
    sched = CollectorSchedule(lambda: busy[0], young_interval_ms=10_000, idle_full_s=0.0)
    sched.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        young = Node()
        young_ref = weakref.ref(young)
        del young
        sched._tick()
        assert young_ref() is None  # collected by the young pass
        old = Node()
        old_ref = weakref.ref(old)
        sched._tick()  # survives the young pass (still referenced): now in the oldest generation
        del old
        sched._tick()
        sched._tick()
        assert old_ref() is not None and sched.full_collections == 0  # busy: no full pass
        busy[0] = False
        sched._tick()
        assert old_ref() is None and sched.full_collections == 1
    finally:
        sched.stop()
    assert gc.isenabled() == was_enabled and gc.get_freeze_count() == 0
    sched.stop()  # twice is harmless


def test_the_window_runs_the_schedule_and_gives_it_back_on_close(qtbot, settings_path) -> None:
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    was_enabled = gc.isenabled()
    w = MainWindow(AppSettings(settings_path))
    qtbot.addWidget(w)
    assert w.gc_schedule.active and not gc.isenabled()
    w.close()
    qtbot.waitUntil(lambda: not w.isVisible() and not w.gc_schedule.active, timeout=10_000)
    assert gc.isenabled() == was_enabled
