"""`cxrscreen index FOLDER... [--out FILE] [--format jsonl|csv]`: list radiographs, headers only.

Scans folders and files like the app does when it opens them (recursive, stable order, no pixel
decode) and writes one entry per image file: its header, or why it cannot be read.

``--format jsonl`` (the default; ``--out -``, the default, is stdout) streams one JSON object per
line: ``{"event": "start", "roots"}``, then ``{"event": "record", "seq", "path", "meta", "error"}``
per file (``meta`` as :func:`engine.io.meta_json.meta_to_json` writes it, or null; ``error`` the
reason, or null), flushed at once for the first file and then at least every
:data:`FLUSH_S` seconds, then ``{"event": "done" | "stopped", "count", "unreadable", "seconds"}``.
The desktop app indexes folders through this command, in a separate process, so that parsing
thousands of DICOM headers never holds the GIL its event loop needs.

``--format csv --out FILE`` writes a table instead (path, format, size, bits, photometric
interpretation, modality, view, frames, error), atomically; text cells get the spreadsheet-formula
guard (:func:`engine.csv_safe.csv_text`).

Identifiers only when asked for: by default the headers carry none of
:data:`IDENTIFIER_FIELDS` (patient name and id, accession number, study date, study / series /
SOP instance UIDs: null in JSON lines, no columns in the CSV). ``--identifiers`` includes them
(the app asks for them, to show them when its user does); an output file that holds them is
then made readable by its owner only (mode 0600). File paths are written as given.

SIGTERM or Ctrl-C stops after the current file (exit code 3; a CSV is then not written). A PATH
that does not exist is refused before anything is written (exit code 1).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import IO, Callable

from cxrscreen.engine.csv_safe import csv_text

logger = logging.getLogger(__name__)

FLUSH_S = 0.1
CSV_COLUMNS = ("path", "format", "rows", "columns", "bits_stored", "photometric", "modality", "view_position",
               "number_of_frames", "error")
# RadiographMeta fields that identify a patient, a study or an image
IDENTIFIER_FIELDS = ("patient_id", "patient_name", "accession_number", "study_date", "study_uid", "series_uid", "sop_uid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("roots", type=Path, nargs="+", metavar="PATH", help="folders (recursive) and/or files")
    parser.add_argument("--out", type=Path, default=Path("-"), metavar="FILE",
                        help="output file ('-' = stdout, jsonl only; default: %(default)s)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default: %(default)s")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--identifiers", action="store_true",
                        help="include patient name and id, accession number, study date and UIDs "
                             "(default: none of them; a file holding them is made owner-only, mode 0600)")


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.atomic import atomic_path
    from cxrscreen.engine.cli_args import check_inputs_and_output, writing
    from cxrscreen.engine.stop import StopRequest

    to_stdout = check_inputs_and_output(args.roots, args.out, args.format, args.overwrite)
    with StopRequest() as stop:
        if to_stdout:
            status, counts = write_index(sys.stdout, args.roots, args.format, lambda: stop.requested, args.identifiers)
        else:
            with writing(args.out), atomic_path(args.out, overwrite=args.overwrite, private=args.identifiers) as tmp, \
                    open(tmp, "w", newline="", encoding="utf-8") as f:
                status, counts = write_index(f, args.roots, args.format, lambda: stop.requested, args.identifiers)
                if status == "stopped":
                    raise SystemExit(_stopped(counts, args.out))  # leaves the atomic block: nothing written
    print(f"{status}: {counts['count']} image files, {counts['unreadable']} unreadable, {counts['seconds']:.1f} s"
          + ("" if to_stdout else f" -> {args.out}"), file=sys.stderr)
    return 0 if status == "done" else 3


def _stopped(counts: dict, out: Path) -> int:
    print(f"stopped after {counts['count']} files; {out} was not written", file=sys.stderr)
    return 3


def write_index(f: IO[str], roots: list[Path], fmt: str, should_stop: Callable[[], bool],
                identifiers: bool = False) -> tuple[str, dict]:
    """Scan ``roots`` and write every file's entry to ``f``; returns the status and the counts.

    Args:
        identifiers: include :data:`IDENTIFIER_FIELDS` (otherwise null in JSON, no CSV columns).
    """
    from cxrscreen.engine.io import scan_folder
    from cxrscreen.engine.io.meta_json import meta_to_json

    t0 = time.monotonic()
    counts = {"count": 0, "unreadable": 0}
    columns = CSV_COLUMNS[:-1] + (IDENTIFIER_FIELDS if identifiers else ()) + CSV_COLUMNS[-1:]
    if fmt == "csv":
        writer = csv.writer(f)
        writer.writerow(columns)
    else:
        f.write(json.dumps({"event": "start", "roots": [str(r) for r in roots]}) + "\n")
        f.flush()
    last_flush = time.monotonic()
    status = "done"
    for item in scan_folder(roots):
        reason = item.error.reason if item.error is not None else None
        meta = item.meta
        if meta is not None and not identifiers:
            meta = dataclasses.replace(meta, **dict.fromkeys(IDENTIFIER_FIELDS))
        if fmt == "csv":
            cells = [""] * (len(columns) - 2) if meta is None else [
                meta.format, meta.rows, meta.columns, _blank(meta.bits_stored), _blank(meta.photometric),
                _blank(meta.modality), _blank(meta.view_position), meta.number_of_frames,
                *(_blank(getattr(meta, name)) for name in (IDENTIFIER_FIELDS if identifiers else ()))]
            writer.writerow([csv_text(str(item.path))] + [csv_text(c) if isinstance(c, str) else c for c in cells]
                            + [csv_text(reason or "")])
        else:
            f.write(json.dumps({"event": "record", "seq": counts["count"], "path": str(item.path),
                                "meta": None if meta is None else meta_to_json(meta), "error": reason}) + "\n")
            now = time.monotonic()
            if counts["count"] == 0 or now - last_flush >= FLUSH_S:
                f.flush()
                last_flush = now
        counts["count"] += 1
        counts["unreadable"] += int(reason is not None)
        if should_stop():
            status = "stopped"
            break
    counts["seconds"] = round(time.monotonic() - t0, 3)
    if fmt == "jsonl":
        f.write(json.dumps({"event": status, **counts}) + "\n")
    f.flush()
    return status, counts


def _blank(value: object) -> object:
    return "" if value is None else value
