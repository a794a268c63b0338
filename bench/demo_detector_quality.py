"""How well the built-in demo detector separates the demo's own kind of images.

The app's demo (README's `make run`) opens a synthetic study and scores it with a detector the
engine trains in about a minute (`cxrscreen demo-detector`). This bench trains that detector
as the app does, then scores a held-out synthetic study written exactly like the app's demo
study (`app.demo`: size, formats, markers, anatomy variation) but with another seed and more
cases, and the demo study itself. Synthetic images only: no real data involved.

    python bench/demo_detector_quality.py [--normals 160] [--epochs 40] [--style demo|plain] --json OUT

Writes AUROC (held-out and demo study; also of each heatmap's 99th percentile instead of the
detector's mean-of-map score, a diagnostic), the demo study's flags at the detector's 95 %
specificity operating point, and the cost of making the detector: wall time, and the CPU time
(user + system, this process and any children) with the load average. On a machine shared
with other jobs only the CPU time means something: CPU seconds / 2 is the estimate for two
quiet cores (the demo detector trains two networks at a time, one thread each).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]


def _score(detector, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Labels, image scores and each heatmap's 99th percentile (a diagnostic) of a study folder,
    and the out-of-scope gate's reasons for images it refused (their score and peak are NaN:
    never flagged, left out of the AUROC)."""
    from cxrscreen.engine.scoring import iter_scores

    rows = [line.split(",") for line in (folder / "labels.csv").read_text().splitlines()[1:]]
    paths = [folder / r[0] for r in rows]
    labels = np.array([int(r[1]) for r in rows])
    scores, peaks, refused = {}, {}, []
    for batch in iter_scores(paths, detector, batch_size=16, workers=1, keep_heatmaps=True):
        for r in batch:
            if r.out_of_scope:
                refused.append(f"{r.path.name}: {r.out_of_scope}")
                scores[r.path] = peaks[r.path] = float("nan")
                continue
            if r.score is None:
                raise RuntimeError(f"{r.path}: {r.error}")
            scores[r.path] = r.score
            peaks[r.path] = float(np.percentile(r.heatmap, 99))
    return labels, np.array([scores[p] for p in paths]), np.array([peaks[p] for p in paths]), refused


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(f"{v:.6g}") for v in values]


def _auroc(labels: np.ndarray, values: np.ndarray) -> float:
    from cxrscreen.engine.metrics import auroc

    ok = ~np.isnan(values)
    return round(auroc(labels[ok], values[ok]), 4)


def main() -> int:
    from cxrscreen.app.demo import DEMO_ABNORMAL, DEMO_LESION_STRENGTH, DEMO_NORMAL, DEMO_SEED, DEMO_SIZE, DEMO_VARIATION
    from cxrscreen.engine import demo_detector
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.synth import write_study

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normals", type=int, default=None, help="default: the demo detector's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo detector's")
    parser.add_argument("--members", type=int, default=None, help="default: the demo detector's")
    parser.add_argument("--lesion-strength", type=float, default=None,
                        help="lesion strength of the demo and held-out studies (default: the app's demo's)")
    parser.add_argument("--heldout", type=int, default=60, help="normal and abnormal cases each in the held-out study")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--keep", type=Path, default=None, help="also keep the trained demo detector here (.onnx)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cxrscreen-demo-bench-") as tmp:
        tmp = Path(tmp)
        study = tmp / "demo_study"
        strength = DEMO_LESION_STRENGTH if args.lesion_strength is None else args.lesion_strength
        write_study(study, DEMO_NORMAL, DEMO_ABNORMAL, size=DEMO_SIZE, seed=DEMO_SEED, variation=DEMO_VARIATION,
                    lesion_strength=strength)
        heldout = tmp / "heldout"
        write_study(heldout, args.heldout, args.heldout, size=DEMO_SIZE, seed=DEMO_SEED + 1, variation=DEMO_VARIATION,
                    lesion_strength=strength)

        parser_d = argparse.ArgumentParser()
        demo_detector.add_arguments(parser_d)
        argv = ["--out", str(tmp / "demo.onnx"), "--progress", "none", "--variation", str(DEMO_VARIATION)]
        if args.normals:
            argv += ["--normals", str(args.normals)]
        if args.epochs:
            argv += ["--epochs", str(args.epochs)]
        if args.members:
            argv += ["--members", str(args.members)]
        d_args = parser_d.parse_args(argv)
        load_before = os.getloadavg()
        cpu_before = _cpu_seconds()
        t = time.perf_counter()
        if demo_detector.run(d_args) != 0:
            raise SystemExit("demo detector training did not finish")
        train_s = time.perf_counter() - t
        cpu_s = _cpu_seconds() - cpu_before
        load_after = os.getloadavg()

        if args.keep is not None:
            args.keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp / "demo.onnx", args.keep)
        detector = Detector(tmp / "demo.onnx", provider="cpu")
        h_labels, h_scores, h_peaks, h_refused = _score(detector, heldout)
        s_labels, s_scores, s_peaks, s_refused = _score(detector, study)
        threshold = detector.calibration.threshold_at_specificity(0.95)
        flagged = s_scores > threshold  # NaN (out of scope): never flagged
        result = {
            "detector": detector.meta.name,
            "training": {k: getattr(d_args, k) for k in ("normals", "epochs", "members", "calibration_fraction", "seed", "variation")},
            "score_type": detector.meta.score_type,
            "score_top_fraction": detector.meta.training.get("config", {}).get("score_top_fraction", 1.0),
            "study_lesion_strength": strength,
            "calibration_normals": detector.calibration.n_normals,
            "threshold_method": detector.calibration.threshold_method,
            "train_seconds": round(train_s, 1),
            "cost": {"wall_seconds": round(train_s, 1), "cpu_seconds": round(cpu_s, 1),
                     "quiet_two_core_estimate_seconds": round(cpu_s / 2, 1),
                     "load_average_1_5_15_before": [round(v, 2) for v in load_before],
                     "load_average_1_5_15_after": [round(v, 2) for v in load_after]},
            "heldout": {"normal": int((h_labels == 0).sum()), "abnormal": int((h_labels == 1).sum()),
                        "auroc": _auroc(h_labels, h_scores), "auroc_heatmap_p99": _auroc(h_labels, h_peaks),
                        "out_of_scope": h_refused},
            "demo_study": {"normal": int((s_labels == 0).sum()), "abnormal": int((s_labels == 1).sum()),
                           "auroc": _auroc(s_labels, s_scores), "auroc_heatmap_p99": _auroc(s_labels, s_peaks),
                           "flagged_at_95_specificity": int(flagged.sum()),
                           "flagged_abnormal": int((flagged & (s_labels == 1)).sum()),
                           "flagged_normal": int((flagged & (s_labels == 0)).sum()),
                           "scores": {"normal": _rounded(s_scores[s_labels == 0]), "lesion": _rounded(s_scores[s_labels == 1])},
                           "threshold_at_95_specificity": threshold,
                           "out_of_scope": s_refused},
        }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
