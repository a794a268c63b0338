"""The drift check on dev_test itself, and where a detector's calibration normals sit (issue 22).

For each detector: its dev_test specificity at the promised 95 % (the threshold its calibration
normals set), and the drift check (``engine.drift.check_drift``) of all of dev_test against that
calibration, which should raise no warning on the images the detector was developed on (the
banner's state: WARNING, caution or quiet). With
``--run RUN`` (the detector's training run folder): the held-out calibration normals re-scored
through the ONNX graph (checked against the stored scores), their median and 90th percentile
against dev_test's normals and the first 120 training normals, and the share of each below the
calibration's 95 % point, to tell a calibration sample that happens to sit low from a shift.

    python bench/dev_drift.py --model A.onnx [--model B.onnx ...]
    python bench/dev_drift.py --model A.onnx --run bench/_work/memmc/full_robust_e300_s0
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "packaging" / "src")]
import dev_split  # noqa: E402  (bench/ is on sys.path)
from cxrscreen.engine.detector import Detector, read_metadata  # noqa: E402
from cxrscreen.engine.drift import check_drift  # noqa: E402
from cxrscreen.engine.io import read_radiograph  # noqa: E402
from cxrscreen.engine.preprocess import preprocess  # noqa: E402


def _scores(det: Detector, pixels: list[np.ndarray]) -> np.ndarray:
    x = np.stack([preprocess(p, det.preprocess_spec) for p in pixels])[:, None]
    return np.concatenate([det.run(x[i : i + 128]).scores for i in range(0, len(x), 128)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--run", type=Path, help="the training run of the (one) --model")
    args = p.parse_args()
    dev_split.require()
    paths, labels = dev_split.dev_test()
    pixels = [read_radiograph(q).pixels for q in paths]  # decoded once for every detector
    for model in args.model:
        det = Detector(model, provider="cpu")
        cal = read_metadata(model).calibration
        scores = _scores(det, pixels)
        s_n = scores[labels == 0]
        t = cal.threshold_at_specificity(0.95)
        r = check_drift(scores, cal)
        print(f"{model.name}: {cal.n_normals} calibration normals; dev_test specificity at the promised 95 % "
              f"{np.mean(s_n < t):.3f}; shift {'found' if r.drift else 'not found'} (p = {r.p_value:.2g}), estimate "
              f"{r.specificity_estimated:.3f}: {'WARNING' if r.warning else 'caution' if r.caution else 'quiet'}")
        if args.run is not None:
            data = json.loads((args.run / "data.json").read_text())
            c = _scores(det, [read_radiograph(q).pixels for q in data["normal_calibration"]])
            tr = _scores(det, [read_radiograph(q).pixels for q in data["normal_train"][:120]])
            stored = np.sort(np.asarray(cal.normal_scores))
            print(f"  calibration re-scored: max |difference| from the stored scores {np.max(np.abs(np.sort(c) - stored)):.1e}")
            for name, s in (("calibration normals", c), ("dev_test normals", s_n), ("training normals (120)", tr)):
                print(f"  {name:24s} n {len(s):3d}  median {np.median(s):.4f}  90th percentile {np.quantile(s, 0.9):.4f}  "
                      f"below the 95 % threshold {np.mean(s < t):.3f}")


if __name__ == "__main__":
    main()
