"""`cxrscreen recalibrate DETECTOR --normals DIR --name SITE [--out FILE]`: a site operating point from confirmed normals.

Scores the reader-confirmed normal radiographs of a site (``--normals``, folders or files, and/or
``--normals-from`` a list) with the detector, and writes a site calibration
(:mod:`engine.site_calibration`) that ``cxrscreen score --calibration FILE`` and the app's
model library use instead of the detector's own calibration. The detector file is read, never
written. Files that cannot be read or that the out-of-scope gate refuses are left out and
counted. Prints, for 90 / 95 / 99 % specificity, the site threshold, and what the detector's own
threshold achieves on these normals (with Clopper–Pearson 95 % intervals); warns when there are
fewer normals than a threshold needs (``1 / (1 − s)``).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from cxrscreen.engine.cli_args import int_range, open_probability, read_path_list

SPECIFICITIES = (0.90, 0.95, 0.99)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="DETECTOR", help="detector file (.onnx); never modified")
    parser.add_argument("--normals", type=Path, nargs="+", default=[], metavar="DIR",
                        help="folders and/or files of reader-confirmed normal radiographs of the site")
    parser.add_argument("--normals-from", type=Path, metavar="FILE",
                        help="also the files listed in FILE, one per line, UTF-8 ('-' = stdin)")
    parser.add_argument("--name", required=True, help="the site calibration's name (e.g. the site or batch)")
    parser.add_argument("--out", type=Path, metavar="JSON",
                        help="site calibration file (default: beside the detector, DETECTOR.site-NAME.json)")
    parser.add_argument("--specificity", type=open_probability, default=0.95,
                        help="the operating point to check the count of normals for (default: %(default)s)")
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=32, help="1 to 4096 (default: %(default)s)")
    parser.add_argument("--workers", type=int_range(1, 64), default=2, help="decoding threads, 1 to 64 (default: %(default)s)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing site calibration file")


def default_out(model: Path, name: str) -> Path:
    """``DETECTOR.site-NAME.json`` beside the detector (NAME reduced to letters, digits, - and _)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60] or "site"
    return model.with_name(f"{model.stem}.site-{slug}.json")


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.atomic import atomic_write_text
    from cxrscreen.engine.cli_args import CommandError, check_not_an_input, check_output_file, writing
    from cxrscreen.engine.detector import Detector, DetectorError
    from cxrscreen.engine.io import scan_folder
    from cxrscreen.engine.scoring import iter_scores
    from cxrscreen.engine.site_calibration import SiteCalibrationError, check_name, site_calibration, to_json

    try:
        name = check_name(args.name)
    except SiteCalibrationError as exc:
        raise CommandError(f"--name: {exc.reason}") from None
    if not args.normals and args.normals_from is None:
        raise CommandError("give the confirmed normals: --normals DIR or --normals-from FILE")
    for p in args.normals:
        if not p.exists():
            raise CommandError(f"--normals {p}: no such file or folder")
    out = args.out if args.out is not None else default_out(args.model, name)
    check_output_file(out, args.overwrite)
    check_not_an_input([out], {"DETECTOR": args.model, "--normals-from": args.normals_from})
    try:
        detector = Detector(args.model, provider=args.provider)
    except DetectorError as exc:
        raise CommandError(f"DETECTOR {exc}") from None
    paths: list[Path] = []
    unreadable = 0
    if args.normals:
        for item in scan_folder(args.normals):
            if item.error is not None:
                unreadable += 1
            else:
                paths.append(Path(item.path))
    if args.normals_from is not None:
        paths += read_path_list(args.normals_from, "--normals-from")
    scores: list[float] = []
    descriptors: list[tuple[float, ...]] = []
    refused = 0
    # with their acquisition descriptors: while the site calibration is in use, folders are checked
    # against these normals (engine.acquisition), even for a detector that stores no reference
    for batch in iter_scores(paths, detector, batch_size=args.batch_size, workers=args.workers, describe=True):
        for r in batch:
            if r.out_of_scope is not None:
                refused += 1
            elif r.score is None:
                unreadable += 1
            else:
                scores.append(r.score)
                if r.acquisition is not None:
                    descriptors.append(r.acquisition)
    print(f"detector {detector.meta.name} ({detector.meta.model_id}); {len(scores)} confirmed normals scored, "
          f"{unreadable} unreadable, {refused} out of scope (left out)", file=sys.stderr)
    if not scores:
        raise CommandError("no confirmed normal could be scored: nothing to calibrate on")
    cal = site_calibration(np.asarray(scores), detector.meta.calibration, name,
                           source=f"{len(scores)} reader-confirmed normals (cxrscreen recalibrate)",
                           descriptors=np.asarray(descriptors))
    own = detector.meta.calibration
    for s in SPECIFICITIES:
        t_own = own.threshold_at_specificity(s)
        k_own, lo_own, hi_own = cal.achieved_specificity(t_own)
        note = cal.operating_point_note(s)
        print(f"{100 * s:g} %: site threshold {cal.threshold_at_specificity(s):.6g}"
              + (f" [warning: {note}]" if note else "")
              + f"; the detector's own threshold {t_own:.6g} gives these normals {100 * k_own:.1f} % "
              f"[{100 * lo_own:.1f}, {100 * hi_own:.1f}]", file=sys.stderr)
    note = cal.operating_point_note(args.specificity)
    if note:
        print(f"warning: {note}; confirm more normals before trusting {100 * args.specificity:g} %", file=sys.stderr)
    with writing(out):
        atomic_write_text(out, to_json(cal, detector.meta.model_id), overwrite=args.overwrite)
    print(f"wrote the {cal.label} -> {out}", file=sys.stderr)
    return 0
