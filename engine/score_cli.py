"""`cxrscreen score FOLDER --model detector.onnx --out results.csv`.

Every radiograph under FOLDER (recursive) gets one row: path, score, percentile among the
detector's calibration normals, the flag at the operating point, the threshold, the model id; a
file that cannot be read gets a row with the reason instead of stopping the run. An image the
detector's out-of-scope gate refuses (:mod:`engine.scope`: not a frontal chest radiograph like
the detector's) gets no score and no flag, and "out of scope: <reason>" in ``out_of_scope``. The operating
point is a specificity on known normals (default 0.95) or a raw score threshold, on the
detector's own calibration or on a site calibration (``--calibration FILE``, made by ``cxrscreen
recalibrate``); every row names the calibration it used. The CSV is written atomically. The
execution provider actually used (CUDA or CPU) is printed. When every file is scored, the drift
check (:mod:`engine.drift`) says whether the folder scores higher than the calibration normals
plus a plausible share of abnormal studies explains, i.e. whether its flag rate can be trusted,
and whether the images were acquired or processed unlike the detector's training normals (for a
detector that stores their detail descriptors) or, with a site calibration, unlike its confirmed
normals (when it stores theirs) (:mod:`engine.acquisition`; either warns).

``--format jsonl --out -`` streams one JSON object per line on stdout instead (for the app, which
scores in a separate process): ``{"event": "start", "total", "provider", "provider_note",
"model_id", "threshold"}``, then ``{"event": "result", "path", "score", "percentile", "flagged",
"error", "out_of_scope"}`` per file (with ``"acquisition"``, the image's four detail shares, when the
detector or the site calibration stores a reference for them) (flushed per batch), then (when complete) ``{"event": "drift", "drift",
"p_value", "specificity_estimated", "warning", "caution", "message", "acquisition", ...}``
(:class:`engine.drift.DriftReport`), then
``{"event": "done" | "stopped", ...}``. SIGTERM or
Ctrl-C stops after the current batch. ``--paths-from FILE`` (or ``-`` for stdin) reads an
explicit list of files, one per line, instead of (or besides) scanning folders.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import IO

from cxrscreen.engine.cli_args import finite_float, float_range, int_range, open_probability, read_path_list
from cxrscreen.engine.csv_safe import csv_text

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "score", "percentile_among_normals", "flagged", "threshold", "operating_point",
               "calibration", "model_id", "model_name", "error", "out_of_scope")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, nargs="*", metavar="FOLDER", help="folders and/or files to score")
    parser.add_argument("--paths-from", type=Path, metavar="FILE",
                        help="also score the files listed in FILE, one per line, UTF-8 ('-' = stdin)")
    parser.add_argument("--model", type=Path, required=True, metavar="ONNX", help="detector file")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="results file ('-' = stdout, jsonl only)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default: %(default)s")
    op = parser.add_mutually_exclusive_group()
    op.add_argument("--specificity", type=open_probability, default=0.95,
                    help="flag above the score that this fraction of calibration normals stay below (default: %(default)s)")
    op.add_argument("--threshold", type=finite_float, default=None, help="flag above this raw score instead")
    parser.add_argument("--calibration", type=Path, metavar="JSON",
                        help="a site calibration of this detector (cxrscreen recalibrate) instead of the detector's own")
    parser.add_argument("--max-abnormal-share", type=float_range(0.0, 0.99), default=None, metavar="P",
                        help="the drift check allows for up to this share of abnormal studies "
                             "(default: 0.7; a lower share makes the check more sensitive)")
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=32, help="1 to 4096 (default: %(default)s)")
    parser.add_argument("--workers", type=int_range(1, 64), default=2, help="decoding threads, 1 to 64 (default: %(default)s)")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto", help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing results file")


class _Stopped(Exception):
    pass


def _inputs(args: argparse.Namespace) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Readable-looking files to score, and files the scan already found unreadable (with reasons)."""
    from cxrscreen.engine.io import scan_folder

    paths: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    if args.folder:
        for item in scan_folder(args.folder):
            if item.error is not None:
                unreadable.append((Path(item.path), item.error.reason))
            else:
                paths.append(Path(item.path))
    if args.paths_from is not None:
        paths += read_path_list(args.paths_from)
    return paths, unreadable


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.atomic import atomic_path
    from cxrscreen.engine.cli_args import CommandError, check_inputs_and_output, check_not_an_input, writing
    from cxrscreen.engine.detector import Detector, DetectorError
    from cxrscreen.engine.scoring import iter_scores
    from cxrscreen.engine.stop import StopRequest

    if not args.folder and args.paths_from is None:
        raise CommandError("give folders or files to score, or --paths-from FILE")
    to_stdout = check_inputs_and_output(args.folder, args.out, args.format, args.overwrite)
    if not to_stdout:
        check_not_an_input([args.out], {"--model": args.model, "--paths-from": args.paths_from})
    try:
        detector = Detector(args.model, provider=args.provider)
    except DetectorError as exc:
        raise CommandError(f"--model {exc}") from None
    if args.calibration is not None:
        from cxrscreen.engine.site_calibration import SiteCalibrationError, read_file

        try:
            detector.set_calibration(read_file(args.calibration, detector.meta.model_id))
        except SiteCalibrationError as exc:
            raise CommandError(f"--calibration {exc}") from None
    if args.threshold is not None:
        threshold, op_name = float(args.threshold), "raw threshold"
    else:
        threshold, op_name = detector.calibration.threshold_at_specificity(args.specificity), f"specificity {args.specificity:g} on normals"
    print(f"calibration: {detector.calibration.label}", file=sys.stderr)
    print(f"detector {detector.meta.name} ({detector.meta.model_id}); provider {detector.provider}"
          + (f" [{detector.provider_note}]" if detector.provider_note else ""), file=sys.stderr)
    print(f"operating point: {op_name} -> score threshold {threshold:.6g}", file=sys.stderr)
    note = detector.calibration.operating_point_note(args.specificity) if args.threshold is None else None
    if note:
        print(f"warning: {note}; the flags do not mean {100 * args.specificity:g} % specificity", file=sys.stderr)
    print(f"out-of-scope gate: {detector.scope_gate.description}", file=sys.stderr)
    paths, unreadable = _inputs(args)

    t0 = time.monotonic()
    counts = {"scored": 0, "flagged": 0, "unreadable": 0, "out_of_scope": 0}
    with StopRequest() as stop:
        if to_stdout:
            status = _write(sys.stdout, args, detector, paths, unreadable, threshold, op_name, counts, stop, iter_scores)
        else:
            try:
                with writing(args.out), atomic_path(args.out, overwrite=args.overwrite) as tmp, \
                        open(tmp, "w", newline="", encoding="utf-8") as f:
                    status = _write(f, args, detector, paths, unreadable, threshold, op_name, counts, stop, iter_scores)
                    if status == "stopped":
                        raise _Stopped  # an incomplete CSV must not look like a complete one
            except _Stopped:
                print(f"stopped after {counts['scored']} images; {args.out} was not written", file=sys.stderr)
                return 3
    dt = time.monotonic() - t0
    drift = counts.pop("drift", None)
    if drift is not None:
        print(f"drift check: {drift.message}", file=sys.stderr)
    print(f"{status}: scored {counts['scored']} images in {dt:.1f} s ({counts['scored'] / max(dt, 1e-9):.1f} images/s, "
          f"provider {detector.provider}); {counts['flagged']} flagged; {counts['unreadable']} unreadable; "
          f"{counts['out_of_scope']} out of scope"
          + ("" if to_stdout else f" -> {args.out}"), file=sys.stderr)
    return 0 if status == "done" else 3


def _drift(detector, scores: list[float], descriptors: list[tuple[float, ...]], args: argparse.Namespace,
           threshold: float):
    """The drift check of the scored images (:mod:`engine.drift`) at the promised specificity
    (with a raw threshold: the share of calibration normals it keeps below), with the acquisition
    check of their descriptors (:mod:`engine.acquisition`) against the detector's known normals,
    or against a site calibration's confirmed normals while one is in use (none when the
    reference in question is missing)."""
    import numpy as np

    from cxrscreen.engine.acquisition import check_acquisition
    from cxrscreen.engine.detector import acquisition_reference_words
    from cxrscreen.engine.drift import MAX_ABNORMAL_SHARE, check_drift

    calibration = detector.calibration
    reference = detector.check_reference
    acquisition = None if reference is None else check_acquisition(
        np.asarray(descriptors), reference, against=acquisition_reference_words(calibration))

    if args.threshold is None:
        spec = args.specificity
    else:
        spec = min(max(calibration.achieved_specificity(threshold)[0], 0.001), 0.999)
    share = MAX_ABNORMAL_SHARE if args.max_abnormal_share is None else args.max_abnormal_share
    x = np.asarray(scores, dtype=np.float64)
    return check_drift(x[np.isfinite(x)], calibration, specificity=spec, max_abnormal_share=share,
                       acquisition=acquisition)


def _write(f: IO[str], args, detector, paths, unreadable, threshold: float, op_name: str, counts: dict,
           stop, iter_scores) -> str:
    meta = detector.meta
    if args.format == "csv":
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        common = (f"{threshold:.8g}", op_name, csv_text(detector.calibration.label), csv_text(meta.model_id),
                  csv_text(meta.name))

        def emit(path: Path, score, pct, flagged, error, out_of_scope=None, acquisition=None) -> None:
            writer.writerow([csv_text(str(path)), "" if score is None else f"{score:.8g}", "" if pct is None else f"{pct:.2f}",
                             "" if flagged is None else int(flagged), *common, csv_text(error or ""),
                             csv_text(f"out of scope: {out_of_scope}") if out_of_scope else ""])
    else:
        def line(obj: dict) -> None:
            f.write(json.dumps(obj) + "\n")

        line({"event": "start", "total": len(paths) + len(unreadable), "model_id": meta.model_id, "model_name": meta.name,
              "provider": detector.provider, "provider_note": detector.provider_note, "threshold": threshold,
              "operating_point": op_name, "calibration": detector.calibration.label,
              "calibration_name": detector.calibration.name})

        def emit(path: Path, score, pct, flagged, error, out_of_scope=None, acquisition=None) -> None:
            ev = {"event": "result", "path": str(path), "score": score, "percentile": pct, "flagged": flagged,
                  "error": error, "out_of_scope": out_of_scope}
            if acquisition is not None:
                ev["acquisition"] = [round(v, 6) for v in acquisition]
            line(ev)

    scores: list[float] = []
    descriptors: list[tuple[float, ...]] = []
    for path, reason in unreadable:
        emit(path, None, None, None, reason)
        counts["unreadable"] += 1
    for batch in iter_scores(paths, detector, batch_size=args.batch_size, workers=args.workers,
                             should_stop=lambda: stop.requested):
        for r in batch:
            if r.out_of_scope is not None:
                emit(r.path, None, None, None, None, r.out_of_scope)
                counts["out_of_scope"] += 1
                continue
            if r.score is None:
                emit(r.path, None, None, None, r.error)
                counts["unreadable"] += 1
                continue
            flagged = r.score > threshold
            scores.append(r.score)
            if r.acquisition is not None:
                descriptors.append(r.acquisition)
            counts["scored"] += 1
            counts["flagged"] += int(flagged)
            emit(r.path, r.score, r.percentile, flagged, None, acquisition=r.acquisition)
        f.flush()
    status = "stopped" if stop.requested else "done"
    if status == "done":
        drift = _drift(detector, scores, descriptors, args, threshold)
        if args.format == "jsonl":
            f.write(json.dumps({"event": "drift", **drift.to_dict()}) + "\n")
    if args.format == "jsonl":
        f.write(json.dumps({"event": status, **counts}) + "\n")
    if status == "done":
        counts["drift"] = drift
        f.flush()
    return status
