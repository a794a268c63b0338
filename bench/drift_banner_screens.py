"""Screenshots of the worklist's drift banner in its three states, with a real detector on real images.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python bench/drift_banner_screens.py \
        --detector bench/_work/detectors/amae_robust_s0.onnx [--out bench/_work/drift_screens] \
        [--shift combined] [--scene shifted ...]

Scenes (dev_test radiographs of ../shared/data, never copied into the project; written under
``--out``, git-ignored by default):

1. ``dev_test``: all of dev_test (241 normal, 401 abnormal), symlinked. With AMAE robust seed 0
   the drift test finds a small shift (its dev_test specificity at the promised 95 % is 91.7 %):
   a caution in orange text, no ⚠.
2. ``crop_offset`` (or the shift ``--shift`` names): 200 dev_test images re-rendered off-centre (``bench/shift.py``'s
   ``crop_offset``) and saved as PNG: the promise fails (3.7 % on all of dev_test): ⚠ warning.
3. ``dev_test_small``: 12 dev_test images: too few to tell; quiet or a caution.

Each shot is the whole window after scoring finished; the banner's text is printed too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO), str(REPO / "bench")]


def build_scenes(out: Path, shift: str = "crop_offset") -> dict[str, Path]:
    from PIL import Image

    import dev_split
    from shift import SHIFTS

    from cxrscreen.engine.io import read_radiograph

    paths, _ = dev_split.dev_test()
    scenes = {"dev_test": out / "dev_test", shift: out / shift, "dev_test_small": out / "dev_test_small"}
    for name in ("dev_test", "dev_test_small"):
        scenes[name].mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        for name, count in (("dev_test", len(paths)), ("dev_test_small", 12)):
            link = scenes[name] / f"{i:04d}-{Path(p).name}"
            if i < count and not link.exists():
                link.symlink_to(Path(p).resolve())
    shifted = scenes[shift]
    shifted.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths[:: max(1, len(paths) // 200)][:200]):
        target = shifted / f"{i:04d}.png"
        if not target.exists():
            pix = SHIFTS[shift](read_radiograph(p).pixels, rng)
            Image.fromarray((np.clip(pix, 0, 1) * 255).astype(np.uint8)).save(target)
    return scenes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "_work" / "drift_screens")
    parser.add_argument("--shift", default="crop_offset", help="the shift of the second scene (bench/shift.py's names)")
    parser.add_argument("--scene", action="append", choices=("dev_test", "shifted", "dev_test_small"),
                        help="only these scenes (default: all three)")
    args = parser.parse_args()
    import dev_split

    dev_split.require()
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    from bench.app_bench_common import process_events_until

    args.out.mkdir(parents=True, exist_ok=True)
    scenes = build_scenes(args.out, args.shift)
    if args.scene:
        keep = {args.shift if name == "shifted" else name for name in args.scene}
        scenes = {k: v for k, v in scenes.items() if k in keep}

    def wait(cond, timeout: float = 600.0) -> bool:
        return process_events_until(app, cond, timeout)

    for k, (name, folder) in enumerate(scenes.items(), 1):
        settings_file = args.out / f"settings_{name}.ini"
        settings_file.unlink(missing_ok=True)
        w = MainWindow(AppSettings(settings_file), ModelLibrary(args.out / f"library_{name}"))
        w.resize(1440, 900)
        w.show()
        w.load_detector(args.detector, provider="cpu")
        assert wait(lambda: w.detector is not None), "detector did not load"
        w.open_paths([folder])
        assert wait(lambda: not w.indexing_active and w.model.rowCount() > 0 and not w.is_scoring), "scoring did not finish"
        assert wait(lambda: w.calibration.report is not None, 30), "no drift check"
        w.worklist.select_row(0)
        wait(lambda: False, 1.5)
        path = args.out / f"{k}_{name}.png"
        w.grab().toImage().save(str(path), "PNG", 0)
        r = w.calibration.report
        print(f"{path}: {'WARNING' if r.warning else 'caution' if r.caution else 'quiet'}: "
              f"{w.worklist.drift_label.text()}", flush=True)
        w.close()
        wait(lambda: not w.isVisible(), 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
