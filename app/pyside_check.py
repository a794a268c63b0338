"""Refuse a PySide6 build that corrupts CPython's reference counts.

PySide6 6.12.0 on CPython < 3.12 returns ``None`` from every ``void`` Qt method, and ``True``
from ``SignalInstance.emit()``, without taking a reference: a few thousand Qt calls (a second of
mouse tracking in pyqtgraph) bring a singleton's count to zero and CPython aborts
("none_dealloc" / "bool_dealloc"). 6.9–6.11 are correct, and CPython ≥ 3.12 makes the singletons
immortal. pyproject.toml therefore constrains PySide6 below 6.12 on Python < 3.12; this check
turns an environment that ignored the constraint into a clear error at start-up instead of a
crash minutes later.
"""
from __future__ import annotations

import sys
from typing import Callable


class BrokenPySideError(RuntimeError):
    """The installed PySide6 leaks references to Python singletons (see the module docstring)."""


CALLS = 200  # probe calls per singleton; a leaking build loses one reference per call


def references_lost(singleton: object, call: Callable[[], object], calls: int = CALLS) -> int:
    """How many references ``singleton`` lost over ``calls`` calls of ``call`` (collector paused)."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = sys.getrefcount(singleton)
        for _ in range(calls):
            call()
        return before - sys.getrefcount(singleton)
    finally:
        if was_enabled:
            gc.enable()


def leaked_singletons() -> set[str]:
    """Which of ``None``, ``True`` and ``False`` lose references through PySide6 calls.

    A leaking build loses one reference per call, so a singleton counts as leaked only when it
    lost at least half as many references as there were calls: references dropped meanwhile by
    other threads or freed objects (a few, at random) are not mistaken for the leak.
    """
    if sys.implementation.name == "cpython" and sys.version_info >= (3, 12):
        return set()  # immortal singletons: a leak cannot bite
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    leaked: set[str] = set()
    if references_lost(None, lambda: probe.setObjectName("probe")) >= CALLS // 2:  # a void method
        leaked.add("None")
    if max(references_lost(True, probe.ping.emit), references_lost(False, probe.ping.emit)) >= CALLS // 2:
        leaked.add("True/False")
    return leaked


def check() -> None:
    """Raise :class:`BrokenPySideError` when the installed PySide6 leaks singleton references."""
    leaked = leaked_singletons()
    if leaked:
        import PySide6

        raise BrokenPySideError(
            f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} corrupts reference counts to "
            f"{', '.join(sorted(leaked))} and would crash the app; install PySide6-Essentials<6.12 "
            "(pyproject.toml asks for it) or use Python 3.12+"
        )
