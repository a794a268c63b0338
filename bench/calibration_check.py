"""Does a detector's calibration hold-out represent its normals? Checked on normals neither trained on nor in dev_test (issue 22).

Every detector trained on the split holds out the same 60 known normals for calibration
(``engine.datasets.split_calibration``: seed 0, whatever the training seed; since the hold-out is
drawn by whole patients, 60 others than the detectors trained before; the bench needs no list:
the threshold is the detector's own and its training normals come from its run's ``data.json``). If those 60 happen
to sit low on a detector's score, its "95 %" promise fails on every batch, dev_test included,
and the drift check, which reads a batch's lower part, cannot see it (MemMC-MAE robust:
86.3 % on dev_test). This bench measures it on images dev_test never enters:

- **spare normals**: the unlabeled pool's normals beyond those the AR's unlabeled set uses
  (AR 0.6 uses the first 200 of 500; the other 300 are never trained on; same patients never
  cross parts of the split);
- the detector's training normals (``data.json`` of its run), which it saw: for a detector that
  fits its normals they score lower, for one that does not they are another sample.

For each detector: the specificity its promised 95 % threshold gives the spare normals and the
training normals, with Clopper–Pearson intervals; then the spare normals' specificity at the
Harrell–Davis threshold of the training normals alone, and at the threshold the engine now sets
for new detectors, the training-normal floor (``NormalCalibration.training_normal_scores``: the
larger of the held-out and the training normals' estimates, on the same fixed subset of at most
300 training normals that ``engine.train`` scores; here through the ONNX graph).

    python bench/calibration_check.py --pair DETECTOR.onnx:RUN_DIR [--pair ...] [--tag NAME] [--dev-test]

``--dev-test`` also reports dev_test's normals (evaluation only: nothing here is chosen on it).
``--summary check_A.json [...]`` prints the means and counts over saved results.
Results: ``bench/results/calibration/check_NAME.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO / "bench")]
import dev_split  # noqa: E402
from dev_drift import _scores as dev_drift_scores  # noqa: E402
from cxrscreen.engine.detector import Detector, clopper_pearson, harrell_davis_threshold, read_metadata  # noqa: E402
from cxrscreen.engine.io import read_radiograph  # noqa: E402
from cxrscreen.engine.train import training_floor_index  # noqa: E402


_PIXELS: dict[Path, np.ndarray] = {}


def _scores(det: Detector, paths: list[Path]) -> np.ndarray:
    """``dev_drift``'s scoring, each file decoded once for all the detectors checked."""
    for q in paths:
        if q not in _PIXELS:
            _PIXELS[q] = read_radiograph(q).pixels
    return dev_drift_scores(det, [_PIXELS[q] for q in paths])


def spare_normals(ar: float) -> list[Path]:
    """The unlabeled pool's normals that D_u at ``ar`` leaves out (the engine's reading of the split)."""
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parents[1]
    used = {Path(q).resolve() for q in dev_split.training_data(ar).unlabeled}
    return [root / q for q in split["unlabeled_pool"]["normal"] if (root / q).resolve() not in used]


def _spec(scores: np.ndarray, t: float) -> dict:
    k = int(np.sum(scores <= t))
    lo, hi = clopper_pearson(k, len(scores))
    return {"specificity": k / len(scores), "ci95": [lo, hi], "n": len(scores)}


def check(model: Path, run: Path, ar: float, with_dev_test: bool) -> dict:
    det = Detector(model, provider="cpu")
    cal = read_metadata(model).calibration
    data = json.loads((run / "data.json").read_text())
    train = _scores(det, [Path(p) for p in data["normal_train"]])
    spare = _scores(det, spare_normals(ar))
    t_cal = cal.threshold_at_specificity(0.95)
    t_train = harrell_davis_threshold(np.sort(train), 0.95)
    subset = np.sort(train[training_floor_index(len(train))])
    floored = dataclasses.replace(cal, training_normal_scores=tuple(float(v) for v in subset))
    t_floor = floored.threshold_at_specificity(0.95)
    out = {"model": str(model), "run": str(run), "n_calibration": cal.n_normals, "threshold": t_cal,
           "threshold_training_normals": t_train,
           "spare": _spec(spare, t_cal), "training": _spec(train, t_cal),
           "spare_at_training_threshold": _spec(spare, t_train),
           "threshold_with_floor": t_floor, "floor_raises": floored.floor_raises(0.95),
           "spare_at_larger_threshold": _spec(spare, t_floor),
           "median": {"calibration": float(np.median(cal.normal_scores)), "training": float(np.median(train)),
                      "spare": float(np.median(spare))},
           "p90": {"calibration": float(np.quantile(cal.normal_scores, 0.9)), "training": float(np.quantile(train, 0.9)),
                   "spare": float(np.quantile(spare, 0.9))}}
    if with_dev_test:
        paths, labels = dev_split.dev_test()
        dn = _scores(det, [p for p, y in zip(paths, labels) if y == 0])
        da = _scores(det, [p for p, y in zip(paths, labels) if y == 1])
        out["dev_test"] = _spec(dn, t_cal)
        out["dev_test_at_larger_threshold"] = _spec(dn, t_floor)
        out["dev_test_sensitivity"] = float(np.mean(da > t_cal))
        out["dev_test_sensitivity_at_larger_threshold"] = float(np.mean(da > t_floor))
    return out


def summary(rows: list[dict]) -> str:
    """The figures RESULTS quotes: means and counts over the detectors, before and with the floor."""
    def col(key: str) -> np.ndarray:
        return np.array([r[key]["specificity"] for r in rows if key in r])

    spare, floor = col("spare"), col("spare_at_larger_threshold")
    lines = [f"{len(rows)} detectors; the floor raises the 95 % threshold of {sum(r['floor_raises'] for r in rows)}",
             f"spare normals: mean {100 * spare.mean():.1f} % -> {100 * floor.mean():.1f} % with the floor; range "
             f"{100 * spare.min():.1f}-{100 * spare.max():.1f} % -> {100 * floor.min():.1f}-{100 * floor.max():.1f} %; "
             f"more than 5 points short {int(np.sum(spare < 0.90))} -> {int(np.sum(floor < 0.90))}; within 2 points "
             f"{int(np.sum(np.abs(spare - 0.95) <= 0.02 + 1e-9))} -> {int(np.sum(np.abs(floor - 0.95) <= 0.02 + 1e-9))}"]
    dev, dev_floor = col("dev_test"), col("dev_test_at_larger_threshold")
    if len(dev):
        lines.append(f"dev_test normals (evaluation only): mean {100 * dev.mean():.1f} % -> {100 * dev_floor.mean():.1f} %")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", action="append", default=[], help="DETECTOR.onnx:RUN_DIR (repeatable)")
    p.add_argument("--summary", type=Path, nargs="+", help="print the summary of saved results (check_*.json) and stop")
    p.add_argument("--ar", type=float, default=0.6, help="the anomaly rate the detectors were trained at")
    p.add_argument("--tag", default="check")
    p.add_argument("--dev-test", action="store_true")
    args = p.parse_args()
    if args.summary:
        rows = [r for f in args.summary for r in json.loads(f.read_text())]
        print(summary(rows))
        return
    if not args.pair:
        p.error("give --pair DETECTOR.onnx:RUN_DIR (or --summary)")
    dev_split.require()
    head = ("| detector | floor raises the 95 % threshold | spare normals (300) | training normals | spare, at the "
            "training normals' threshold | spare, with the floor")
    if args.dev_test:
        head += " | dev_test normals | dev_test normals, with the floor | dev_test sensitivity → with the floor"
    print(head + " |")
    rows = []
    for pair in args.pair:
        model, _, run = pair.partition(":")
        if not run or not Path(model).is_file() or not (Path(run) / "data.json").is_file():
            sys.exit(f"--pair {pair!r}: expected DETECTOR.onnx:RUN_DIR with the run's data.json")
        r = check(Path(model), Path(run), args.ar, args.dev_test)
        rows.append(r)
        f = lambda d: f"{100 * d['specificity']:.1f} % [{100 * d['ci95'][0]:.0f}, {100 * d['ci95'][1]:.0f}]"  # noqa: E731
        line = (f"| {Path(model).stem} | {'yes' if r['floor_raises'] else 'no'} | {f(r['spare'])} | {f(r['training'])} | "
                f"{f(r['spare_at_training_threshold'])} | {f(r['spare_at_larger_threshold'])}")
        if args.dev_test:
            line += (f" | {f(r['dev_test'])} | {f(r['dev_test_at_larger_threshold'])} | "
                     f"{r['dev_test_sensitivity']:.3f} → {r['dev_test_sensitivity_at_larger_threshold']:.3f}")
        print(line + " |", flush=True)
    out = REPO / "bench" / "results" / "calibration" / f"check_{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(summary(rows))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
