"""Which image-score pooling the demo detector should use, chosen on its own held-out synthetic chests.

The demo detector scores with DDAD's rec map; the paper's image score is the map's mean
(``score_top_fraction`` 1). A small lesion moves a few pixels of the map a lot and its mean a
little, so the mean of the map's highest pixels may separate better. This bench takes one
finished demo-detector run (``cxrscreen demo-detector --work W``: ``W/run``), and for each
candidate fraction computes, with that run's torch scorer:

- the threshold at 95 % specificity on the run's own held-out calibration normals (as the
  exported detector sets it),
- on a selection study written like the app's demo study (same size, variation, lesion
  strength, markers) but with its own seed (``DEMO_SEED + 7``), neither the demo study
  (``DEMO_SEED``) nor the held-out study of ``bench/demo_detector_quality.py``
  (``DEMO_SEED + 1``): AUROC, the share of lesion cases flagged and of normals flagged.

The demo study is not looked at. Synthetic images only.

    python bench/demo_pooling.py --work bench/_work/demo/work --json bench/results/demo/pooling.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

FRACTIONS = (1.0, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 1 / 4096)
SELECTION_SEED_OFFSET = 7


def _study_images(folder: Path, spec) -> tuple[np.ndarray, np.ndarray]:
    from cxrscreen.engine.datasets import load_images

    rows = [line.split(",") for line in (folder / "labels.csv").read_text().splitlines()[1:]]
    return load_images([folder / r[0] for r in rows], spec), np.array([int(r[1]) for r in rows])


def _maps(scorer, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([scorer.maps(torch.from_numpy(images[i : i + 64]))[scorer.score_type].numpy()
                               for i in range(0, len(images), 64)])


def main() -> int:
    import torch

    from cxrscreen.app.demo import DEMO_LESION_STRENGTH, DEMO_SEED, DEMO_SIZE, DEMO_VARIATION
    from cxrscreen.engine.datasets import TrainingData, load_images
    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.metrics import auroc
    from cxrscreen.engine.methods.ddad import recipe
    from cxrscreen.engine.synth import write_study
    from cxrscreen.models.ddad import pool_map

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of a finished demo-detector run")
    parser.add_argument("--cases", type=int, default=100, help="normal and lesion cases each in the selection study")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    run = args.work / "run"
    scorer = recipe.load_scorer(run)
    spec = recipe.Config.from_dict(json.loads((run / "run.json").read_text())["config"]).preprocess
    data = TrainingData.from_json(json.loads((run / "data.json").read_text()))
    cal_maps = _maps(scorer, load_images(data.normal_calibration, spec))
    with tempfile.TemporaryDirectory(prefix="cxrscreen-pooling-") as tmp:
        study = Path(tmp) / "selection"
        write_study(study, args.cases, args.cases, size=DEMO_SIZE, seed=DEMO_SEED + SELECTION_SEED_OFFSET,
                    variation=DEMO_VARIATION, lesion_strength=DEMO_LESION_STRENGTH)
        images, labels = _study_images(study, spec)
    maps = _maps(scorer, images)

    rows = []
    for fraction in FRACTIONS:
        cal = pool_map(torch.from_numpy(cal_maps), fraction).numpy()
        scores = pool_map(torch.from_numpy(maps), fraction).numpy()
        threshold = NormalCalibration.from_samples(cal, cal_maps).threshold_at_specificity(0.95)
        flagged = scores > threshold
        rows.append({"score_top_fraction": fraction, "pixels": max(1, round(fraction * maps[0].size)),
                     "auroc": round(auroc(labels, scores), 4),
                     "lesions_flagged": round(float(flagged[labels == 1].mean()), 4),
                     "normals_flagged": round(float(flagged[labels == 0].mean()), 4)})
        print(rows[-1])
    result = {"run_config": json.loads((run / "run.json").read_text())["config"],
              "calibration_normals": len(data.normal_calibration),
              "selection_study": {"seed": DEMO_SEED + SELECTION_SEED_OFFSET, "normal": int((labels == 0).sum()),
                                  "lesion": int((labels == 1).sum()), "size": DEMO_SIZE, "variation": DEMO_VARIATION,
                                  "lesion_strength": DEMO_LESION_STRENGTH},
              "operating_point": "95 % specificity on the run's calibration normals", "pooling": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
