"""The `cxrscreen` command: the desktop app by default, engine subcommands otherwise.

Every subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
this table is the only place that lists them (heavy modules are imported only when chosen).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("app.main", "open the desktop app (the default)"),
    "demo": ("engine.demo", "headless demo: generate a synthetic study folder and read it"),
    "train": ("engine.train_cli", "train a detector from normal + unlabeled folders or a split file"),
    "export": ("engine.export_cli", "export a trained run to one ONNX detector file"),
    "score": ("engine.score_cli", "score every radiograph in a folder with an ONNX detector"),
    "eval": ("engine.eval_cli", "evaluate a detector on labelled images (AUROC, AP, operating points)"),
    "demo-detector": ("engine.demo_detector", "build a small demo detector from synthetic radiographs"),
}


def build_parser() -> argparse.ArgumentParser:
    from engine import __version__

    parser = argparse.ArgumentParser(prog="cxrscreen", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cxrscreen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _lazy_arguments(module, p)
    return parser


def _lazy_arguments(module: str, parser: argparse.ArgumentParser) -> None:
    """Add a subcommand's arguments; its module must import without torch (torch loads in run)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # a part of the program that is not installed (e.g. no Qt)
        parser.set_defaults(_import_error=str(exc))
        return
    mod.add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv if argv else ["gui"])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "_import_error", None):
        parser.error(f"'{args.command}' is not available: {args._import_error}")
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)
