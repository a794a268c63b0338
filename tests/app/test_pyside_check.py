"""The installed PySide6 keeps CPython's reference counts intact (app/pyside_check.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_many_emits_and_void_calls_do_not_abort_the_process() -> None:
    # a fresh interpreter with no workaround: PySide6 6.12 on CPython 3.11 aborts here
    code = textwrap.dedent("""
        from cxrscreen.app import pyside_check
        assert pyside_check.leaked_singletons() == set(), pyside_check.leaked_singletons()
        from PySide6.QtCore import QObject, Signal
        class E(QObject):
            s = Signal(bool)
        e = E()
        e.s.connect(lambda v: None)
        for _ in range(5000):
            e.s.emit(True)
            e.s.emit(False)
        for _ in range(20000):
            e.setObjectName("x")  # void: returns None
        print("alive")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "alive"


def test_check_names_the_fix_when_singletons_leak(monkeypatch) -> None:
    from cxrscreen.app import pyside_check

    monkeypatch.setattr(pyside_check, "leaked_singletons", lambda: {"None"})
    try:
        pyside_check.check()
    except pyside_check.BrokenPySideError as exc:
        assert "PySide6-Essentials<6.12" in str(exc)
    else:
        raise AssertionError("check() accepted a leaking PySide6")


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="singletons are immortal on CPython 3.12+: no count to lose")
def test_a_leak_of_one_reference_per_call_is_told_from_noise() -> None:
    import ctypes

    from cxrscreen.app import pyside_check

    def leak() -> None:  # what a broken build does: return None without taking a reference
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(None))

    try:
        assert pyside_check.references_lost(None, leak, 100) == 100
    finally:
        for _ in range(100):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))
    noise: list = [None] * 5
    assert pyside_check.references_lost(None, lambda: noise.pop() if noise else None, 100) == 5
    assert 5 < pyside_check.CALLS // 2  # a few references dropped elsewhere are not a leak
