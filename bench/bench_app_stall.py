"""Event-loop responsiveness while the app scores a large folder with a real ONNX detector.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_stall.py [--n 10000] [--detector FILE]

A QTimer probe fires every 10 ms in the GUI thread; how late each firing runs is the event
loop's stall. Meanwhile the app does what it does for a user: indexes the folder, scores every
file in its worker (results streaming into the sorted worklist), and a simulated user moves to
the next case every 300 ms (decode, heatmap, display, prefetch) and repaints. Without
``--detector`` the torch-free local-contrast detector of ``tests/conftest.py`` (64 x 64 input)
is built and used.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.app_bench_common import WORK, EventLoopProbe, generated_folder, peak_rss_mb  # noqa: E402


def _local_contrast(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("cxr_test_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.build_local_contrast_detector(out, size=64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector", type=Path)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = generated_folder(args.n, args.size)
    detector = args.detector or _local_contrast(WORK / "bench_local_contrast_64.onnx")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    from app.library import ModelLibrary
    from app.main_window import MainWindow
    from app.settings import AppSettings

    settings = WORK / "bench_stall.ini"
    settings.unlink(missing_ok=True)
    w = MainWindow(AppSettings(settings), ModelLibrary(WORK / "bench_library"), batch_size=args.batch_size)
    w.resize(1500, 900)
    w.show()
    w.load_detector(detector, provider="auto")
    while w.detector is None:
        app.processEvents()
        time.sleep(0.01)
    provider, note = w.detector.provider, w.detector.provider_note
    probe = EventLoopProbe(10)
    user = QTimer()
    user.setInterval(300)
    moves = [0]

    def next_case() -> None:
        w.worklist.move(1)
        w.viewer.graphics.viewport().repaint()
        moves[0] += 1

    user.timeout.connect(next_case)
    done: dict[str, float] = {}

    def check() -> None:  # cheap: no pass over the records until everything is quiet
        if not w.indexing_active and not w.is_scoring and w.model.rowCount() >= args.n:
            c = w.model.counts()
            if c["scored"] >= c["readable"]:
                done["s"] = time.perf_counter() - t0
                user.stop()
                probe.stop()
                app.quit()

    checker = QTimer()
    checker.setInterval(200)
    checker.timeout.connect(check)
    t0 = time.perf_counter()
    w.open_paths([folder])
    probe.start()
    user.start()
    checker.start()
    app.exec()
    scored_at = done["s"]
    result = {
        "files": args.n,
        "detector": f"{w.detector.meta.name} ({w.detector.meta.method}, input {w.detector.meta.input_size})",
        "provider": provider + (f" (fallback: {note})" if note else ""),
        "batch_size": args.batch_size,
        "index_and_score_s": round(scored_at, 1),
        "images_per_s": round(args.n / scored_at, 1),
        "case_changes": moves[0],
        "event_loop": probe.summary(),
        "stalls_over_100ms": sum(s > 100 for s in probe.stalls_ms),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    w.close()
    while w.isVisible():
        app.processEvents()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
