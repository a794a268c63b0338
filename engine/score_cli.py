"""`cxrscreen score FOLDER --model detector.onnx --out results.csv`.

Every radiograph under FOLDER (recursive) gets one row: path, score, percentile among the
detector's calibration normals, the flag at the operating point, the threshold, the model id; a
file that cannot be read gets a row with the reason instead of stopping the run. The operating
point is a specificity on known normals (default 0.95) or a raw score threshold. The CSV is
written atomically. The execution provider actually used (CUDA or CPU) is printed.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "score", "percentile_among_normals", "flagged", "threshold", "operating_point",
               "model_id", "model_name", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, nargs="+", metavar="FOLDER", help="folders and/or files to score")
    parser.add_argument("--model", type=Path, required=True, metavar="ONNX", help="detector file")
    parser.add_argument("--out", type=Path, required=True, metavar="CSV", help="results file")
    op = parser.add_mutually_exclusive_group()
    op.add_argument("--specificity", type=float, default=0.95,
                    help="flag above the score that this fraction of calibration normals stay below (default: %(default)s)")
    op.add_argument("--threshold", type=float, default=None, help="flag above this raw score instead")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default: %(default)s)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing results file")


def run(args: argparse.Namespace) -> int:
    from engine.atomic import atomic_path
    from engine.detector import Detector, DetectorError
    from engine.io import scan_folder
    from engine.scoring import iter_scores

    if args.out.exists() and not args.overwrite:
        logger.error("%s exists; pass --overwrite to replace it", args.out)
        return 1
    try:
        detector = Detector(args.model, provider=args.provider)
    except DetectorError as exc:
        logger.error("%s", exc)
        return 1
    calib = detector.calibration
    if args.threshold is not None:
        threshold, op_name = float(args.threshold), "raw threshold"
    else:
        threshold, op_name = calib.threshold_at_specificity(args.specificity), f"specificity {args.specificity:g} on normals"
    print(f"detector {detector.meta.name} ({detector.meta.model_id}); provider {detector.provider}"
          + (f" [{detector.provider_note}]" if detector.provider_note else ""), file=sys.stderr)
    print(f"operating point: {op_name} -> score threshold {threshold:.6g}", file=sys.stderr)

    unreadable: list[tuple[Path, str]] = []
    paths: list[Path] = []
    for root in args.folder:
        for item in scan_folder(root):
            if item.error is not None:
                unreadable.append((Path(item.path), item.error.reason))
            else:
                paths.append(Path(item.path))
    t0 = time.monotonic()
    n_scored = n_flagged = 0
    with atomic_path(args.out, overwrite=args.overwrite) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        common = (f"{threshold:.8g}", op_name, detector.meta.model_id, detector.meta.name)
        for path, reason in unreadable:
            writer.writerow([str(path), "", "", "", *common, reason])
        for batch in iter_scores(paths, detector, batch_size=args.batch_size, workers=args.workers):
            for r in batch:
                if r.score is None:
                    writer.writerow([str(r.path), "", "", "", *common, r.error])
                    continue
                flagged = r.score > threshold
                n_scored += 1
                n_flagged += flagged
                writer.writerow([str(r.path), f"{r.score:.8g}", f"{r.percentile:.2f}", int(flagged), *common, ""])
    dt = time.monotonic() - t0
    n_err = len(paths) + len(unreadable) - n_scored
    print(f"scored {n_scored} images in {dt:.1f} s ({n_scored / max(dt, 1e-9):.1f} images/s, provider {detector.provider}); "
          f"{n_flagged} flagged; {n_err} unreadable -> {args.out}", file=sys.stderr)
    return 0
