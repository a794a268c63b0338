"""Which detectors to combine: every listed combination's ensemble score, computed from the members' cached scores.

The score of ``engine.ensemble`` (the mean of each member's score standardised by the median and
IQR of its scores on the shared training normals: the fixed subset the engine uses) is computed
here from each member's scores, without building the ONNX file: dev_test under every shift of
``bench/shift.py`` and the real ``fullres/kermany`` batch from ``bench/drift_scores.py``'s cache
(scored if missing), the 60 held-out calibration normals and the training normals scored here.
For each combination: AUROC per batch, the mean over the 10 simulated shifts (as
``bench/shift.py``'s "mean of the shifts"; the real batch apart), and the specificity at
the promised 95 % (the Harrell–Davis threshold of the combination's held-out normal scores; the
built detector adds the training-normal floor, which changes nothing for these).

A detector whose training file lists differ from those the engine now draws from the split (one
trained before the hold-out was drawn by patient) is refused unless its scores are cached: the
split's held-out normals would not be its own.

This chose nothing the project ships: it reports combinations of detectors trained for other
benches; ``bench/shift.py`` measures the built ensembles themselves (RESULTS quotes those).

    python bench/ensemble_combos.py --member amae0=A.onnx --member ddad=D.onnx ... amae0 ddad amae0+ddad ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO / "bench")]
import dev_split  # noqa: E402
from calibration_check import _scores  # noqa: E402  (each file decoded once for all the members)

WORK = REPO / "bench" / "_work" / "ensemble"
RESULTS = REPO / "bench" / "results" / "ensemble"
SHIFTS = ("gamma_low", "gamma_high", "low_contrast", "crop_tight", "crop_offset", "zoom_out", "markers", "low_res",
          "noise", "combined")


def member_scores(model: Path) -> dict[str, np.ndarray]:
    """A detector's cached batch scores plus its held-out and training-normal scores."""
    from drift_scores import score_all

    from cxrscreen.engine.detector import Detector, read_metadata
    from cxrscreen.engine.train import training_floor_index

    batches = dict(np.load(score_all(model)))
    cache = WORK / f"normals_{read_metadata(model).model_id}.npz"
    if not cache.is_file():
        data = dev_split.training_data(0.6)
        trained = read_metadata(model).training.get("file_list_sha256")
        if trained not in (data.file_list_hash(), data.without_unlabeled().file_list_hash()):
            # e.g. trained before the hold-out was drawn by patient: these would not be its held-out normals
            raise SystemExit(f"{model}: trained on other file lists than the engine now draws from the split "
                             "(another hold-out?); its held-out normals cannot be scored here")
        floor = [data.normal_train[i] for i in training_floor_index(len(data.normal_train))]
        det = Detector(model, provider="cpu")
        WORK.mkdir(parents=True, exist_ok=True)
        np.savez(cache, held_out=_scores(det, list(data.normal_calibration)), training=_scores(det, floor))
    return {**batches, **dict(np.load(cache))}


def combine(members: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    out = []
    for m in members:
        q25, q50, q75 = np.quantile(m["training"], [0.25, 0.5, 0.75])
        out.append((m[key] - q50) / (q75 - q25))
    return np.mean(out, 0)


def evaluate(members: list[dict[str, np.ndarray]]) -> dict:
    from cxrscreen.engine.detector import harrell_davis_threshold
    from cxrscreen.engine.metrics import auroc

    t = harrell_davis_threshold(np.sort(combine(members, "held_out")), 0.95)
    y, yf = members[0]["dev_test_labels"], members[0]["fullres_labels"]
    rows = {}
    for name in ("none", *SHIFTS):
        s = combine(members, f"shift_{name}")
        rows[name] = {"auroc": auroc(y, s), "specificity": float(np.mean(s[y == 0] <= t))}
    s = combine(members, "fullres_scores")
    rows["real_batch"] = {"auroc": auroc(yf, s), "specificity": float(np.mean(s[yf == 0] <= t))}
    shifted = [rows[k] for k in SHIFTS]  # as bench/shift.py's "mean of the shifts": the 10 simulated ones
    return {"batches": rows, "mean_auroc_shifts": float(np.mean([r["auroc"] for r in shifted])),
            "mean_specificity_shifts": float(np.mean([r["specificity"] for r in shifted]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--member", action="append", required=True, help="NAME=DETECTOR.onnx (repeatable)")
    p.add_argument("--tag", default="combos")
    p.add_argument("combos", nargs="+", help="NAME or NAME+NAME+... (members as named by --member)")
    args = p.parse_args()
    dev_split.require()
    paths = dict(m.split("=", 1) for m in args.member)
    scores: dict[str, dict[str, np.ndarray]] = {}
    out = {}
    print("| combination | dev_test AUROC; specificity at the promised 95 % | crop_tight | crop_offset | combined | "
          "real batch | mean AUROC, 10 shifts | mean specificity |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for combo in args.combos:
        names = combo.split("+")
        for n in names:
            if n not in scores:
                scores[n] = member_scores(Path(paths[n]))
        r = evaluate([scores[n] for n in names])
        out[combo] = r
        b = r["batches"]
        print(f"| {' + '.join(names)} | {b['none']['auroc']:.3f}; {b['none']['specificity']:.3f} | "
              f"{b['crop_tight']['auroc']:.3f} | {b['crop_offset']['auroc']:.3f} | {b['combined']['auroc']:.3f} | "
              f"{b['real_batch']['auroc']:.3f} | {r['mean_auroc_shifts']:.3f} | {r['mean_specificity_shifts']:.3f} |",
              flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({"members": paths, "results": out}, indent=1))


if __name__ == "__main__":
    main()
