"""A screenshot of the worklist in the middle of a reading session (run under a virtual X server).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/reading_screenshot.py \
        [--out bench/figures/app_reading.png]

A generated synthetic study (30 chests, a third with lesions) is scored with the torch-free
local-contrast test detector (``tests/conftest.py``, recalibrated on 80 other synthetic normals as
bench/app_screenshots.py does: a layout demonstration, not a screening model); then a scripted reader goes through the flagged cases
with N, marks some (agree, disagree, confirmed normal / abnormal, a comment), and the window is
grabbed: read and unread rows, the marks, the progress in the status bar. Settings, database
and model library live in ``bench/_work/reading_screen`` (never the user's).
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
WORK = REPO / "bench" / "_work" / "reading_screen"


def _detector(out: Path, normals: list[Path]) -> Path:
    """The local-contrast test detector recalibrated on synthetic normals (bench/app_screenshots.py)."""
    spec = importlib.util.spec_from_file_location("cxr_app_screenshots", REPO / "bench" / "app_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.baseline_detector(out, normals, "synthetic")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "figures" / "app_reading.png")
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args()
    from cxrscreen.engine.synth import write_study

    shutil.rmtree(WORK, ignore_errors=True)
    study = WORK / "chest_study"
    write_study(study, 20, 10, size=256, seed=17)
    write_study(WORK / "normals", 80, 0, size=256, seed=18)
    normals = sorted(p for p in (WORK / "normals").iterdir() if p.suffix in (".png", ".dcm"))
    detector = _detector(WORK / "local_contrast.onnx", normals)

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    def wait(until, timeout_s: float = 120.0) -> bool:
        t0 = time.monotonic()
        while not until():
            if time.monotonic() - t0 > timeout_s:
                return False
            app.processEvents()
            time.sleep(0.01)
        return True

    w = MainWindow(AppSettings(WORK / "settings.ini"), ModelLibrary(WORK / "library"))
    w.resize(1500, 900)
    w.show()
    w.load_detector(detector, provider="cpu")
    assert wait(lambda: w.detector is not None), "detector did not load"
    w.operating.set_specificity(0.90)
    w.open_paths([study])
    assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
    w.actions["resort"].trigger()
    w.reading._read_timer.setInterval(50)

    def show_next(action: str) -> None:
        before = w.worklist.current_path()
        w.actions[action].trigger()
        path = w.worklist.current_path()
        if path != before:
            assert wait(lambda: w.viewer.case is not None and w.viewer.case.path == path), "case not shown"
            assert wait(lambda: w.reading.session.is_read(path), 5), "case not read"

    w.worklist.select_row(0)
    assert wait(lambda: w.viewer.case is not None)
    assert wait(lambda: w.reading.session.is_read(w.worklist.current_path()), 5)
    w.actions["mark_agree"].trigger()
    for action, mark in (("next_flagged", "mark_agree"), ("next_flagged", "mark_disagree"),
                         ("next_flagged", None), ("next_flagged", "mark_abnormal"), ("next_case", "mark_normal")):
        show_next(action)
        if mark:
            w.actions[mark].trigger()
    path = w.worklist.current_path()
    assert path is not None
    w.reading.session.set_comment(path, "old granuloma, unchanged")
    w.reading.update_counts()
    app.processEvents()
    w.worklist.table.setFocus(Qt.FocusReason.OtherFocusReason)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    image = w.grab().toImage()
    if image.width() > args.width:
        image = image.scaledToWidth(args.width, Qt.TransformationMode.SmoothTransformation)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(str(args.out))
    from PIL import Image  # a 256-colour palette keeps the README figure small

    Image.open(args.out).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {image.width()}x{image.height()}; status: {w.counts_label.text()}; "
          f"worklist: {w.worklist.counts_label.text()}")
    w.close()
    wait(lambda: not w.isVisible(), 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
