"""Drift detection and site recalibration, measured: power by simulation, then a real detector on shifted batches.

1. Power of :func:`engine.drift.check_drift` (simulation, binormal scores): 120 calibration
   normals ~ N(0, 1); a batch of n images, a share π of them abnormal ~ N(2.5, 1) (AUROC ≈ 0.96),
   its normals ~ N(δ, 1), so the promised 95 % becomes Φ(1.645 − δ). Reported: the share of
   batches warned (and with a shift found) per n, π and δ, and the false-alarm rate at the worst case the test allows
   (δ = 0, π = 0.7, every abnormal study above every normal).
2. A real detector (DDAD, scores cached by ``bench/drift_scores.py``) on dev_test re-rendered
   under each shift of ``bench/shift.py`` and on the real full-size Kermany batch: AUROC, the
   specificity its normals get at the promised 95 % (Clopper–Pearson interval), whether the test
   finds a shift in the whole batch and whether the banner warns (shift found and the promise
   estimated more than 5 points short: ``DriftReport.warning``), the estimate, and the share of
   random sub-batches of 16 / 50 / 200 images (same normal/abnormal mix) warned (shift found).
3. Recalibration on n ≤ 40 confirmed normals of each batch (drawn 2,000 times): the threshold
   at 95 % set on them, the specificity it gives the batch's other normals (mean, 5–95 % of
   draws, share within ± 2 points).

Nothing is tuned here: the test's parameters (levels, π_max = 0.7, alpha) were fixed before the
real batches were scored; dev_test only measures.

    python bench/drift_scores.py --model bench/_work/drift/detector.onnx
    python bench/drift.py --model bench/_work/drift/detector.onnx   # bench/results/drift/drift.json
    python bench/drift.py --model other.onnx --skip-power --tag NAME   # another detector: bench/results/drift/NAME.json
    python bench/drift.py --summary NAME [NAME ...]                    # counts over saved results
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
sys.path.insert(0, str(REPO / "bench"))
from shift import SHIFTS, TEN  # noqa: E402  (bench/shift.py: which of its shifts came later)

RESULTS = REPO / "bench" / "results" / "drift"
SIZES = (16, 50, 200, 600)
SHIFTS_Z = (0.0, 0.25, 0.36, 0.5, 0.75, 1.0, 1.5, 2.0)
SHARES = (0.0, 0.3, 0.625)


def power(reps: int, seed: int = 0) -> dict:
    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.drift import check_drift

    rng = np.random.default_rng(seed)
    nd = NormalDist()
    rows = []

    def cal() -> NormalCalibration:
        return NormalCalibration(tuple(np.sort(rng.normal(0, 1, 120)).tolist()), (0.0, 1.0), (0.0, 1.0))

    for n in SIZES:
        for share in SHARES:
            for d in SHIFTS_Z:
                flagged = warned = short = 0
                for _ in range(reps):
                    k = rng.binomial(n, share)
                    batch = np.r_[rng.normal(d, 1, n - k), rng.normal(2.5, 1, k)]
                    r = check_drift(batch, cal())
                    flagged += r.drift
                    warned += r.warning
                    short += r.estimate_short
                rows.append({"n": n, "abnormal_share": share, "shift_z": d, "specificity_at_95": nd.cdf(1.645 - d),
                             "flagged": flagged / reps, "warned": warned / reps, "estimate_short": short / reps})
        worst = [check_drift(np.r_[rng.normal(0, 1, n - int(0.7 * n)), np.full(int(0.7 * n), 1e6)], cal())
                 for _ in range(reps)]
        rows.append({"n": n, "abnormal_share": 0.7, "shift_z": 0.0, "specificity_at_95": 0.95, "worst_case": True,
                     "flagged": sum(r.drift for r in worst) / reps, "warned": sum(r.warning for r in worst) / reps,
                     "estimate_short": None})
        print(f"power n={n} done", flush=True)
    return {"reps": reps, "rows": rows}


def real(model: Path, draws: int, seed: int = 0) -> dict:
    from drift_scores import score_all

    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.detector import clopper_pearson, read_metadata
    from cxrscreen.engine.drift import check_drift

    cal = read_metadata(model).calibration
    z = np.load(score_all(model))
    rng = np.random.default_rng(seed)
    batches = {k[len("shift_"):]: (z[k], z["dev_test_labels"]) for k in z.files if k.startswith("shift_")}
    batches["real fullres/kermany"] = (z["fullres_scores"], z["fullres_labels"])
    t95 = cal.threshold_at_specificity(0.95)
    out = {}
    for name, (scores, labels) in batches.items():
        normals = scores[labels == 0]
        k = int(np.sum(normals <= t95))
        lo, hi = clopper_pearson(k, len(normals))
        r = check_drift(scores, cal)
        row = {"n": len(scores), "n_normal": len(normals), "auroc": M.auroc(labels, scores),
               "specificity_at_95": k / len(normals), "specificity_ci95": [lo, hi],
               "fails_by_more_than_5": k / len(normals) < 0.90, "drift": r.to_dict(), "sub_batches": {}, "recalibrated": {}}
        for n in (16, 50, 200):
            if n >= len(scores):
                continue
            idx = [rng.choice(len(scores), n, replace=False) for _ in range(draws // 10)]
            reps = [check_drift(scores[i], cal) for i in idx]
            row["sub_batches"][n] = {"flagged": float(np.mean([q.drift for q in reps])),
                                     "warned": float(np.mean([q.warning for q in reps])),
                                     "estimate_short": float(np.mean([q.estimate_short for q in reps]))}
        if len(normals) > 40:  # the banner after recalibrating on 40 of its normals: drift against the site calibration
            from cxrscreen.engine.site_calibration import site_calibration

            sites = [site_calibration(rng.choice(normals, 40, replace=False), cal, "site") for _ in range(draws // 10)]
            after = [check_drift(scores, c) for c in sites]
            row["drift_after_recalibration_40"] = float(np.mean([q.drift for q in after]))
            row["warned_after_recalibration_40"] = float(np.mean([q.warning for q in after]))
        for m in (20, 40):
            if m >= len(normals):
                row["recalibrated"][m] = None  # too few normals in this batch to confirm m and test on the rest
                continue
            spec = np.empty(draws)
            for j in range(draws):
                perm = rng.permutation(len(normals))
                site, rest = normals[perm[:m]], normals[perm[m:]]
                t = float(np.quantile(site, 0.95, method="higher"))  # NormalCalibration.threshold_at_specificity
                spec[j] = np.mean(rest <= t)
            row["recalibrated"][m] = {"mean": float(spec.mean()), "p05": float(np.quantile(spec, 0.05)),
                                      "p95": float(np.quantile(spec, 0.95)),
                                      "within_2_points": float(np.mean(np.abs(spec - 0.95) <= 0.02))}
        out[name] = row
        print(f"{name:22s} spec@95 {k / len(normals):.3f} drift {r.drift} warning {r.warning} p {r.p_value:.2g} est "
              f"{r.specificity_estimated:.3f}", flush=True)
    return {"model": str(model), "model_id": read_metadata(model).model_id, "n_calibration": cal.n_normals,
            "draws": draws, "batches": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path)
    p.add_argument("--summary", nargs="+", metavar="TAG", help="print the counts over saved results "
                   "(bench/results/drift/TAG.json) instead of scoring: batches whose promise fails by more than 5 "
                   "points and how many are warned, the others and how many are warned")
    p.add_argument("--reps", type=int, default=200, help="simulated batches per cell (default: %(default)s)")
    p.add_argument("--draws", type=int, default=2000, help="recalibration draws per batch (default: %(default)s)")
    p.add_argument("--skip-power", action="store_true", help="keep the power table of the last run's JSON")
    p.add_argument("--tag", default="drift", help="result file name (default: %(default)s; the power table is "
                   "the detector-free simulation, so another detector takes --skip-power)")
    args = p.parse_args()
    if args.summary:
        print(summary([json.loads((RESULTS / f"{tag}.json").read_text()) for tag in args.summary]))
        return
    if args.model is None:
        p.error("give --model DETECTOR.onnx (or --summary TAG ...)")
    t0 = time.time()
    res = {"real": real(args.model, args.draws)}
    if not args.skip_power:
        res["power"] = power(args.reps)
    elif (RESULTS / "drift.json").is_file():
        res["power"] = json.loads((RESULTS / "drift.json").read_text()).get("power")
    res["seconds"] = time.time() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(res, indent=2))
    print(report(res))


LATER_SHIFTS = tuple(s for s in SHIFTS if s not in TEN and s != "none")
"""bench/shift.py's shifts added after the counts RESULTS quotes (outside its ten): counted apart, so
those stay comparable."""


def summary(results: list[dict]) -> str:
    """Over several saved results: the batches whose promise fails by more than 5 points (each named,
    with whether it was warned), the warnings among the others, and the warnings on dev_test."""
    later = [(i, name, r) for i, res in enumerate(results) for name, r in res["real"]["batches"].items()
              if name in LATER_SHIFTS]
    failing, others = [], []
    for i, res in enumerate(results):
        for name, r in res["real"]["batches"].items():
            if name not in LATER_SHIFTS:
                (failing if r["fails_by_more_than_5"] else others).append((i, name, r))
    lines = [f"{len(results)} results, {len(failing) + len(others)} batches (the later shifts apart, below)",
             f"failing by more than 5 points: {len(failing)}, warned {sum(r['drift']['warning'] for _, _, r in failing)}"]
    lines += [f"  result {i} {name}: {100 * r['specificity_at_95']:.1f} %, "
              f"{'warned' if r['drift']['warning'] else 'not warned'}" for i, name, r in failing]
    lines.append(f"within 5 points: {len(others)}, warned {sum(r['drift']['warning'] for _, _, r in others)}")
    lines += [f"  result {i} {name}: {100 * r['specificity_at_95']:.1f} %, warned" for i, name, r in others
              if r["drift"]["warning"]]
    lines.append(f"dev_test warned: {sum(r['drift']['warning'] for _, name, r in failing + others if name == 'none')}")
    if later:
        lines.append(f"later shifts ({', '.join(LATER_SHIFTS)}): {len(later)} batches; failing by more than 5 points "
                     f"{sum(r['fails_by_more_than_5'] for _, _, r in later)}, of them warned "
                     f"{sum(r['fails_by_more_than_5'] and r['drift']['warning'] for _, _, r in later)}; others warned "
                     f"{sum((not r['fails_by_more_than_5']) and r['drift']['warning'] for _, _, r in later)}")
        lines += [f"  result {i} {name}: {100 * r['specificity_at_95']:.1f} %, "
                  f"{'warned' if r['drift']['warning'] else 'not warned'} (p {r['drift']['p_value']:.2g}, estimate "
                  f"{100 * r['drift']['specificity_estimated']:.0f} %)" for i, name, r in later]
    return "\n".join(lines)


def report(res: dict) -> str:
    """Markdown tables: per batch, the shift test, the ⚠ warning (shift found and the promise estimated
    more than 5 points short; results before the warning existed show "—"), sub-batches and recalibration."""
    lines = ["| batch | AUROC | specificity at the promised 95 % [95 % CI] | shift found (p) | ⚠ warning | estimated | "
             "warned in sub-batches of 16 / 50 / 200 (shift found) | after recalibration on 20 normals | on 40 normals | "
             "warned after recalibrating on 40 |",
             "|---|---:|---|---|---|---:|---|---|---|---:|"]
    for name, r in res["real"]["batches"].items():
        d = r["drift"]
        subs = {str(k): v for k, v in r["sub_batches"].items()}

        def sub(n: int) -> str:
            v = subs.get(str(n))
            if v is None:
                return "—"
            warned = "—" if "warned" not in v else f"{100 * v['warned']:.0f} %"
            return f"{warned} ({100 * v['flagged']:.0f} %)"
        after = r.get("warned_after_recalibration_40")

        def rc(m: int) -> str:
            v = r["recalibrated"].get(str(m), r["recalibrated"].get(m))
            if v is None:
                return "— (too few normals)"
            return f"{100 * v['mean']:.1f} % [{100 * v['p05']:.0f}–{100 * v['p95']:.0f}], {100 * v['within_2_points']:.0f} % within ±2"
        warned = "—" if "warning" not in d else ("**yes**" if d["warning"] else "no")
        lines.append(f"| {name} | {r['auroc']:.3f} | {100 * r['specificity_at_95']:.1f} % [{100 * r['specificity_ci95'][0]:.0f}, "
                     f"{100 * r['specificity_ci95'][1]:.0f}] | {'yes' if d['drift'] else 'no'} ({d['p_value']:.1g}) | {warned} | "
                     f"{100 * d['specificity_estimated']:.0f} % | {' / '.join(sub(n) for n in (16, 50, 200))} | {rc(20)} | {rc(40)} | "
                     f"{'—' if after is None else f'{100 * after:.0f} %'} |")
    if "power" in res:
        lines += ["", "Power: share of simulated batches warned (shift found), per size n, abnormal share and shift δ "
                  "(the specificity the promised 95 % becomes).", "", "| n | abnormal share | " + " | ".join(f"δ = {d:g} ({100 * NormalDist().cdf(1.645 - d):.0f} %)"
                                                       for d in SHIFTS_Z) + " |", "|---|---|" + "---:|" * len(SHIFTS_Z)]
        rows = res["power"]["rows"]
        for n in SIZES:
            for share in SHARES:
                cells = [next(x for x in rows if x["n"] == n and x["abnormal_share"] == share and x["shift_z"] == d
                              and not x.get("worst_case")) for d in SHIFTS_Z]
                lines.append(f"| {n} | {share:g} | " + " | ".join(
                    f"{100 * c['warned']:.0f} % ({100 * c['flagged']:.0f} %)" if "warned" in c else f"{100 * c['flagged']:.0f} %"
                    for c in cells) + " |")
        lines.append("")
        lines.append("False alarms at the worst allowed case (δ = 0, 70 % abnormal, all "
                     "above every normal): " + ", ".join(
                         f"n = {x['n']}: shift found {100 * x['flagged']:.1f} %, warned {100 * x.get('warned', float('nan')):.1f} %"
                         for x in rows if x.get("worst_case")))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
