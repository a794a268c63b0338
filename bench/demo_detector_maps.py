"""Diagnosis for the demo detector: all three DDAD maps on synthetic chests, by setting.

Trains DDAD (AE-U, K = 2) as `cxrscreen demo-detector` does (160 synthetic known normals at
128 px; an unlabeled set of 80 normal + 53 lesion chests, lesion strength 1.5), but with the
anatomical variation given here, and scores 60 + 60 held-out 512 px chests (PNG and DICOM,
markers, the same variation, lesion strength given here) with the mean of each map
(rec, intra, inter; the demo detector exports inter). Synthetic images only.

    python bench/demo_detector_maps.py --epochs 40 --strength 1.0 --variation 0.5 --json OUT
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.datasets import from_folders, load_images
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.methods.ddad.recipe import all_maps, load_scorer
    from cxrscreen.engine.preprocess import PreprocessSpec
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.synth import write_study
    from cxrscreen.engine.train import run_training

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--strength", type=float, default=1.0, help="lesion strength of the held-out chests")
    parser.add_argument("--variation", type=float, default=0.5, help="anatomical variation of every chest")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cxrscreen-demo-maps-") as tmp:
        tmp = Path(tmp)
        style = dict(size=128, formats=("png",), variation=args.variation, marker=False)
        write_study(tmp / "normal", 160, 0, seed=1, **style)
        write_study(tmp / "unlabeled", 80, 53, seed=2, lesion_strength=1.5, **style)
        for folder in ("normal", "unlabeled"):
            (tmp / folder / "labels.csv").unlink()
        write_study(tmp / "test", 60, 60, seed=5, size=512, lesion_strength=args.strength, variation=args.variation)
        data = from_folders(tmp / "normal", tmp / "unlabeled")
        config = Config(backbone="ae-u", members=2, epochs=args.epochs, seed=0, preprocess=PreprocessSpec(size=64))
        t = time.perf_counter()
        with StopRequest() as stop:
            run_training("ddad", config, data, tmp / "run", Progress("none"), stop)
        train_s = time.perf_counter() - t
        rows = [line.split(",") for line in (tmp / "test" / "labels.csv").read_text().splitlines()[1:]]
        labels = np.array([int(r[1]) for r in rows])
        images = load_images([tmp / "test" / r[0] for r in rows], config.preprocess)
        maps = all_maps(load_scorer(tmp / "run"), images)
    result = {"epochs": args.epochs, "lesion_strength": args.strength, "variation": args.variation,
              "train_seconds": round(train_s, 1), "auroc": {k: round(M.auroc(labels, v), 4) for k, v in maps.items()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
