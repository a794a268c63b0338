"""`cxrscreen train`: train a detector from normal + unlabeled folders or a split file.

Examples:
    cxrscreen train --method ddad --normal NORMAL_DIR --unlabeled UNLABELED_DIR --out runs/site1
    cxrscreen train --method ddad --split ../shared/data/kermany/splits/dev.json --ar 0.6 --out runs/dev

Progress: a bar on a terminal, JSON lines on stdout otherwise (``--progress json`` forces them;
see :mod:`engine.progress`). Ctrl-C (or SIGTERM) stops after the current epoch with a
checkpoint; the same command resumes. Exit codes: 0 done, 1 error, 3 stopped.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import get_args

from engine.methods import METHODS, get_method
from engine.preprocess import Aspect, Intensity, PreprocessSpec

logger = logging.getLogger(__name__)
EXIT_STOPPED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=sorted(METHODS), default="ddad", help="training method (default: %(default)s)")
    data = parser.add_argument_group("data (folders, or a split file)")
    data.add_argument("--normal", type=Path, metavar="DIR", help="folder of known-normal radiographs (D_n)")
    data.add_argument("--unlabeled", type=Path, metavar="DIR", help="folder of unlabeled radiographs (D_u)")
    data.add_argument("--split", type=Path, metavar="JSON", help="split file of the development protocol")
    data.add_argument("--ar", type=float, default=0.6, metavar="RATE",
                      help="anomaly rate of D_u drawn from the split's unlabeled pool (default: %(default)s)")
    data.add_argument("--root", type=Path, metavar="DIR", help="folder the split's paths are relative to "
                      "(default: the parent of its 'splits' folder)")
    data.add_argument("--calibration-fraction", type=float, default=0.1, metavar="F",
                      help="fraction of known normals held out to calibrate scores (default: %(default)s)")
    pre = parser.add_argument_group("preprocessing (stored in the detector)")
    pre.add_argument("--size", type=int, default=None, help="input size (default: the method's)")
    pre.add_argument("--aspect", choices=get_args(Aspect), default="stretch", help="default: %(default)s")
    pre.add_argument("--intensity", choices=get_args(Intensity), default="none", help="default: %(default)s")
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (resumed if it exists)")
    run.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    run.add_argument("--epochs", type=int, default=None, help="training epochs (default: the method's paper setting)")
    run.add_argument("--batch-size", type=int, default=None, help="default: the method's")
    run.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    run.add_argument("--workers", type=int, default=2, help="image-decoding threads (default: %(default)s)")
    run.add_argument("--threads", type=int, default=0, metavar="N",
                     help="torch CPU threads (default: one per core; 1 can be much faster on a CPU busy with other jobs); "
                          "not part of the run, a resumed run may use another number")
    run.add_argument("--checkpoint-every", type=float, default=None, metavar="SECONDS",
                     help="time between checkpoints (default: the method's, 60 s)")
    run.add_argument("--progress", choices=("auto", "json", "bar", "none"), default="auto", help="default: %(default)s")
    for name in sorted(METHODS):
        get_method(name).add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from engine.datasets import DataError, from_folders, from_split
    from engine.progress import Progress
    from engine.stop import StopRequest
    from engine.train import RunFolderError, run_training

    method = get_method(args.method)
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {args.threads}")
    if args.split is not None and (args.normal is not None or args.unlabeled is not None):
        raise SystemExit("give either --split or --normal/--unlabeled, not both")
    if args.split is None and args.normal is None:
        raise SystemExit("give the data: --normal DIR (and --unlabeled DIR), or --split JSON")
    default_pre = method.DEFAULT_PREPROCESS
    spec = PreprocessSpec(size=args.size or default_pre.size, aspect=args.aspect, intensity=args.intensity,
                          output_range=default_pre.output_range)
    config = method.config_from_args(args, spec)
    progress = Progress(args.progress, log_path=None)
    try:
        if args.split is not None:
            data = from_split(args.split, args.ar, root=args.root, calibration_fraction=args.calibration_fraction)
        else:
            data = from_folders(args.normal, args.unlabeled, calibration_fraction=args.calibration_fraction)
        args.out.mkdir(parents=True, exist_ok=True)
        progress = Progress(args.progress, log_path=args.out / "log.jsonl")
        progress.message(f"{args.method}: {len(data.normal_train)} normal (+{len(data.normal_calibration)} held out for "
                         f"calibration), {len(data.unlabeled)} unlabeled images -> {args.out}")
        from engine.torch_runtime import set_threads

        set_threads(args.threads)
        stop = StopRequest()
        stop.on_first_request = lambda: progress.message("stop requested: finishing the current epoch, then saving a checkpoint "
                                                         "(Ctrl-C again aborts at once)", level="warning")
        with stop:
            outcome = run_training(args.method, config, data, args.out, progress, stop, workers=args.workers)
    except (DataError, RunFolderError) as exc:
        progress.finish("error", message=str(exc))
        if progress.mode != "json":
            logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        progress.finish("stopped", message="aborted; the last checkpoint is kept")
        return EXIT_STOPPED
    if outcome.status == "stopped":
        return EXIT_STOPPED
    if progress.mode != "json":
        print(f"trained in {outcome.summary.get('train_seconds', 0):.0f} s -> {args.out}\n"
              f"export it with: cxrscreen export {args.out} --out detector.onnx")
    return 0
