"""Window/level, zoom and pan on a 3000 x 3000 16-bit radiograph: time per interactive step.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_window.py [--side 3000]

A synthetic chest (engine.synth) is written as a 16-bit MONOCHROME2 DICOM, read by the app's
own loader (with a heatmap from the local-contrast test detector on top), shown in a
1500 x 900 window; then each step (a right-drag window/level move, a wheel zoom, a pan) is
applied and the viewer repainted synchronously. Reported: milliseconds per step (median,
95th percentile, worst) and the frame rate they allow.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

from bench.app_bench_common import WORK  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from cxrscreen.engine.synth import write_study

    folder = WORK / f"app_window_{args.side}" / "study"
    if not (folder / "labels.csv").is_file():
        write_study(folder, 1, 0, size=args.side, formats=("dicom",), seed=3)
    path = next(p for p in sorted(folder.iterdir()) if p.suffix == ".dcm")
    spec = importlib.util.spec_from_file_location("cxr_test_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    det_path = module.build_local_contrast_detector(WORK / "bench_local_contrast_64.onnx", size=64)

    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    from cxrscreen.app.case_loading import load_case
    from cxrscreen.app.state import ViewerState
    from cxrscreen.app.viewer.view import RadiographView
    from cxrscreen.engine.detector import Detector

    t0 = time.perf_counter()
    case = load_case(path, Detector(det_path, "cpu"))
    load_s = time.perf_counter() - t0
    state = ViewerState()
    view = RadiographView(state)
    view.resize(1100, 900)
    view.show()
    view.show_case(case, path.name)
    app.processEvents()
    view.graphics.viewport().repaint()
    port = view.graphics.viewport()

    def timed(step) -> list[float]:
        out = []
        for i in range(args.steps):
            t = time.perf_counter()
            step(i)
            port.repaint()
            out.append((time.perf_counter() - t) * 1000)
        return out

    def summary(ms: list[float]) -> dict[str, float]:
        ms = sorted(ms)
        return {"median_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
                "worst_ms": round(ms[-1], 1), "fps_at_median": round(1000 / statistics.median(ms), 1)}

    img = case.image
    result = {"image": f"{img.shape[1]} x {img.shape[0]}, {case.meta.bits_stored}-bit {case.meta.photometric}",
              "load_with_heatmap_s": round(load_s, 2)}
    result["window_level"] = summary(timed(lambda i: view.viewbox.window_dragged.emit(4.0 if i % 2 else -3.0, 3.0, False)))
    result["invert"] = summary(timed(lambda i: state.set_invert(not state.invert)))
    result["zoom"] = summary(timed(lambda i: view.zoom(1.1 if i < args.steps // 2 else 1 / 1.1)))
    view.one_to_one()
    result["pan_at_1to1"] = summary(timed(lambda i: view.viewbox.translateBy(QPointF(7.0, 5.0))))
    view.fit()
    state.set_heatmap_visible(False)
    result["window_level_no_heatmap"] = summary(timed(lambda i: view.viewbox.window_dragged.emit(4.0 if i % 2 else -3.0, 3.0, False)))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    view.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
