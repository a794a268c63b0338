"""Does top-pixel pooling of DDAD's anomaly map (``score_top_fraction``) help on real radiographs?

A measurement, not a tuning: no default changes with it (the paper preset keeps the map's mean).
It uses the quick real detector of ``bench/calibration_holds.py`` (DDAD, AE, K = 2, 30 epochs,
inter map; ``bench/_work/calibration/run``) and its torch scorer, and pools each map into an
image score with each fraction on two sets:

- validation (not dev_test): the run's 120 held-out calibration normals against 300 abnormal
  images of the dev split's unlabeled pool that the run did not train on (seed 0 draw);
- dev_test (241 normal, 401 abnormal), reported once, for the record.

For each: AUROC of each map (inter, the detector's; rec; intra) by pooling fraction.

    python bench/ddad_pooling_real.py     # a few minutes on 2 busy cores; bench/results/ddad/pooling_real.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
DATA = next((d / "shared" / "data" for d in (REPO.parent, REPO.parent.parent) if (d / "shared" / "data").is_dir()),
            REPO.parent / "shared" / "data")
DEV_SPLIT = DATA / "kermany" / "splits" / "dev.json"
RUN = REPO / "bench" / "_work" / "calibration" / "run"
OUT = REPO / "bench" / "results" / "ddad" / "pooling_real.json"
FRACTIONS = (1.0, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005)


def _maps(scorer, images: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    out: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, len(images), 64):
            for k, v in scorer.maps(torch.from_numpy(images[i : i + 64])).items():
                out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _aurocs(maps_n: dict[str, np.ndarray], maps_a: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    import torch

    from cxrscreen.engine.metrics import auroc
    from cxrscreen.models.ddad import pool_map

    labels = np.r_[np.zeros(len(maps_n["inter"])), np.ones(len(maps_a["inter"]))]
    out: dict[str, dict[str, float]] = {}
    for k in ("inter", "rec", "intra"):
        both = torch.from_numpy(np.concatenate([maps_n[k], maps_a[k]]))
        out[k] = {f"{f:g}": round(auroc(labels, pool_map(both, f).numpy()), 4) for f in FRACTIONS}
    return out


def main() -> int:
    if not DEV_SPLIT.is_file() or not (RUN / "model.pt").is_file():
        sys.exit(f"needs {DEV_SPLIT} and a finished run at {RUN} (python bench/calibration_holds.py makes it)")
    from cxrscreen.engine.datasets import TrainingData, load_images
    from cxrscreen.engine.methods.ddad import Config, recipe

    run = json.loads((RUN / "run.json").read_text())
    spec = Config.from_dict(run["config"]).preprocess
    scorer = recipe.load_scorer(RUN)
    data = TrainingData.from_json(json.loads((RUN / "data.json").read_text()))
    split = json.loads(DEV_SPLIT.read_text())
    root = DEV_SPLIT.parent.parent
    trained_on = {p.resolve() for p in data.unlabeled}
    unseen = [root / p for p in split["unlabeled_pool"]["abnormal"] if (root / p).resolve() not in trained_on]
    pick = np.random.default_rng(0).choice(len(unseen), size=min(300, len(unseen)), replace=False)
    val_n = _maps(scorer, load_images(data.normal_calibration, spec))
    val_a = _maps(scorer, load_images([unseen[i] for i in sorted(pick)], spec))
    test_n = _maps(scorer, load_images([root / p for p in split["dev_test"]["normal"]], spec))
    test_a = _maps(scorer, load_images([root / p for p in split["dev_test"]["abnormal"]], spec))
    result = {"detector_run": "bench/_work/calibration/run (DDAD AE, K = 2, 30 epochs, seed 0; bench/calibration_holds.py)",
              "validation": {"normal": len(val_n["inter"]), "abnormal": len(val_a["inter"]),
                             "auroc": _aurocs(val_n, val_a)},
              "dev_test": {"normal": len(test_n["inter"]), "abnormal": len(test_a["inter"]),
                           "auroc": _aurocs(test_n, test_a)}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
