"""The check of Qt's xcb platform plugin's system libraries (app/qt_libs.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cxrscreen.app import qt_libs

REPO = Path(__file__).resolve().parents[2]

# what ldd printed on a minimal Debian 12 for PySide6 6.9's libqxcb.so (abridged)
FAKE_LDD = """\
\tlinux-vdso.so.1 (0x00007ffd0b5f2000)
\tlibQt6XcbQpa.so.6 => /venv/lib/python3.11/site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f1c)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f1c3d)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibweird-vendor.so.3 => not found
"""


def test_parse_ldd_lists_each_missing_library_once() -> None:
    assert qt_libs.parse_ldd(FAKE_LDD) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
                                           "libxkbcommon-x11.so.0", "libweird-vendor.so.3"]
    assert qt_libs.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []  # nothing missing


def test_missing_libraries_map_to_debian_packages_and_one_command() -> None:
    missing = qt_libs.parse_ldd(FAKE_LDD)
    packages = qt_libs.packages_for(missing)
    assert packages == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"]
    assert qt_libs.install_command(packages, as_root=False) == (
        "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0")
    err = qt_libs.QtLibrariesMissing(missing, packages, qt_libs.install_command(packages, as_root=True))
    assert "apt-get install -y libxcb-cursor0" in str(err) and "libweird-vendor.so.3" in str(err)  # unknown: said


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin exists on Linux only")
def test_the_check_script_runs_on_the_installed_pyside() -> None:
    proc = subprocess.run([sys.executable, "-m", "cxrscreen.app.qt_libs"], capture_output=True, text=True, cwd=REPO, timeout=120)
    plugin = qt_libs.xcb_plugin()
    assert plugin is not None
    missing = qt_libs.missing_libraries(plugin)
    if missing:  # this machine lacks some: the script stops with the exact command
        assert proc.returncode == 1
        assert "apt-get install -y " + " ".join(qt_libs.packages_for(missing)) in proc.stderr
    else:
        assert proc.returncode == 0 and "finds all its libraries" in proc.stdout


def test_app_stops_before_qt_with_the_command(monkeypatch, capsys) -> None:
    import argparse

    from cxrscreen.app.main import add_arguments, run

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(qt_libs, "missing_libraries", lambda plugin: ["libxcb-cursor.so.0"])  # a machine without it
    monkeypatch.setattr(qt_libs, "_is_root", lambda: False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([])) == 1
    assert "sudo apt-get install -y libxcb-cursor0" in capsys.readouterr().err
