"""`cxrscreen export RUN_DIR --out detector.onnx`: one ONNX detector file from a finished run."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cxrscreen.engine.cli_args import positive_float

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished `cxrscreen train` run folder")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="detector file to write (.onnx)")
    parser.add_argument("--score", dest="score_type", default=None,
                        help="which anomaly map becomes score and heatmap (default: the run's)")
    parser.add_argument("--name", default="", help="a human-readable detector name")
    parser.add_argument("--tolerance", type=positive_float, default=1e-4, help="max ONNX-vs-PyTorch difference (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("--views", default=None, choices=("none", "framing"),
                        help="test-time views: score each image as read (none) or as the mean over it and six "
                             "re-framings (framing), calibrated again (default: the run's setting)")


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.cli_args import CommandError, check_output_file, writing
    from cxrscreen.engine.export import ExportError, export_run
    from cxrscreen.engine.train import RunFolderError

    if not args.run_dir.is_dir():
        raise CommandError(f"RUN_DIR {args.run_dir} is not a folder (give a `cxrscreen train` run folder)")
    check_output_file(args.out, args.overwrite)
    try:
        with writing(args.out):
            report = export_run(args.run_dir, args.out, score_type=args.score_type, name=args.name,
                                tolerance=args.tolerance, overwrite=args.overwrite, views=args.views)
    except (RunFolderError, ExportError, FileExistsError) as exc:
        raise CommandError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:  # a run folder whose files are malformed
        raise CommandError(f"RUN_DIR {args.run_dir}: cannot export ({exc.__class__.__name__}: {exc})") from None
    m = report.metadata
    cal = m.calibration
    floor = ""
    if cal.training_normal_scores:
        raised = cal.floor_levels()
        floor = (f"; threshold floor from {len(cal.training_normal_scores)} training normals "
                 + (f"(sets the threshold at {', '.join(raised)})" if raised else "(below the held-out estimate)"))
    print(f"wrote {report.path} ({report.path.stat().st_size / 2**20:.1f} MiB)\n"
          f"  model id   {m.model_id}\n  method     {m.method} / {m.backbone} / score {m.score_type}\n"
          f"  input      {m.input_size}x{m.input_size}, {m.preprocess.to_dict()}\n"
          f"  calibrated on {cal.n_normals} held-out normals{floor}\n"
          f"  parity     max |Δscore| {report.max_score_diff:.1e}, max |Δheatmap| {report.max_heatmap_diff:.1e} "
          f"on {report.n_checked} images (onnxruntime CPU vs PyTorch)")
    from cxrscreen.engine.acquisition import unlabeled_verdict

    mix = unlabeled_verdict(m.scope)
    if mix:
        print(f"  unlabeled  {mix}")
    return 0
