"""The reader's confirmed cases as training sets: folders of links, or lists of paths (Qt-free).

"Confirmed normal" cases are what a site detector trains on as known normals, and "confirmed
abnormal" cases are the anomalies that semi-supervised methods (WSCXR) and the New-detector
panel's validation set need. They are written where the reader chooses, as

- ``links``: ``confirmed_normal/`` and ``confirmed_abnormal/`` folders of symbolic links to the
  images (a folder the New-detector panel takes as it takes any folder; no pixel is copied), or
- ``lists``: ``confirmed_normal.txt`` and ``confirmed_abnormal.txt``, one path per line,

with ``reader_sets.json`` saying how many came from reader marks, by whom. Nothing is
overwritten: an existing set refuses the export. :func:`reader_marks_count` tells the
New-detector panel how many images of a folder it is given came from reader marks (the
detector's card records it).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

ExportMode = Literal["links", "lists"]
_MODES: tuple[str, ...] = get_args(ExportMode)
SET_NAMES: dict[str, str] = {"normal": "confirmed_normal", "abnormal": "confirmed_abnormal"}
SUMMARY_FILE = "reader_sets.json"


class ReaderSetError(ValueError):
    """The sets cannot be written there (a set already exists, or nothing to write).

    Attributes:
        path: the folder or file in the way.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class ReaderSets:
    """What was written: the set folders (or list files) and their sizes."""

    paths: dict[str, Path]
    counts: dict[str, int]


def export_reader_sets(normal: Sequence[Path], abnormal: Sequence[Path], out: Path, mode: ExportMode,
                       reader: str) -> ReaderSets:
    """Write the confirmed-normal and confirmed-abnormal sets under ``out``.

    Args:
        normal: images the reader confirmed normal.
        abnormal: images the reader confirmed abnormal.
        out: the folder to write into (created if missing).
        mode: "links" (folders of symbolic links) or "lists" (text files of paths).
        reader: who marked them (recorded in :data:`SUMMARY_FILE`).

    Raises:
        ValueError: an unknown mode, or the same image in both sets.
        ReaderSetError: nothing to write, or a set already exists under ``out``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    both = set(normal) & set(abnormal)
    if both:
        raise ValueError(f"{len(both)} image(s) are in both sets, e.g. {sorted(both)[0].name}")
    if not normal and not abnormal:
        raise ReaderSetError(out, "no case is marked confirmed normal (O) or confirmed abnormal (X)")
    sets = {"normal": list(normal), "abnormal": list(abnormal)}
    targets = {k: out / (SET_NAMES[k] + ("" if mode == "links" else ".txt")) for k in sets}
    for target in (*targets.values(), out / SUMMARY_FILE):
        if target.exists() or target.is_symlink():
            raise ReaderSetError(target, "already exists; choose another folder (nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    for kind, paths in sets.items():
        if mode == "lists":
            targets[kind].write_text("".join(f"{p.resolve()}\n" for p in paths), encoding="utf-8")
            continue
        targets[kind].mkdir()
        used: set[str] = set()
        for p in paths:
            name = p.name
            k = 1
            while name in used:  # same file name in two folders
                k += 1
                name = f"{p.stem}_{k}{p.suffix}"
            used.add(name)
            os.symlink(p.resolve(), targets[kind] / name)
    summary = {"source": "reader marks", "reader": reader, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "mode": mode, "counts": {SET_NAMES[k]: len(v) for k, v in sets.items()}}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return ReaderSets(targets, {k: len(v) for k, v in sets.items()})


def reader_marks_count(folder: Path) -> int | None:
    """How many images of ``folder`` came from reader marks, or None when it is not a reader set.

    A reader set is a ``confirmed_normal`` or ``confirmed_abnormal`` folder of links written by
    :func:`export_reader_sets` (its :data:`SUMMARY_FILE` beside it); a folder that holds such a set
    (and its summary) besides other images counts the set's links. The links in it are counted,
    not the summary's figure: a reader may have removed cases since, and files added by hand
    (not links) are not the reader's marks.
    """
    folder = Path(folder)
    if folder.name not in SET_NAMES.values():
        # a folder holding a reader set beside other images (an adaptation's known normals): its set's links
        inner = [folder / n for n in SET_NAMES.values() if (folder / n).is_dir()]
        if not inner or not (folder / SUMMARY_FILE).is_file():
            return None
        counts = [reader_marks_count(sub) for sub in inner]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    try:
        summary = json.loads((folder.parent / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("source") != "reader marks" or summary.get("mode") != "links":
        return None
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.is_symlink())
    except OSError:
        return None
