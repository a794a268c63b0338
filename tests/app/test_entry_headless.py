"""Without a display, `cxrscreen` runs the headless demo and says why (no Qt crash)."""
from __future__ import annotations

import argparse
import sys

import pytest

from cxrscreen.app import main as app_main


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for Linux sessions")
def test_headless_session_runs_the_headless_demo(monkeypatch, capsys):
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    parser = argparse.ArgumentParser()
    app_main.add_arguments(parser)
    assert app_main.run(parser.parse_args([])) == 0
    captured = capsys.readouterr()
    assert "No display found" in captured.err
    assert "summary: 8 files read, 0 errors" in captured.out
