"""Entry script of the desktop bundle: the app only (no torch), `cxrscreen gui` semantics.

``--self-test`` opens the main window offscreen, loads the detector given with ``--model``,
scores the synthetic demo study and exits 0 when every image got a score: the bundle's smoke
test (packaging/build.py runs it).
"""
from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    from app import main as app_main

    if "--self-test" in sys.argv:
        return self_test(sys.argv[1:])
    parser = argparse.ArgumentParser(prog="cxrscreen-app")
    app_main.add_arguments(parser)
    return app_main.run(parser.parse_args())


def self_test(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import tempfile
    from pathlib import Path

    from engine.detector import Detector
    from engine.scoring import iter_scores
    from engine.synth import write_study

    p = argparse.ArgumentParser()
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--model", type=Path, required=True)
    args = p.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    from app import pyside_check
    from app.main_window import MainWindow
    from app.settings import AppSettings

    pyside_check.check()
    qapp = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(Path(tmp) / "settings.ini"))
        window.show()
        qapp.processEvents()
        study = write_study(Path(tmp) / "study", 3, 2, size=128, seed=0)
        det = Detector(args.model)
        results = [r for batch in iter_scores([s.path for s in study], det) for r in batch]
        ok = all(r.score is not None for r in results) and "torch" not in sys.modules
        print(f"self-test: {len(results)} images scored with provider {det.provider}; torch loaded: {'torch' in sys.modules}")
        window.close()
        window.workers.stop_all()
        window.workers.wait_all(10_000)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
