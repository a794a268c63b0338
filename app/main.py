"""`cxrscreen gui`: the desktop app's entry point.

Import-light on purpose: ``engine.cli`` imports this module to build its parser, so Qt,
pyqtgraph and onnxruntime are imported inside :func:`run` only.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `gui` subcommand's arguments."""
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="folders or files to open (default: the last folder)")
    parser.add_argument("--model", type=Path, metavar="FILE", help="detector (.onnx) to load (default: the last one)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"),
                        help="where the detector runs (default: the saved choice, else auto)")
    parser.add_argument("--demo", action="store_true", help="open the synthetic demo study")
    parser.add_argument("--settings", type=Path, metavar="FILE",
                        help="use this INI file for preferences instead of the user's (tests, kiosks)")
    parser.add_argument("--library", type=Path, metavar="DIR", help="model library folder (default: the user's)")


def _has_display() -> bool:
    """Whether Qt can open a window: a display server on Linux, or an explicit Qt platform."""
    import os

    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run(args: argparse.Namespace) -> int:
    """Start the app; returns the exit code.

    With nothing to open (no paths, no last folder) the built-in demo study opens. Without a
    display (a headless Linux session) the headless demo (`cxrscreen demo`) runs instead, and
    says so.
    """
    if not _has_display():
        from cxrscreen.engine import demo

        print("No display found: the desktop app needs one (or QT_QPA_PLATFORM=offscreen). "
              "Running the headless demo instead.\n", file=sys.stderr)
        demo_parser = argparse.ArgumentParser(prog="cxrscreen demo")
        demo.add_arguments(demo_parser)
        return int(demo.run(demo_parser.parse_args([])) or 0)
    import os

    from cxrscreen.app import qt_libs

    if os.environ.get("QT_QPA_PLATFORM", "xcb").startswith("xcb") and os.environ.get("DISPLAY"):
        try:  # before Qt starts: Qt's own error names no library (see app/qt_libs.py)
            qt_libs.ensure(install=True)
        except qt_libs.QtLibrariesMissing as exc:
            print(exc, file=sys.stderr)
            return 1
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    pyside_check.check()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("cxrscreen")
    app.setOrganizationName("cxrscreen")
    app.setAttribute(Qt.ApplicationAttribute.AA_DontShowIconsInMenus, False)
    settings = AppSettings(args.settings)
    if args.provider:
        settings.set_provider(args.provider)
    window = MainWindow(settings, ModelLibrary(args.library) if args.library else None)
    window.show()
    model = args.model or settings.last_model
    if model is not None and Path(model).is_file():
        window.load_detector(Path(model))
    elif args.model is not None:
        window.report_error("Detector not found", str(args.model))
    if args.demo:
        window.open_demo()
    elif args.paths:
        window.open_paths(args.paths)
    elif settings.last_folder is not None and settings.last_folder.is_dir():
        window.open_paths([settings.last_folder])
    else:  # first start, nothing to open: show what the program does
        window.open_demo()
    code = app.exec()
    # a last guard: never let Python destroy a running QThread
    window.workers.stop_all()
    window.workers.wait_all(30_000)
    return int(code)
