"""`cxrscreen eval --model detector.onnx --labels labels.csv [--root DIR]`.

Scores the labelled images with the detector (onnxruntime, same preprocessing as the app) and
writes a JSON report (images the out-of-scope gate refuses are left out of the figures and
listed with their label and reason; AUROC, AP, operating points with bootstrap 95 % intervals, see
:mod:`engine.evaluate`), a per-image scores CSV and a ROC + score-histogram PNG.
``--split FILE --part dev_test`` evaluates a labelled part of a development split instead.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="ONNX", help="detector file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path, metavar="CSV", help="CSV with path,label (0 normal, 1 abnormal, empty unknown)")
    src.add_argument("--split", type=Path, metavar="JSON", help="a development split file (with --part)")
    parser.add_argument("--part", default="dev_test", help="labelled part of --split (default: %(default)s)")
    parser.add_argument("--root", type=Path, metavar="DIR", help="folder the paths are relative to")
    parser.add_argument("--out", type=Path, default=Path("eval_report.json"), metavar="JSON",
                        help="report file; the scores CSV and the PNG go beside it (default: %(default)s)")
    parser.add_argument("--specificity", type=float, default=0.95,
                        help="operating point on the detector's calibration normals (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")


def run(args: argparse.Namespace) -> int:
    from engine.atomic import atomic_path, atomic_write_text
    from engine.detector import Detector, DetectorError
    from engine.evaluate import LabelsError, evaluation_report, plot_report, read_labels_csv, read_split_part
    from engine.scoring import iter_scores

    try:
        data = read_labels_csv(args.labels, args.root) if args.labels else read_split_part(args.split, args.part, args.root)
        detector = Detector(args.model, provider=args.provider)
    except (LabelsError, DetectorError, OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    print(f"evaluating {detector.meta.name} ({detector.meta.model_id}) on {len(data.paths)} images; "
          f"provider {detector.provider}", file=sys.stderr)
    label_of = dict(zip(data.paths, data.labels.tolist()))
    rows, unreadable, out_of_scope = [], [], []
    for batch in iter_scores(data.paths, detector, batch_size=args.batch_size):
        for r in batch:
            (rows if r.score is not None else out_of_scope if r.out_of_scope else unreadable).append(r)
    if not rows:
        logger.error("no image could be read")
        return 1
    y = np.asarray([label_of[r.path] for r in rows])
    s = np.asarray([r.score for r in rows])
    try:
        threshold = detector.calibration.threshold_at_specificity(args.specificity)
        report = evaluation_report(y, s, threshold, args.specificity, n_boot=args.bootstrap, seed=args.seed)
    except ValueError as exc:
        logger.error("%s", exc)
        return 1
    report.update(model={"id": detector.meta.model_id, "name": detector.meta.name, "method": detector.meta.method,
                         "backbone": detector.meta.backbone, "score_type": detector.meta.score_type},
                  provider=detector.provider, labels=str(args.labels or f"{args.split}:{args.part}"),
                  unreadable=[{"path": str(r.path), "reason": r.error} for r in unreadable],
                  out_of_scope=[{"path": str(r.path), "label": label_of[r.path], "reason": r.out_of_scope}
                                for r in out_of_scope])
    out = args.out
    atomic_write_text(out, json.dumps(report, indent=2))
    with atomic_path(out.with_suffix(".scores.csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "score", "percentile_among_normals"])
        for r in rows:
            w.writerow([str(r.path), label_of[r.path], f"{r.score:.8g}", f"{r.percentile:.2f}"])
    plot_report(y, s, report, out.with_suffix(".png"), f"{detector.meta.name} — {report['labels']}")
    a, ap = report["auroc"], report["ap"]
    op = report["operating_points"]["normals"]
    print(f"AUROC {a['value']:.4f} [{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]  AP {ap['value']:.4f} "
          f"[{ap['ci95'][0]:.4f}, {ap['ci95'][1]:.4f}]  n={report['n']} ({report['n_abnormal']} abnormal)\n"
          f"at specificity {args.specificity:g} on calibration normals: sensitivity {op['sensitivity']['value']:.3f}, "
          f"specificity {op['specificity']['value']:.3f}, F1 {op['f1']['value']:.3f}\n"
          f"report {out}, plot {out.with_suffix('.png')}, scores {out.with_suffix('.scores.csv')}"
          + (f"\n{len(unreadable)} unreadable files listed in the report" if unreadable else "")
          + (f"\n{len(out_of_scope)} images out of scope (not scored, not in the figures), listed in the report"
             if out_of_scope else ""))
    return 0
