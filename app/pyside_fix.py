"""Work around a PySide6 reference-counting bug that aborts the process after a few hundred signals.

PySide6 6.12 on CPython 3.11: ``SignalInstance.emit()`` and ``.disconnect()`` return ``True``
without taking a reference to it, so each call made from Python (ours, and pyqtgraph's on
every mouse move) lowers ``True``'s reference count by one. ``True`` starts near 600; when it
reaches zero CPython aborts ("bool_dealloc: deallocating True or False"). CPython 3.12+ makes
``True``/``False`` immortal, so the bug is harmless there.

:func:`apply` measures whether the running PySide6 has the bug (one emit of a private signal)
and, only then, adds 2**40 to the reference counts of ``True`` and ``False`` so they never
reach zero. It is idempotent and needs only ``QtCore``; the window and the entry point call it
before any signal is emitted.
"""
from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)
_PIN = 1 << 40
_applied = False


def emit_leaks_true() -> bool:
    """Whether emitting a signal from Python loses a reference to ``True`` (the bug)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    probe.ping.emit()
    after = sys.getrefcount(True)
    return after < before


def apply() -> bool:
    """Pin ``True`` and ``False`` if this PySide6 leaks them; returns whether it did (now or before)."""
    global _applied
    if _applied:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # immortal booleans: the bug cannot bite
    if not emit_leaks_true():
        return False
    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _PIN
    _applied = True
    logger.info("PySide6 signal emit leaks references to True/False: booleans pinned (app/pyside_fix.py)")
    return True
