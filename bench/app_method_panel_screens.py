"""Screenshots of the New-detector panel for three kinds of method, built from an engine's
`methods --json` (issue 19).

The engine is the test engine of tests/app/fake_engine.py (a real process: its methods mirror
the contract — a dual-distribution method like DDAD, a one-class method, a weakly supervised
one), so the panel shows what it would show for such methods without training anything. The
images are synthetic chests (engine.synth). Run under a display, e.g.:

    xvfb-run -s "-screen 0 1600x1000x24" python bench/app_method_panel_screens.py --out /tmp/shots

Writes panel_<method>.png per method, and panel_dual_problem.png with a problem the engine's
`train --check` found. ``--real METHOD ...`` uses this checkout's engine instead and writes
panel_real_<method>.png with the advanced settings open (e.g. ``--real wscxr msacl_igd``: their
run-folder and weight-file options with their Browse buttons), and panel_real_<method>_how_it_runs.png
with the run settings in view where the method offers test-time views. ``--unlabeled-otherwise`` (with
``--real``) sharpens the unlabeled images first (``bench/shift.py``'s ``sharp_processing``: another
system's processing), so the engine's
`train --check` warns that they were acquired unlike the known normals
(panel_real_<method>_unlabeled_otherwise.png).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "packaging" / "src"), str(ROOT)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--real", nargs="+", default=None, metavar="METHOD",
                        help="this checkout's engine, these methods (default: the test engine's three methods)")
    parser.add_argument("--unlabeled-otherwise", action="store_true",
                        help="with --real: sharpen the unlabeled images (bench/shift.py's sharp_processing)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.settings import AppSettings
    from cxrscreen.app.training.panel import NewDetectorPanel
    from cxrscreen.app.workers.base import WorkerSet
    from cxrscreen.engine.synth import write_study

    tmp = Path(tempfile.mkdtemp(prefix="cxr-panel-"))
    data = tmp / "site"
    write_study(data / "normal", 120, 0, size=160, seed=1, formats=("png",))
    write_study(data / "unlabeled", 45, 15, size=160, seed=2, formats=("png",))
    write_study(data / "abnormal", 0, 12, size=160, seed=3, formats=("png",))
    if args.unlabeled_otherwise:  # the shift benchmark's sharp_processing (bench/shift.py), as another system's
        import numpy as np
        from PIL import Image

        sys.path.insert(0, str(ROOT / "bench"))
        from shift import SHIFTS

        from cxrscreen.engine.io import read_radiograph

        for f in sorted((data / "unlabeled").glob("*.png")):
            p = SHIFTS["sharp_processing"](read_radiograph(f).pixels, None)
            Image.fromarray(np.round(np.clip(p, 0, 1) * 255).astype(np.uint8)).save(f)
    settings = AppSettings(tmp / "settings.ini")
    if args.real:
        from cxrscreen.app.engine_process import default_engine_command

        settings.set_engine_command(default_engine_command())
    else:
        settings.set_engine_command([sys.executable, str(ROOT / "tests" / "app" / "fake_engine.py"),
                                     "--record", str(tmp / "calls.jsonl")])
    workers = WorkerSet()
    panel = NewDetectorPanel(ModelLibrary(tmp / "models"), settings, workers, runs_root=tmp / "runs")
    panel.resize(1500, 980)
    panel.show()

    def wait(condition, seconds: float = 60.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            app.processEvents()
            if condition():
                return True
            time.sleep(0.02)
        return False

    def settle(seconds: float = 0.5) -> None:
        wait(lambda: False, seconds)

    if not wait(lambda: panel.catalog is not None or panel.catalog_error is not None):
        print("the engine's methods were not read in time", file=sys.stderr)
        return 1
    panel.advanced.setChecked(True)
    if args.real:
        for method in args.real:
            panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))
            info = panel.info
            for role in ("normal", "unlabeled", "abnormal"):
                used = info is not None and info.role(role).requirement == "required"
                panel.set_folder(role, data / role if used else None)
            wait(lambda: panel.check_result is not None and panel._dup_thread is None, 120)
            settle(1.0)
            from PySide6.QtWidgets import QScrollArea

            scroll = panel.findChild(QScrollArea)
            paths = [n for n, w in panel.options_form.fields.items() if hasattr(w, "browse")]
            if scroll is not None and paths:  # the path options in view
                scroll.ensureWidgetVisible(panel.options_form.fields[paths[-1]], 50, 200)
                settle(0.5)
            suffix = "_unlabeled_otherwise" if args.unlabeled_otherwise else ""
            panel.grab().save(str(args.out / f"panel_real_{method}{suffix}.png"))
            if scroll is not None and "test_time_views" in panel.options_form.fields:  # "How it runs" in view
                scroll.ensureWidgetVisible(panel.options_form.fields["test_time_views"], 50, 50)
                settle(0.5)
                panel.grab().save(str(args.out / f"panel_real_{method}{suffix}_how_it_runs.png"))
        panel.check.cancel()
        workers.stop_all()
        workers.wait_all(10_000)
        print("screenshots in", args.out)
        return 0
    for method, roles in (("dual", ("normal", "unlabeled")), ("oneclass", ("normal",)),
                          ("weak", ("normal", "abnormal"))):
        panel.method_combo.setCurrentIndex(panel.method_combo.findData(method))
        for role in ("normal", "unlabeled", "abnormal"):
            if panel.zones[role].path is not None and role not in roles:
                panel.set_folder(role, None)
        for role in roles:
            if panel.zones[role].path is None:
                panel.set_folder(role, data / role)
        if not wait(lambda: panel.can_train() and panel._dup_thread is None):
            print(f"{method}: not ready:", [f.text for f in panel.findings], file=sys.stderr)
        settle()
        panel.grab().save(str(args.out / f"panel_{method}.png"))
        if method == "dual":
            panel.set_preset("quick")
            panel.set_option("batch_size", 256)
            wait(lambda: panel.check_result is not None and not panel.check_result.ok)
            settle()
            panel.grab().save(str(args.out / "panel_dual_problem.png"))
            panel.set_preset("paper")
            panel.set_option("batch_size", None)
    panel.check.cancel()
    workers.stop_all()
    workers.wait_all(10_000)
    print("screenshots in", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
