"""Opening a folder never scored before: is the worklist sorted by every score once scoring ends?

Before the reader starts, the app shows the most suspicious case so far; a case on screen for
1.5 s counts as read, and reading freezes the order (rows never move under the reader). This
opens a folder with a fresh study database, lets the app score it with a real detector, and
reports when the order froze (how many cases were scored then), and at the end how many scores
were left unplaced ("N new scores not placed: S re-sorts") and whether the list is in score order.
``--old-rule`` restores the rule before the fix (the case on screen counts even while the
folder is still being scored) in the same run, for comparison.

    python bench/fresh_folder_order.py --detector bench/_work/detectors/amae_robust_s0.onnx \\
        --folder bench/_work/drift_screens/dev_test [--old-rule]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO), str(REPO / "bench")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", type=Path, required=True)
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--old-rule", action="store_true")
    args = p.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings
    from cxrscreen.app.worklist.model import Column

    from bench.app_bench_common import process_events_until

    tmp = Path(tempfile.mkdtemp())
    w = MainWindow(AppSettings(tmp / "settings.ini"), ModelLibrary(tmp / "library"))
    w.resize(1440, 900)
    w.show()
    if args.old_rule:
        w.reading.settling = lambda: False
    froze: list[int] = []
    w.reading.session.started_changed.connect(lambda v: froze.append(w.model.counts()["scored"]) if v else None)
    w.load_detector(args.detector, provider="cpu")
    assert process_events_until(app, lambda: w.detector is not None, 120), "detector did not load"
    t0 = time.monotonic()
    w.open_paths([args.folder])
    assert process_events_until(app, lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring, 900)
    seconds = time.monotonic() - t0
    process_events_until(app, lambda: False, 3.0)  # the last re-sort and the dwell
    n = w.worklist.proxy.rowCount()
    cells = [w.worklist.proxy.index(r, Column.SCORE).data() for r in range(n)]
    scores = [float(c) for c in cells if c not in (None, "")]  # out-of-scope files have none (listed last)
    in_order = sum(a >= b for a, b in zip(scores, scores[1:]))
    print(f"{'old rule' if args.old_rule else 'this version'}: {n} files scored in {seconds:.1f} s; order froze "
          + (f"when {froze[0]} were scored" if froze else "never") + f"; {w.model.stale_rows()} scores not placed at the "
          f"end; {in_order} of {len(scores) - 1} neighbouring pairs of scored files in descending score order", flush=True)
    w.close()
    process_events_until(app, lambda: not w.isVisible(), 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
