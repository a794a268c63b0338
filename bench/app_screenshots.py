"""Screenshots of the desktop app for the README (run under a virtual X server).

    apt-get install -y xvfb
    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/app_screenshots.py \
        [--detector FILE.onnx] [--synthetic-detector FILE.onnx] [--out bench/figures]

Scenes: the real full-resolution samples in ../shared/data/fullres (skipped with a message when
absent) and a generated synthetic study, each scored, a flagged case on screen with its
heatmap. Without ``--detector`` the torch-free local-contrast test detector
(``tests/conftest.py``) is built and recalibrated on normals of the scene's kind (200 Kermany
known normals; 80 synthetic normals): a layout demonstration, not a screening model. The README
figures: ``--synthetic-detector`` = the output of ``cxrscreen demo-detector`` (a small DDAD
trained on synthetic radiographs). Settings and model library live in ``bench/_work/screens``
(never the user's).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "screens"


def baseline_detector(out: Path, normals: list[Path], source: str) -> Path:
    """The local-contrast test detector (tests/conftest.py), recalibrated on real normal images.

    Not a trained screening model: heatmap = squared difference from a 3x3 local mean. Its
    calibration is rebuilt from ``normals`` exactly as an exported detector's is (their scores
    and heatmaps through the shared preprocessing), so percentiles and flags mean what they
    say for this baseline.
    """
    import json

    import numpy as np
    import onnx

    from cxrscreen.engine.detector import METADATA_KEY, Detector, DetectorMetadata, NormalCalibration
    from cxrscreen.engine.scoring import iter_scores

    spec = importlib.util.spec_from_file_location("cxr_test_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.build_local_contrast_detector(out, size=64)
    results = [r for batch in iter_scores(normals, Detector(out, "cpu"), batch_size=16, keep_heatmaps=True)
               for r in batch if r.score is not None]
    cal = NormalCalibration.from_samples(np.array([r.score for r in results]),
                                         np.stack([r.heatmap for r in results]), source=source)
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    d = json.loads(props[METADATA_KEY])
    d["calibration"] = cal.to_dict()
    d["name"] = "local-contrast baseline (not trained)"
    d["training"] = {"normal_calibration": len(results), "note": "analytic baseline, no training"}
    meta = DetectorMetadata.from_json(json.dumps(d))
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(out))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, help="detector .onnx for every scene (default: the local-contrast "
                        "baseline, recalibrated per scene)")
    parser.add_argument("--synthetic-detector", type=Path,
                        help="detector for the synthetic scene only (e.g. `cxrscreen demo-detector`'s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "figures")
    parser.add_argument("--size", default="1560x960", help="window size WxH")
    parser.add_argument("--scenes", default="fullres,synthetic", help="comma-separated scenes")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    pyside_check.check()
    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    from bench.app_bench_common import process_events_until
    from cxrscreen.engine.synth import write_study

    WORK.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    data = REPO.parent / "shared" / "data"
    w_px, h_px = (int(v) for v in args.size.split("x"))

    def wait(cond, timeout: float = 120.0) -> bool:
        return process_events_until(app, cond, timeout)

    def shoot(name: str, folder: Path, detector: Path, pick: str = "top", contour: bool = False) -> None:
        settings_file = WORK / f"{name}.ini"
        settings_file.unlink(missing_ok=True)
        w = MainWindow(AppSettings(settings_file), ModelLibrary(WORK / "library"))
        w.resize(w_px, h_px)
        w.show()
        w.load_detector(detector, provider="cpu")
        assert wait(lambda: w.detector is not None), "detector did not load"
        w.open_paths([folder])
        assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
        w.viewer_state.set_contour_visible(contour)
        if pick == "flagged_abnormal":
            w.worklist.next_flagged()
        else:
            w.worklist.select_row(0)
        assert wait(lambda: w.viewer.case is not None and w.viewer.case.analysis is not None and
                    w.viewer.case.path == w.worklist.current_path()), "case did not load"
        wait(lambda: False, 1.5)  # thumbnails and repaints
        path = args.out / f"app_{name}.png"
        image = w.grab().toImage()
        image.save(str(path), "PNG", 0)
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, case {w.viewer.case.path.name}, "
              f"detector {w.detector.meta.name} ({w.detector.meta.method})")
        w.close()
        wait(lambda: not w.isVisible(), 30)
        w.deleteLater()
        QTimer.singleShot(0, lambda: None)

    scenes = args.scenes.split(",")
    if "fullres" in scenes:
        fullres = data / "fullres"
        if fullres.is_dir():
            import json
            split = json.loads((data / "kermany" / "splits" / "dev.json").read_text())
            normals = [data / "kermany" / p for p in split["train"]["known_normal"][:200]]
            det = args.detector or baseline_detector(WORK / "baseline_kermany.onnx", normals,
                                                     "200 Kermany known normals (dev split, train part)")
            shoot("fullres", fullres, det)
        else:
            print(f"skipped the fullres scene: {fullres} not found")
    if "synthetic" in scenes:
        study = WORK / "synthetic" / "study"
        if not (study / "labels.csv").is_file():
            write_study(study, 12, 8, size=768, seed=11)
        normals_dir = WORK / "synthetic_normals" / "study"
        if not (normals_dir / "labels.csv").is_file():
            write_study(normals_dir, 80, 0, size=768, seed=12)
        det = args.synthetic_detector or args.detector or baseline_detector(WORK / "baseline_synthetic.onnx",
                                                 sorted(p for p in normals_dir.iterdir() if p.suffix in (".png", ".dcm")),
                                                 "80 synthetic normal chests (engine.synth, seed 12)")
        shoot("synthetic", study, det, pick="flagged_abnormal", contour=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
