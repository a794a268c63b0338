"""The study database in the window: writing 10,000 scores, and reopening a scored folder.

    QT_QPA_PLATFORM=offscreen nice -n 10 .venv/bin/python bench/reading_db.py [--n 10000] \
        [--json bench/results/reading/reading_db.json]

1. A folder of ``--n`` distinct radiograph files (synthetic chests, two thirds DICOM with
   patient identifiers, one third PNG; every file different, so every file has its own content
   hash) is made once under ``bench/_work/``.
2. The window opens it with a fresh database (headers indexed in an engine process, as users
   run it). Then 10,000 scores are streamed into the window as a scoring process sends them
   (batches of 8, one every 10 ms) twice: once with the study database switched off (the
   baseline) and once with it on (each result also written to the database in the writer
   thread). A QTimer probe firing every 10 ms in the GUI thread measures the event loop's
   stalls in both runs (bench/bench_app_stall.py's probe).
3. The window is closed; the database's size is measured.
   With ``--studies-tab``, a third stream runs with the Studies tab in front: its list of
   studies is recomputed as the scores arrive (app/controllers/studies.py).
4. A new window reopens the folder with the same database and the same detector id: the time
   to the full worklist with every score shown, whether any header was indexed or any
   scoring process started, and the event loop's stalls meanwhile.

The detector is a model id given to the worklist (``set_active_model``), not an ONNX file: the
scores are synthetic, so that what is measured is the database and the window, not inference.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

from bench.app_bench_common import WORK, EventLoopProbe  # noqa: E402

MODEL_ID = "bench-reading-model"


def distinct_folder(n: int, size: int = 128) -> Path:
    """``n`` files with distinct content (made once): re-saved synthetic chests with a unique id."""
    import pydicom
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from cxrscreen.engine.synth import write_study

    folder = WORK / f"reading_{n}_{size}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder / "files"
    source = WORK / f"reading_sources_{size}" / "study"
    if not (source / "labels.csv").is_file():
        write_study(source, 60, 30, size=size, seed=11)
    images = sorted(p for p in source.iterdir() if p.suffix in (".png", ".dcm"))
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = images[i % len(images)]
        dst = files / f"img_{i:05d}{src.suffix}"
        if dst.exists():
            continue
        if src.suffix == ".dcm":
            ds = pydicom.dcmread(src)
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i}"
            ds.PatientID = f"P{i // 3:06d}"
            ds.PatientName = f"Doe^Patient{i // 3}"
            ds.save_as(dst)
        else:
            info = PngInfo()
            info.add_text("cxrscreen-bench-id", str(i))
            Image.open(src).save(dst, pnginfo=info)
    marker.write_text(str(n))
    return files


def _wait(app, until, timeout_s: float) -> bool:
    t0 = time.perf_counter()
    while not until():
        if time.perf_counter() - t0 > timeout_s:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


def _stream(app, w, model_id: str, paths: list[Path], per_batch: int = 8, every_ms: float = 10.0) -> dict:
    """Feed scores to the window as a scoring process would; the probe's summary meanwhile."""
    from cxrscreen.engine.scoring import ScoreResult

    rng = random.Random(3)
    probe = EventLoopProbe(10)
    probe.start()
    store = w.reading.store
    cpu0, store_cpu0 = time.thread_time(), store.cpu_seconds if store is not None else 0.0
    t0 = time.perf_counter()
    for i in range(0, len(paths), per_batch):
        w.scoring.on_batch_scored(model_id, [ScoreResult(p, rng.random(), 100 * rng.random()) for p in paths[i:i + per_batch]])
        due = t0 + (i // per_batch + 1) * every_ms / 1000
        while time.perf_counter() < due:
            app.processEvents()
            time.sleep(0.001)
    _wait(app, lambda: w.model.counts()["scored"] >= len(paths) and not w.scoring.pending, 120)
    seconds = time.perf_counter() - t0
    flushed = w.reading.store.flush(120) if w.reading.store is not None else True
    written = time.perf_counter() - t0
    probe.stop()
    s = probe.summary()
    s.update({"ticks_over_100ms": sum(1 for x in probe.stalls_ms if x > 100), "seconds_shown": round(seconds, 2),
              "seconds_written": round(written, 2) if flushed else None,
              # CPU time, less sensitive than the stalls to what else runs on the machine
              "gui_thread_cpu_s": round(time.thread_time() - cpu0, 2),
              "writer_thread_cpu_s": round(store.cpu_seconds - store_cpu0, 3) if store is not None else None})
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--studies-tab", action="store_true",
                        help="a third stream with the Studies tab in front (its list recomputed as scores arrive)")
    args = parser.parse_args()
    folder = distinct_folder(args.n)

    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check

    pyside_check.check()
    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings
    from cxrscreen.app.studydb import DB_FILE, StudyDatabase

    home = WORK / "reading_db_run"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = home / "settings.ini"
    out: dict = {"n": args.n, "load_before": os.getloadavg()}

    # ------------------------------------------------------------------ first visit
    w = MainWindow(AppSettings(settings), ModelLibrary(home / "library"))
    w.resize(1500, 900)
    w.show()
    t0 = time.perf_counter()
    w.open_paths([folder])
    ok = _wait(app, lambda: not w.indexing_active and w.model.rowCount() >= args.n, 600)
    out["first_open_index_s"] = round(time.perf_counter() - t0, 2) if ok else None
    paths = [r.path for r in w.model.records()]
    store = w.reading.store
    w.reading.store = None  # baseline: the same stream with the database off
    w.model.set_active_model("baseline-" + MODEL_ID, 0.9)
    out["stream_without_db"] = _stream(app, w, "baseline-" + MODEL_ID, paths)
    w.reading.store = store
    assert store is not None and store.flush(120)
    tx0 = store.transactions
    w.model.set_active_model(MODEL_ID, 0.9)
    out["stream_with_db"] = _stream(app, w, MODEL_ID, paths)
    out["stream_with_db"]["transactions"] = store.transactions - tx0
    if args.studies_tab:  # the same stream again, the Studies list in front and following the scores
        w.studies.dock.show()
        w.studies.dock.raise_()
        w.model.set_active_model("studies-" + MODEL_ID, 0.9)
        refreshes = [0]
        refresh = w.studies.refresh

        def counted() -> None:
            refreshes[0] += 1
            refresh()

        w.studies._timer.timeout.disconnect()
        w.studies._timer.timeout.connect(counted)
        out["stream_with_db_studies_tab"] = _stream(app, w, "studies-" + MODEL_ID, paths)
        out["stream_with_db_studies_tab"].update({"studies": len(w.studies.studies), "list_refreshes": refreshes[0]})
        w.docks["worklist"].raise_()
    w.close()
    _wait(app, lambda: not w.isVisible(), 60)
    w.workers.wait_all(10_000)
    db_path = settings.parent / DB_FILE
    db = StudyDatabase(db_path)
    out["db_rows"] = {t: db.count(t) for t in ("files", "scores", "audit")}  # type: ignore[arg-type]
    db.close()
    size = sum(p.stat().st_size for p in db_path.parent.glob(DB_FILE + "*"))
    out["db_bytes"] = size
    out["db_mib_per_10000_files"] = round(size / 2**20 * 10_000 / args.n, 2)

    # ------------------------------------------------------------------ reopen
    w = MainWindow(AppSettings(settings), ModelLibrary(home / "library"))
    w.resize(1500, 900)
    w.show()
    w.model.set_active_model(MODEL_ID, 0.9)
    probe = EventLoopProbe(10)
    probe.start()
    first_row: list[float] = []
    t0 = time.perf_counter()
    w.open_paths([folder])

    def full() -> bool:
        if not first_row and w.model.rowCount():
            first_row.append(time.perf_counter() - t0)
        return not w.indexing_active and w.model.counts()["scored"] >= args.n

    ok = _wait(app, full, 120)
    full_s = time.perf_counter() - t0
    app.processEvents()
    probe.stop()
    shown = w.worklist.proxy.rowCount()
    out["reopen"] = {"full_worklist_with_scores_s": round(full_s, 3) if ok else None,
                     "first_row_s": round(first_row[0], 3) if first_row else None,
                     "rows_shown": shown, "indexers_started": len(w.indexing.indexers),
                     "scoring_process_started": w.scoring.process is not None,
                     "event_loop": probe.summary(),
                     "ticks_over_100ms": sum(1 for x in probe.stalls_ms if x > 100)}
    w.close()
    _wait(app, lambda: not w.isVisible(), 60)
    w.workers.wait_all(10_000)
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
