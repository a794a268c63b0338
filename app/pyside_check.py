"""Work around PySide6 reference-counting bugs that abort the process within seconds of use.

PySide6 6.12 on CPython 3.11 returns singletons without taking a reference to them:

* every Qt method returning ``void`` (``setText``, ``repaint``, ``processEvents``...) hands
  back ``None`` and lowers its reference count by one;
* ``SignalInstance.emit()`` and ``.disconnect()`` do the same with ``True``.

``None`` starts near 4,000 references and ``True`` near 600, so a few thousand Qt calls (a
second of pyqtgraph mouse tracking) bring one to zero and CPython aborts ("none_dealloc" /
"bool_dealloc: deallocating ... bug likely caused by a refcount error in a C extension").
CPython 3.12+ makes these singletons immortal, so the bugs are harmless there.

:func:`apply` measures which singletons the running PySide6 leaks (one void call, one emit)
and adds 2**40 to those singletons' reference counts only, so they never reach zero in the
life of a process. Idempotent; it needs only ``QtCore``; the entry point, the main window and
the app's test configuration call it before Qt is used.
"""
from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)
_PIN = 1 << 40
_pinned: set[str] = set()


def leaked_singletons() -> set[str]:
    """Which of ``None``, ``True`` and ``False`` lose a reference through PySide6 calls."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    leaked: set[str] = set()
    before = sys.getrefcount(None)
    for _ in range(10):
        probe.setObjectName("probe")  # a void method
    if sys.getrefcount(None) < before:
        leaked.add("None")
    before_true, before_false = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(10):
        probe.ping.emit()
    if sys.getrefcount(True) < before_true:
        leaked.add("True")
    if sys.getrefcount(False) < before_false:
        leaked.add("False")
    return leaked


def apply() -> set[str]:
    """Pin the singletons this PySide6 leaks; returns the names pinned (now or before)."""
    if _pinned:
        return set(_pinned)
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return set()  # immortal singletons: the bugs cannot bite
    leaked = leaked_singletons()
    if "True" in leaked or "False" in leaked:
        leaked |= {"True", "False"}  # the same functions return either
    objects = {"None": None, "True": True, "False": False}
    for name in sorted(leaked):
        ctypes.c_ssize_t.from_address(id(objects[name])).value += _PIN
    _pinned.update(leaked)
    if leaked:
        logger.info("PySide6 leaks references to %s: pinned (app/pyside_fix.py)", ", ".join(sorted(leaked)))
    return set(_pinned)
