"""The PySide6 boolean-leak workaround keeps the process alive through many emits."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_many_emits_and_void_calls_do_not_abort_the_process() -> None:
    # a fresh interpreter: this would abort an unpatched PySide6 6.12 on CPython 3.11
    code = textwrap.dedent("""
        from app import pyside_fix
        pyside_fix.apply()
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


def test_apply_is_idempotent() -> None:
    from app import pyside_fix

    first = pyside_fix.apply()
    assert pyside_fix.apply() == first
