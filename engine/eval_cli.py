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

from cxrscreen.engine.cli_args import int_range, non_negative_int, open_probability
from cxrscreen.engine.csv_safe import csv_text

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="ONNX", help="detector file")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", type=Path, metavar="CSV",
                     help="CSV with path,label (0 normal, 1 abnormal, empty unknown: not evaluated, counted and reported)")
    src.add_argument("--split", type=Path, metavar="JSON", help="a development split file (with --part)")
    parser.add_argument("--part", default="dev_test", help="labelled part of --split (default: %(default)s)")
    parser.add_argument("--root", type=Path, metavar="DIR", help="folder the paths are relative to")
    parser.add_argument("--out", type=Path, default=Path("eval_report.json"), metavar="JSON",
                        help="report file; the scores CSV and the PNG go beside it (default: %(default)s)")
    parser.add_argument("--specificity", type=open_probability, default=0.95,
                        help="operating point on the detector's calibration normals (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int_range(1, 100_000), default=2000,
                        help="bootstrap resamples, 1 to 100000 (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=64, help="1 to 4096 (default: %(default)s)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.atomic import atomic_path, atomic_write_text
    from cxrscreen.engine.cli_args import CommandError, check_not_an_input, check_output_file, writing
    from cxrscreen.engine.detector import Detector, DetectorError
    from cxrscreen.engine.evaluate import LabelsError, evaluation_report, plot_report, read_labels_csv, read_split_part
    from cxrscreen.engine.scoring import iter_scores

    if args.root is not None and not args.root.is_dir():
        raise CommandError(f"--root {args.root} is not a folder")
    out = args.out
    outputs = [out, out.with_suffix(".scores.csv"), out.with_suffix(".png")]
    for path in outputs:
        check_output_file(path, overwrite=True)
    check_not_an_input(outputs, {"--labels": args.labels, "--split": args.split, "--model": args.model})
    try:
        data = read_labels_csv(args.labels, args.root) if args.labels else read_split_part(args.split, args.part, args.root)
    except LabelsError as exc:
        raise CommandError(f"{'--labels' if args.labels else '--split'} {exc}") from None
    n_abnormal = int(data.labels.sum())
    if n_abnormal in (0, len(data.labels)):
        raise CommandError(f"{'--labels' if args.labels else '--split'} {args.labels or args.split}: an evaluation needs "
                           f"both normal (0) and abnormal (1) images; it has {len(data.labels) - n_abnormal} normal and "
                           f"{n_abnormal} abnormal")
    try:
        detector = Detector(args.model, provider=args.provider)
    except DetectorError as exc:
        raise CommandError(f"--model {exc}") from None
    if data.unlabelled_lines:
        # empty = unknown is part of the labels format (a partly reviewed list): evaluate the
        # labelled rows, but say how many were left out and where, here and in the report
        lines = ", ".join(map(str, data.unlabelled_lines[:10])) + (", …" if len(data.unlabelled_lines) > 10 else "")
        print(f"warning: {len(data.unlabelled_lines)} rows of {args.labels} have no label and are not evaluated "
              f"(lines {lines})", file=sys.stderr)
    print(f"evaluating {detector.meta.name} ({detector.meta.model_id}) on {len(data.paths)} images; "
          f"provider {detector.provider}", file=sys.stderr)
    label_of = dict(zip(data.paths, data.labels.tolist()))
    rows, unreadable, out_of_scope = [], [], []
    for batch in iter_scores(data.paths, detector, batch_size=args.batch_size):
        for r in batch:
            (rows if r.score is not None else out_of_scope if r.out_of_scope else unreadable).append(r)
    if not rows:
        if out_of_scope:
            raise CommandError(f"none of the {len(data.paths)} labelled images can be scored: {len(out_of_scope)} are out of "
                               f"the detector's scope (first: {out_of_scope[0].path}: {out_of_scope[0].out_of_scope})"
                               + (f", {len(unreadable)} unreadable" if unreadable else ""))
        raise CommandError(f"none of the {len(data.paths)} labelled images could be read"
                           + (f" (first: {unreadable[0].path}: {unreadable[0].error})" if unreadable else ""))
    y = np.asarray([label_of[r.path] for r in rows])
    s = np.asarray([r.score for r in rows])
    try:
        threshold = detector.calibration.threshold_at_specificity(args.specificity)
        report = evaluation_report(y, s, threshold, args.specificity, n_boot=args.bootstrap, seed=args.seed)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    report.update(model={"id": detector.meta.model_id, "name": detector.meta.name, "method": detector.meta.method,
                         "backbone": detector.meta.backbone, "score_type": detector.meta.score_type},
                  provider=detector.provider, labels=str(args.labels or f"{args.split}:{args.part}"),
                  unreadable=[{"path": str(r.path), "reason": r.error} for r in unreadable],
                  unlabelled={"count": len(data.unlabelled_lines), "lines": list(data.unlabelled_lines)},
                  out_of_scope=[{"path": str(r.path), "label": label_of[r.path], "reason": r.out_of_scope}
                                for r in out_of_scope])
    # the figure and the table first, the report last: a report on disk means all three were written
    with writing(out.with_suffix(".png")):
        plot_report(y, s, report, out.with_suffix(".png"), f"{detector.meta.name} — {report['labels']}")
    with writing(out.with_suffix(".scores.csv")), atomic_path(out.with_suffix(".scores.csv")) as tmp, \
            open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "score", "percentile_among_normals"])
        for r in rows:
            w.writerow([csv_text(str(r.path)), label_of[r.path], f"{r.score:.8g}", f"{r.percentile:.2f}"])
    with writing(out):
        atomic_write_text(out, json.dumps(report, indent=2))
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
