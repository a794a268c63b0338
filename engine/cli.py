"""The `cxrscreen` command: the desktop app by default, engine subcommands otherwise.

Every subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
this table is the only place that lists them (heavy modules are imported only when chosen).

Bad input ends in one line on stderr that names the value and what is allowed, never a
traceback: exit status 2 for a value the parser refuses, 1 for a :class:`CommandError` raised by
a subcommand, and 70 (EX_SOFTWARE) for an unexpected error (a bug: ``-v`` shows the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
from typing import NoReturn

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gui": ("cxrscreen.app.main", "open the desktop app (the default)"),
    "demo": ("cxrscreen.engine.demo", "headless demo: generate a synthetic study folder and read it"),
    "train": ("cxrscreen.engine.train_cli", "train a detector from normal + unlabeled folders or a split file"),
    "export": ("cxrscreen.engine.export_cli", "export a trained run to one ONNX detector file"),
    "ensemble": ("cxrscreen.engine.ensemble_cli", "combine finished runs (e.g. AMAE and DDAD) into one detector file"),
    "score": ("cxrscreen.engine.score_cli", "score every radiograph in a folder with an ONNX detector"),
    "recalibrate": ("cxrscreen.engine.recalibrate_cli", "set a site operating point on reader-confirmed normals (the detector file is unchanged)"),
    "index": ("cxrscreen.engine.index_cli", "list the radiographs under folders with their headers (no pixel decode)"),
    "eval": ("cxrscreen.engine.eval_cli", "evaluate a detector on labelled images (AUROC, AP, operating points)"),
    "methods": ("cxrscreen.engine.methods_cli", "list the training methods, their data, options and presets (--json: for the app)"),
    "demo-detector": ("cxrscreen.engine.demo_detector", "build a small demo detector from synthetic radiographs"),
}


def build_parser(only: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser; with ``only``, just that subcommand's module is imported.

    Importing a module costs its imports (the GUI's is PySide6): ``main`` passes the chosen
    subcommand, so e.g. ``cxrscreen index`` (which the app starts for every folder it opens)
    does not pay for the others. ``cxrscreen --help`` lists every subcommand either way.
    ``argv`` is handed to a module whose ``add_arguments`` takes it (`train` adds only the
    options of the method it names).
    """
    from cxrscreen.engine import __version__

    parser = OneLineErrorParser(prog="cxrscreen", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cxrscreen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if only is None or name == only:
            _lazy_arguments(module, p, argv)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _lazy_arguments(module: str, parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """Add a subcommand's arguments; its module must import without torch (torch loads in run)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # a part of the program that is not installed (e.g. no Qt)
        parser.set_defaults(_import_error=str(exc))
        return
    if argv is not None and "argv" in inspect.signature(mod.add_arguments).parameters:
        mod.add_arguments(parser, argv=argv)
    else:
        mod.add_arguments(parser)


def _terminate_cleanly() -> None:
    """SIGTERM ends an engine command through Python's exception path, not at once.

    Python's default for SIGTERM ends the process where it stands, so a file being written
    (an exported detector, an eval report) would leave its temporary ``.part`` beside the target;
    as an exception (SystemExit, exit 143) every ``atomic_path`` removes its temporary file on the
    way out. Commands that stop gracefully (train, score, index) install their own handler while
    they run (:class:`engine.stop.StopRequest`) and restore this one after.
    """
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is None and not {"-h", "--help", "--version"} & set(argv):
        argv, chosen = [*argv, "gui"], "gui"  # the app is the default (also after options like -v)
    parser = build_parser(only=chosen if chosen in SUBCOMMANDS else None, argv=argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "_import_error", None):
        parser.error(f"'{args.command}' is not available: {args._import_error}")
    module = importlib.import_module(args._module)
    from cxrscreen.engine.cli_args import CommandError

    if args.command != "gui":
        _terminate_cleanly()

    try:
        return int(module.run(args) or 0)
    except CommandError as exc:
        print(f"cxrscreen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line for the user, the traceback with -v
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        detail = " ".join(str(exc).split())[:300]
        print(f"cxrscreen {args.command}: internal error {exc.__class__.__name__}: {detail} "
              "(please report it; -v shows the traceback)", file=sys.stderr)
        return 70
