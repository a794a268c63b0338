"""The drift warning's specificity estimate against a location–scale alternative, on labelled batches.

The warning (``engine/drift.py``) estimates the specificity a batch's normals get at the promised
threshold from the batch's lower part, assuming its normals are shifted by one δ on the
calibration's normal-score scale (binormal, equal variance). Under some shifts the lower scores
move more or less than the upper tail, which sets the specificity, so the estimate errs. The
alternative fitted here: a line ``z = a + b · Φ⁻¹(q)`` through the same matched lower quantiles
(q = 0.05–0.5; b clipped to [0.5, 2]), extrapolated to the threshold: ``Φ((Φ⁻¹(s) − a) / b)``.

Both are compared on every batch cached by ``bench/drift_scores.py`` for the given detectors
(dev_test under each shift of ``bench/shift.py``, labels known): the mean absolute error of the
estimate, and the warnings each would give (the test's verdict unchanged; a warning when it finds
drift and the estimate is more than 5 points short) on batches that fail the promise by more than
5 points and on the others.

    python bench/drift_estimators.py --model bench/_work/detectors/ddad_framing_e250_s0.onnx --model …
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import NormalDist

import numpy as np

from drift_scores import score_all

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "drift" / "estimators.json"
FIT_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def location_scale(scores: np.ndarray, cal, specificity: float, share: float) -> float:
    from cxrscreen.engine.drift import normal_score

    nd = NormalDist()
    qs = np.asarray(FIT_LEVELS)
    z = normal_score(np.quantile(scores, qs * (1.0 - share)), cal)
    b, a = np.polyfit([nd.inv_cdf(q) for q in qs], z, 1)
    return nd.cdf((nd.inv_cdf(specificity) - a) / float(np.clip(b, 0.5, 2.0)))


def main() -> None:
    from cxrscreen.engine.detector import read_metadata
    from cxrscreen.engine.drift import MAX_ABNORMAL_SHARE, UNRELIABLE_POINTS, check_drift

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    args = p.parse_args()
    rows = []
    for model in args.model:
        cal = read_metadata(model).calibration
        z = np.load(score_all(model))
        y = z["dev_test_labels"]
        t = cal.threshold_at_specificity(0.95)
        for key in (k for k in z.files if k.startswith("shift_")):
            s = z[key]
            r = check_drift(s, cal)
            rows.append({"model": model.stem, "batch": key[len("shift_"):], "true": float(np.mean(s[y == 0] <= t)),
                         "drift": r.drift, "binormal_shift": r.specificity_estimated,
                         "location_scale": location_scale(s, cal, 0.95, MAX_ABNORMAL_SHARE)})
    summary = {}
    for name in ("binormal_shift", "location_scale"):
        true = np.array([r["true"] for r in rows])
        est = np.array([r[name] for r in rows])
        warn = np.array([r["drift"] for r in rows]) & (100 * (0.95 - est) > UNRELIABLE_POINTS)
        fail = true < 0.90
        summary[name] = {"mean_abs_error": float(np.mean(np.abs(est - true))), "failing": int(fail.sum()),
                         "failing_warned": int((warn & fail).sum()), "others": int((~fail).sum()),
                         "others_warned": int((warn & ~fail).sum()),
                         "dev_test_warned": int(sum(w for w, r in zip(warn, rows) if r["batch"] == "none"))}
        print(f"{name:15s} mean |error| {summary[name]['mean_abs_error']:.3f}; failing by > 5 points "
              f"{summary[name]['failing']}, warned {summary[name]['failing_warned']}; others {summary[name]['others']}, "
              f"warned {summary[name]['others_warned']}; dev_test warned {summary[name]['dev_test_warned']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"models": [str(m) for m in args.model], "summary": summary, "batches": rows}, indent=2))


if __name__ == "__main__":
    main()
