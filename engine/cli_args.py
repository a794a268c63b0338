"""Command-line values checked where they enter: argparse types, output files, path lists.

Every check ends in one line that names the value and what is allowed: argparse types raise
:class:`argparse.ArgumentTypeError` (the parser prints ``cxrscreen CMD: error: argument --x:
...`` and exits 2); checks made in a subcommand's ``run`` raise :class:`CommandError`, which
:func:`engine.cli.main` prints as ``cxrscreen CMD: error: ...`` with exit status 1. Torch-free.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Callable, Iterator


class CommandError(Exception):
    """A command cannot run with the values it was given; the message is the one line to print."""


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, epochs, counts that must not be zero)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (thread counts where 0 means 'none', seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for an integer from ``low`` to ``high`` (a batch of a billion images
    would hold every decoded image of a folder in memory before the first score)."""
    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = f"integer from {low} to {high}"
    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    """An argparse type for a finite number from ``low`` to ``high``."""
    def parse(text: str) -> float:
        value = finite_float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, got {text!r}")
        return value

    parse.__name__ = f"number from {low:g} to {high:g}"
    return parse


def open_probability(text: str) -> float:
    """A number strictly between 0 and 1 (a specificity: 0.95, not 95)."""
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        hint = f" (did you mean {value / 100:g}?)" if 1.0 < value < 100.0 else ""
        raise argparse.ArgumentTypeError(f"must be a fraction strictly between 0 and 1, got {text!r}{hint}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (not nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (tolerances)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def check_inputs_and_output(paths: list[Path], out: Path, fmt: str, overwrite: bool) -> bool:
    """The checks of a command that reads PATHs and writes ``--out`` (``-`` = stdout, jsonl only).

    Returns:
        Whether the output goes to stdout.

    Raises:
        CommandError: stdout without ``--format jsonl``, a PATH that does not exist, or an
            output file that :func:`check_output_file` refuses.
    """
    to_stdout = str(out) == "-"
    if to_stdout and fmt != "jsonl":
        raise CommandError("--out - (stdout) needs --format jsonl")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CommandError(f"no such file or folder: {', '.join(missing)}")
    # a FIFO or a device blocks or never ends: only files and folders are read
    special = [str(p) for p in paths if not (p.is_file() or p.is_dir())]
    if special:
        raise CommandError(f"not a regular file or folder: {', '.join(special)}")
    if not to_stdout:
        check_output_file(out, overwrite)
    return to_stdout


def check_output_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot be written or must not be replaced.

    Raises:
        CommandError: ``path`` is a folder, exists without ``overwrite``, lies under a file,
            or its folder cannot be written.
    """
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder; give a file name (e.g. {path / 'results.csv'})")
    if path.exists() and not overwrite:
        raise CommandError(f"{option} {path} exists; pass --overwrite to replace it")
    _check_writable_folder(_existing_ancestor(path.parent), path, option)


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file or lies where nothing can be written."""
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path} is a file; give a folder")
    _check_writable_folder(_existing_ancestor(path), path, option)


def _check_writable_folder(folder: Path, path: Path, option: str) -> None:
    """Create and remove a probe file in ``folder``: permissions alone miss read-only mounts,
    /proc and the like, and say nothing for root."""
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: {folder} is a file, not a folder")
    probe = folder / f".cxrscreen-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise CommandError(f"{option} {path}: the folder {folder} is not writable ({exc.strerror or exc})") from None
    probe.unlink()


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (the folder that must be writable to create it)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_not_an_input(outputs: list[Path], inputs: dict[str, Path | None], option: str = "--out") -> None:
    """Refuse an output that would replace one of the command's inputs (e.g. ``--out labels.csv``)."""
    for out in outputs:
        for name, path in inputs.items():
            if path is not None and out.exists() and path.exists() and os.path.samefile(out, path):
                raise CommandError(f"{option} {out} is the {name} file; writing there would replace it")


@contextlib.contextmanager
def writing(path: Path, option: str = "--out") -> Iterator[None]:
    """Turn an OSError while writing ``path`` into a one-line :class:`CommandError`.

    An error on another file (one the command reads meanwhile) names that file instead.
    """
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
        # the output itself, its temporary file (".NAME.xxxx.part") or one of its folders
        ours = where is None or where.name == path.name or where.name.startswith(f".{path.name}.") or \
            path.absolute().is_relative_to(where.absolute())
        if not ours:
            raise CommandError(f"{where}: {reason}") from exc
        raise CommandError(f"cannot write {option} {path}: {reason}") from exc


def read_path_list(source: Path, option: str = "--paths-from") -> list[Path]:
    """The files listed in ``source`` (one per line, UTF-8; ``-`` = stdin); blank lines skipped.

    Raises:
        CommandError: the list is missing, a folder, unreadable, not UTF-8 text, or holds a NUL.
    """
    name = str(source)
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            if source.is_dir():
                raise CommandError(f"{option} {source} is a folder; give a text file with one path per line")
            text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CommandError(f"{option} {source}: no such file") from None
    except OSError as exc:
        raise CommandError(f"{option} {source}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{option} {source} is not UTF-8 text (byte {exc.start}); give a text file with "
                           "one path per line") from None
    if "\x00" in text:
        raise CommandError(f"{option} {source} holds NUL bytes: not a text file with one path per line")
    return [Path(line) for line in text.splitlines() if line.strip()]
