"""`cxrscreen ensemble RUN_DIR RUN_DIR [...] --out detector.onnx`: finished runs as one detector (mean of standardised scores)."""
from __future__ import annotations

import argparse
from pathlib import Path

from cxrscreen.engine.cli_args import positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="finished `cxrscreen train` run folders trained on the same known normals (two or more)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="detector file to write (.onnx)")
    parser.add_argument("--name", default="", help="a human-readable detector name (default: Ensemble AMAE + DDAD ...)")
    parser.add_argument("--tolerance", type=positive_float, default=1e-4, help="max ONNX-vs-PyTorch difference (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.cli_args import CommandError, check_output_file, writing
    from cxrscreen.engine.datasets import DataError
    from cxrscreen.engine.ensemble import EnsembleError, build_ensemble
    from cxrscreen.engine.export import ExportError
    from cxrscreen.engine.train import RunFolderError

    check_output_file(args.out, args.overwrite)
    try:
        with writing(args.out):
            report = build_ensemble(args.run_dirs, args.out, name=args.name, tolerance=args.tolerance, overwrite=args.overwrite)
    except (EnsembleError, ExportError, FileExistsError, RunFolderError) as exc:
        raise CommandError(str(exc)) from None
    except DataError as exc:  # an image of the runs' lists moved or changed since they trained
        raise CommandError(f"{exc} (the runs' training and held-out images must still be where they trained)") from None
    except (ValueError, KeyError, TypeError) as exc:  # a run folder whose files are malformed
        raise CommandError(f"cannot build the ensemble ({exc.__class__.__name__}: {exc})") from None
    m = report.metadata
    cal = m.calibration
    lines = [f"wrote {report.path} ({report.path.stat().st_size / 2**20:.1f} MiB)", f"  model id   {m.model_id}",
             f"  ensemble   {m.name}: the mean of {len(m.training['member_runs'])} standardised scores"]
    for info in m.training["member_runs"]:
        lines.append(f"    {info['method']:10s} {info['backbone']} ({info['score_type']}): "
                     f"(score - {info['score_loc']:.4g}) / {info['score_scale']:.4g}")
    raised = cal.floor_levels() if cal.training_normal_scores else []
    lines += [f"  input      {m.input_size}x{m.input_size}, {m.preprocess.to_dict()}",
              f"  calibrated on {cal.n_normals} held-out normals no member trained on"
              + (f"; training-normal floor sets the threshold at {', '.join(raised)}" if raised else ""),
              f"  parity     max |Δscore| {report.max_score_diff:.1e}, max |Δheatmap| {report.max_heatmap_diff:.1e} "
              f"on {report.n_checked} images (onnxruntime CPU vs PyTorch)"]
    print("\n".join(lines))
    return 0
