"""Screenshots of Detector ▸ Combine detectors…, with real runs: the dialog, the ensemble's card, and a worklist it scored.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/ensemble_screens.py \
        --member bench/_work/detectors/amae_robust_s0.onnx:RUN_DIR --member DDAD.onnx:RUN_DIR \
        [--out bench/_work/ensemble_screens]

A library under ``--out`` (git-ignored by default) gets the two detectors as the app registers an
in-app training (card ``training_job.run_dir``); the dialog is shown with both chosen, then the
real engine builds the ensemble (``cxrscreen ensemble``, a child process), the window loads it
from the library and scores 24 dev_test images (12 normal, 12 pneumonia; symlinks, never
copied into the project); the most suspicious case is selected with its heatmap.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO), str(REPO / "bench")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", action="append", required=True, help="DETECTOR.onnx:RUN_DIR (two or more)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "_work" / "ensemble_screens")
    args = parser.parse_args()
    import dev_split

    dev_split.require()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    from cxrscreen.app.detector_card import DetectorCardDialog
    from cxrscreen.app.ensemble import EnsembleDialog, candidates
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings
    from cxrscreen.engine.detector import read_metadata

    from bench.app_bench_common import process_events_until

    def wait(cond, timeout: float = 600.0) -> bool:
        return process_events_until(app, cond, timeout)

    out = args.out
    shutil.rmtree(out / "library", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    library = ModelLibrary(out / "library")
    for spec in args.member:
        model, run = spec.rsplit(":", 1)
        staged = out / f"staged_{Path(model).name}"
        shutil.copy(model, staged)
        meta = read_metadata(staged)
        library.register(staged, {"source": "trained in the app", "training_job": {
            "method": meta.method, "method_title": meta.method.upper(), "run_dir": str(Path(run).resolve()),
            "folders": {"normal": "dev split: known normals"}}},
            name=f"{meta.method.upper()} {'robust field' if meta.method == 'ddad' else 'robust'} (site)")
    folder = out / "worklist"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    paths, labels = dev_split.dev_test()
    normals = [p for p, y in zip(paths, labels) if y == 0][:12]
    abnormal = [p for p, y in zip(paths, labels) if y == 1][:12]
    for i, p in enumerate(normals + abnormal):
        (folder / f"{i:02d}-{Path(p).name}").symlink_to(Path(p).resolve())

    settings_file = out / "settings.ini"
    settings_file.unlink(missing_ok=True)
    w = MainWindow(AppSettings(settings_file), library)
    w.resize(1440, 900)
    w.show()
    dialog = EnsembleDialog(candidates(library), w)
    dialog.set_checked(list(range(len(dialog.options))))
    dialog.show()
    wait(lambda: False, 1.0)
    dialog.grab().toImage().save(str(out / "1_dialog.png"), "PNG", 0)
    print(out / "1_dialog.png", flush=True)
    job = w.model_tools.combine_detectors(dialog)
    dialog.close()
    built = []
    job.succeeded.connect(built.append)
    job.failed.connect(lambda m: print("failed:", m))
    assert wait(lambda: bool(built), 900), "the ensemble was not built"
    entry = built[0]
    card = DetectorCardDialog(read_metadata(entry.path), entry.path, "CPUExecutionProvider")
    card.resize(760, 900)
    card.show()
    wait(lambda: False, 1.0)
    card.grab().toImage().save(str(out / "2_card.png"), "PNG", 0)
    print(out / "2_card.png", flush=True)
    card.close()
    w.model_tools.use(entry)
    assert wait(lambda: w.detector is not None and w.detector.meta.model_id == entry.model_id), "not loaded"
    w.open_paths([folder])
    assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
    w.worklist.select_row(0)  # the most suspicious case
    wait(lambda: False, 2.0)
    w.grab().toImage().save(str(out / "3_worklist.png"), "PNG", 0)
    print(out / "3_worklist.png", flush=True)
    w.close()
    wait(lambda: not w.isVisible(), 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
