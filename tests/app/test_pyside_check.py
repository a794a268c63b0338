"""The installed PySide6 keeps CPython's reference counts intact (app/pyside_check.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_many_emits_and_void_calls_do_not_abort_the_process() -> None:
    # a fresh interpreter with no workaround: PySide6 6.12 on CPython 3.11 aborts here
    code = textwrap.dedent("""
        from app import pyside_check
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
    from app import pyside_check

    monkeypatch.setattr(pyside_check, "leaked_singletons", lambda: {"None"})
    try:
        pyside_check.check()
    except pyside_check.BrokenPySideError as exc:
        assert "PySide6-Essentials<6.12" in str(exc)
    else:
        raise AssertionError("check() accepted a leaking PySide6")
