"""Event-loop responsiveness while the app scores a large folder with a real ONNX detector.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_stall.py [--n 10000] [--detector FILE] \
        [--app-repo DIR] [--json FILE]

A QTimer probe fires every 10 ms in the GUI thread; how late each firing runs is the event
loop's stall. Meanwhile the app does what it does for a user: indexes the folder, scores every
file (results streaming into the sorted worklist), and a simulated user moves to the next case
every 300 ms (decode, heatmap, display, prefetch) and repaints. Without ``--detector`` the
torch-free local-contrast detector of ``tests/conftest.py`` (64 x 64 input) is built and used.

``--app-repo`` imports the app (and engine) from another checkout, e.g. a ``git worktree`` of an
older commit, so that two versions are measured by the same script on the same folder: the
app scoring in a worker thread (before) or in a separate engine process (after; the report
says which). The load average around the run and the peak memory of the GUI process and of
its engine processes (sampled every 200 ms) are recorded too.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

from bench.app_bench_common import WORK, EventLoopProbe, StallTracer, generated_folder, peak_rss_mb  # noqa: E402


def _local_contrast(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("cxr_test_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.build_local_contrast_detector(out, size=64)


def _engine_rss_mb(exclude: frozenset[int] = frozenset()) -> float:
    """Resident memory of this process's children (the engine processes) now, in MB."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        if child.pid in exclude:
            continue
        try:
            total += child.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector", type=Path)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--app-repo", type=Path, help="import app and engine from this checkout (default: this one)")
    parser.add_argument("--trace-stalls", action="store_true",
                        help="sample the GUI thread's stack while the loop is over 60 ms late (diagnosis)")
    parser.add_argument("--worker-nice", type=int, default=None,
                        help="nice value of the app's worker threads (default: the app's, app.workers.base.WORKER_NICE)")
    parser.add_argument("--busy", type=int, default=0,
                        help="run this many CPU-bound processes at nice 0 beside the app (a busy machine)")
    parser.add_argument("--gc", choices=("scheduled", "auto"), default="scheduled",
                        help="the app's collector schedule (default) or CPython's automatic collection")
    parser.add_argument("--index", choices=("process", "thread"), default="process",
                        help="index in an engine process (the app's default) or in a thread of the app")
    args = parser.parse_args()
    if args.app_repo is not None:
        sys.path[:0] = [str(args.app_repo.resolve() / "packaging" / "src"), str(args.app_repo.resolve())]
    import os
    folder = generated_folder(args.n, args.size)
    detector = args.detector or _local_contrast(WORK / "bench_local_contrast_64.onnx")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    import cxrscreen.app.workers.scoring as scoring_module
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    mode = "engine process" if hasattr(scoring_module, "ScoringProcess") else "worker thread"
    load_before = os.getloadavg()

    import cxrscreen.app.workers.base as workers_base
    if args.worker_nice is not None:
        workers_base.WORKER_NICE = args.worker_nice
    import subprocess
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]

    settings = WORK / "bench_stall.ini"
    settings.unlink(missing_ok=True)
    w = MainWindow(AppSettings(settings), ModelLibrary(WORK / "bench_library"), batch_size=args.batch_size)
    gc_mode = "auto"
    if hasattr(w, "gc_schedule"):  # older checkouts leave collection to CPython
        if args.gc == "auto":
            w.gc_schedule.stop()
        gc_mode = args.gc
    gc_pauses: list[tuple[float, int, float]] = []  # (seconds from open, generation, ms), collections >= 10 ms
    if args.trace_stalls:
        import gc
        started = [0.0]
        opened: list[float] = []  # the time the folder was opened (collections before it are start-up)

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            elif (ms := (time.perf_counter() - started[0]) * 1000) >= 10 and opened:
                gc_pauses.append((round(time.perf_counter() - opened[0], 2), info["generation"], round(ms, 1)))

        gc.callbacks.append(on_gc)
    index_mode = "thread"
    if hasattr(w, "index_in_process"):  # older checkouts index in a thread only
        w.index_in_process = args.index == "process"
        index_mode = args.index
    w.resize(1500, 900)
    w.show()
    w.load_detector(detector, provider="auto")
    while w.detector is None:
        app.processEvents()
        time.sleep(0.01)
    provider, note = w.detector.provider, w.detector.provider_note
    probe = EventLoopProbe(10)
    tracer = StallTracer(probe) if args.trace_stalls else None
    index_end: list[float] = []
    long_stalls: list[tuple[float, float, bool]] = []  # (seconds from open, ms, indexing then)
    seen = [0]

    def note_long_stalls() -> None:
        new = probe.stalls_ms[seen[0]:]
        seen[0] = len(probe.stalls_ms)
        if any(ms > 100 for ms in new):
            t = time.perf_counter() - t0
            long_stalls.extend((round(t, 1), round(ms, 1), w.indexing_active) for ms in new if ms > 100)
    user = QTimer()
    user.setInterval(300)
    moves = [0]

    def next_case() -> None:
        w.worklist.move(1)
        w.viewer.graphics.viewport().repaint()
        moves[0] += 1

    user.timeout.connect(next_case)
    done: dict[str, float] = {}
    engine_peak = [0.0]
    processes: dict[int, int] = {}

    def check() -> None:  # cheap: no pass over the records until everything is quiet
        engine_peak[0] = max(engine_peak[0], _engine_rss_mb(frozenset(p.pid for p in burners)))
        note_long_stalls()
        run = w.scoring.process if hasattr(w, "scoring") else w._scoring  # older checkouts: the window's
        if run is not None and hasattr(run, "processes_started"):
            processes[id(run)] = run.processes_started
        if not index_end and not w.indexing_active and w.model.rowCount() >= args.n:
            index_end.append(time.perf_counter() - t0)
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
    if args.trace_stalls:
        opened.append(t0)
    w.open_paths([folder])
    probe.start()
    if tracer is not None:
        tracer.start()
    user.start()
    checker.start()
    app.exec()
    scored_at = done["s"]
    note_long_stalls()
    during_index = [ms for _, ms, idx in long_stalls if idx]
    result = {
        "scoring_in": mode,
        "indexing_in": index_mode,
        "garbage_collection": gc_mode,
        "worker_nice": getattr(workers_base, "WORKER_NICE", None),
        "busy_processes": args.busy,
        "app_code": str(scoring_module.__file__),
        "files": args.n,
        "detector": f"{w.detector.meta.name} ({w.detector.meta.method}, input {w.detector.meta.input_size})",
        "provider": provider + (f" (fallback: {note})" if note else ""),
        "batch_size": args.batch_size,
        "index_and_score_s": round(scored_at, 1),
        "images_per_s": round(args.n / scored_at, 1),
        "case_changes": moves[0],
        "event_loop": probe.summary(),
        "stalls_over_100ms": sum(s > 100 for s in probe.stalls_ms),
        "indexing_s": round(index_end[0], 1) if index_end else None,
        "stalls_over_100ms_while_indexing": len(during_index),
        "long_stalls": long_stalls,
        "engine_processes": sum(processes.values()) if mode == "engine process" else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "engine_peak_rss_mb": round(engine_peak[0], 1),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    if tracer is not None:
        tracer.stop()
        result["stall_stacks"] = tracer.summary()
        result["stall_samples"] = tracer.samples
        result["gc_pauses_over_10ms"] = gc_pauses
    for p in burners:
        p.kill()
    w.close()
    while w.isVisible():
        app.processEvents()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
