"""`cxrscreen gui`: the entry point opens a folder with a detector, and closes cleanly."""
from __future__ import annotations

import argparse
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from cxrscreen.app import main
from cxrscreen.app.settings import AppSettings


def test_run_opens_scores_and_exits_cleanly(qapp, study: Path, tiny_detector: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    settings = tmp_path / "s.ini"
    args = parser.parse_args([str(study), "--model", str(tiny_detector), "--provider", "cpu",
                              "--settings", str(settings), "--library", str(tmp_path / "lib")])
    seen: dict[str, int] = {}

    def close_when_scored() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if w.objectName() == "" and hasattr(w, "model")]
        w = windows[0] if windows else None
        if w is not None and w.detector is not None and not w.indexing_active and not w.is_scoring \
                and w.model.rowCount() and w.model.counts()["scored"] == w.model.rowCount():
            seen.update(w.model.counts())
            w.close()  # workers are stopped before the window closes; then the app quits
        else:
            QTimer.singleShot(50, close_when_scored)

    QTimer.singleShot(50, close_when_scored)
    assert main.run(args) == 0
    assert seen["scored"] == sum(1 for p in study.iterdir() if p.suffix in (".png", ".dcm"))
    s = AppSettings(settings)
    assert s.last_folder == study and s.last_model == tiny_detector and s.provider == "cpu"
