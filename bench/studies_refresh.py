"""What the Studies list costs the GUI thread: grouping a 10,000-image DICOM worklist into studies.

    QT_QPA_PLATFORM=offscreen nice -n 10 .venv/bin/python bench/studies_refresh.py --n 10000 \
        --json bench/results/reading/studies_refresh.json

Records only (no files are read: the list works from the header summary the worklist holds):
``--n`` DICOM images, two per study (a PA and a lateral), three studies per patient on
different dates, all scored by one model id. The Studies tab is shown and its list recomputed
``--repeats`` times (:meth:`app.controllers.studies.StudiesController.refresh`) in three cases:
cold (the records grouped, every row and tree item made), nothing changed, and after 100 new
results (a scoring batch: the grouping is kept, leads and changed rows are made again); each time's wall and CPU time (the GUI thread's) are reported with the load average,
since the machine is shared. While scores stream in, the list is recomputed at most every 400 ms and at most a
fifth of the time (the controller waits 5x its last refresh), so these figures bound what it
takes from the event loop.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="DICOM images in the worklist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.n < 2 or args.repeats < 1:
        parser.error(f"--n must be >= 2 and --repeats >= 1, got {args.n} and {args.repeats}")

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.records import CaseRecord
    from cxrscreen.app.settings import AppSettings
    from cxrscreen.engine.io import RadiographMeta
    from cxrscreen.engine.scoring import ScoreResult

    tmp = Path(tempfile.mkdtemp(prefix="studies_refresh_"))
    w = MainWindow(AppSettings(tmp / "settings.ini"), ModelLibrary(tmp / "library"))
    w.resize(1400, 900)
    w.show()
    records = []
    for i in range(args.n):
        study = i // 2
        path = Path(f"/bench/p{study // 3}/s{study}/img{i}.dcm")
        records.append(CaseRecord(path, RadiographMeta(
            path=path, format="dicom", rows=2048, columns=2048, view_position="LL" if i % 2 else "PA",
            patient_id=f"P{study // 3}", study_uid=f"1.2.{study}", series_uid=f"1.2.{study}.{i % 2}",
            study_date=f"20{10 + study % 3}0101")))
    w.model.add_records(records)
    w.model.set_active_model("bench", 0.9)
    w.model.apply_results("bench", [ScoreResult(r.path, (i * 7919 % 1000) / 1000, 50.0)
                                    for i, r in enumerate(records) if i % 2 == 0])
    w.studies.dock.show()
    w.studies.dock.raise_()
    for _ in range(20):
        app.processEvents()
    def timed(case: str) -> dict:
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.thread_time()
        w.studies.refresh()
        return {"case": case, "wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.thread_time() - c0, 3),
                "load_1min": round(load, 1), "next_refresh_after_ms": w.studies._timer.interval()}

    runs = []
    laterals = [r for i, r in enumerate(records) if i % 2]
    for k in range(args.repeats):
        w.studies._regroup = True  # cold: the records grouped, every row made and every tree item built again
        w.studies._rows.clear()
        w.studies.panel.tree.clear()
        w.studies.panel._items.clear()
        w.studies.panel._order.clear()
        runs.append(timed("cold"))
        runs.append(timed("nothing changed"))
        # 100 more results arrive (a scoring batch: laterals the gate refused)
        batch = laterals[k * 100:(k + 1) * 100]
        w.model.apply_results("bench", [ScoreResult(r.path, None, None, out_of_scope="lateral view (LL)")
                                        for r in batch])
        runs.append(timed("100 new results"))
    result = {"images": args.n, "studies": len(w.studies.panel.rows), "runs": runs, "cpu_count": os.cpu_count()}
    for case in ("cold", "nothing changed", "100 new results"):
        cpu = sorted(r["cpu_s"] for r in runs if r["case"] == case)
        result[f"cpu_s_median_{case.replace(' ', '_')}"] = cpu[len(cpu) // 2]
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
