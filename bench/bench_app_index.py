"""Opening a 10,000-file folder in the app: time to the first image on screen, to the full index,
peak memory, and the event loop's worst stall meanwhile.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_index.py [--n 10000] [--json out.json]

"First image on screen" is measured from the call that opens the folder to the end of the first
repaint of the viewer with that image (a real paint, forced with ``repaint()``). The window
runs as it does for users: header-only indexing in a worker, thumbnails made on demand for the
rows on screen, the first case decoded by the viewer's worker. No detector (indexing only).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.app_bench_common import WORK, EventLoopProbe, generated_folder, peak_rss_mb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=256, help="side of the generated images")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--index", choices=("process", "thread"), default="process",
                        help="index in an engine process with the app's thread until it is ready (the app's "
                             "default), or in the thread only")
    args = parser.parse_args()
    t = time.perf_counter()
    folder = generated_folder(args.n, args.size)
    print(f"folder: {folder} ({args.n} files, ready in {time.perf_counter() - t:.1f} s)")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    settings = WORK / "bench_index.ini"
    settings.unlink(missing_ok=True)
    w = MainWindow(AppSettings(settings), ModelLibrary(WORK / "bench_library"))
    w.index_in_process = args.index == "process"
    load_before = os.getloadavg()
    w.resize(1500, 900)
    w.show()
    app.processEvents()
    rss_before = peak_rss_mb()
    probe = EventLoopProbe(10)
    probe.start()
    marks: dict[str, float] = {}

    def first_paint() -> None:
        if "first" not in marks and w.viewer.case is not None:
            w.viewer.graphics.viewport().repaint()  # the image is on screen now
            marks["first"] = time.perf_counter() - t0

    def check() -> None:
        if "index" not in marks and not w.indexing_active and w.model.rowCount() >= args.n:
            marks["index"] = time.perf_counter() - t0
            QTimer.singleShot(2000, finish)  # on-screen thumbnails arrive meanwhile

    def finish() -> None:
        probe.stop()
        app.quit()

    watcher = QTimer()
    watcher.setInterval(1)
    watcher.timeout.connect(first_paint)
    checker = QTimer()
    checker.setInterval(50)
    checker.timeout.connect(check)
    t0 = time.perf_counter()
    w.open_paths([folder])
    watcher.start()
    checker.start()
    app.exec()
    first_image, full_index = marks.get("first"), marks["index"]
    result = {
        "files": w.model.rowCount(),
        "unreadable": w.model.counts()["unreadable"],
        "first_image_on_screen_s": round(first_image or float("nan"), 3),
        "full_index_s": round(full_index, 2),
        "files_per_s": round(args.n / full_index, 1),
        "thumbnails_made": len(w.thumbnails),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_open_mb": round(rss_before, 1),
        "event_loop": probe.summary(),
        "stalls_over_100ms": sum(ms > 100 for ms in probe.stalls_ms),
        "indexing_in": args.index,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "python": sys.version.split()[0],
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
