"""CSV export of worklist results: pseudonymised by default, written atomically, never over a file
without the caller saying so.

One row per case: the file path, patient / study / series references (keyed pseudonyms, see
:mod:`app.pseudonym`, unless real identifiers are asked for), view, score, percentile among
normals, flag, the threshold and operating point, the calibration it was set on (the detector's
own or a site calibration), the detector's id, name and version, the
status and the export time (UTC). The ``id_mode`` column says which kind of reference the file
holds, with the key's fingerprint.

Paths: with identifiers, the full path. Without, the path relative to the opened folder that
holds the file (just the file name for a file opened on its own), with every part that may
identify someone replaced by its keyed pseudonym (``F-…``, the extension kept): a DICOM-UID-like
part (four or more dot-separated numbers: file names are often the SOP Instance UID), a part
holding ``^`` (DICOM person names), a run of six or more digits (patient ids, birth dates), or
any of the case's own header identifiers (patient name words, id, accession number, UIDs,
study date). An export with identifiers is written readable by its owner only (mode 0600).

Text cells that a spreadsheet would run as a formula get the guard of
:func:`engine.csv_safe.csv_text`; numbers are written as numbers. No Qt.
"""
from __future__ import annotations

import csv
import datetime
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterable, Literal, Sequence

from cxrscreen.app.pseudonym import key_fingerprint, pseudonymise
from cxrscreen.app.records import CaseRecord
from cxrscreen.engine.atomic import atomic_path
from cxrscreen.engine.csv_safe import csv_text
from cxrscreen.engine.detector import DetectorMetadata
from cxrscreen.engine.io import RadiographMeta

ExportScope = Literal["flagged", "all", "selected"]
COLUMNS: tuple[str, ...] = (
    "path", "patient", "study", "series", "id_mode", "view", "score", "percentile", "flagged",
    "threshold", "operating_point", "calibration", "model_id", "model_name", "model_method", "model_created",
    "model_software", "status", "exported_at",
)
_UID_LIKE = re.compile(r"\d+(\.\d+){3,}")
_LONG_NUMBER = re.compile(r"\d{6,}")


@dataclass(frozen=True)
class ExportContext:
    """What every row shares.

    Attributes:
        model: the active detector's metadata.
        threshold: the flag threshold (flagged = score > threshold).
        operating_point: how the threshold was chosen ("95 % specificity...").
        include_identifiers: write real identifiers and full paths instead of pseudonyms.
        key: the pseudonym key.
        exported_at: the export time (UTC).
        roots: the folders opened in the worklist; paths are written relative to them.
        calibration: which calibration the threshold and percentiles come from
            (:attr:`NormalCalibration.label`; default: the detector's own).
    """

    model: DetectorMetadata
    threshold: float
    operating_point: str
    include_identifiers: bool
    key: bytes
    exported_at: datetime.datetime
    roots: tuple[Path, ...] = ()
    calibration: str = ""


def select_records(records: Iterable[CaseRecord], scope: ExportScope, model_id: str, threshold: float,
                   selected: Sequence[CaseRecord] = ()) -> list[CaseRecord]:
    """The records an export covers: flagged ones, all, or the selection (in worklist order)."""
    if scope == "all":
        return list(records)
    if scope == "selected":
        return list(selected)
    if scope == "flagged":
        return [r for r in records if (s := r.scores.get(model_id)) is not None and s.score > threshold]
    raise ValueError(f"scope must be 'flagged', 'all' or 'selected', got {scope!r}")


def export_rows(records: Iterable[CaseRecord], ctx: ExportContext) -> list[dict[str, str]]:
    """The CSV rows (as text) for records."""
    mid = ctx.model.model_id
    id_mode = "real" if ctx.include_identifiers else f"pseudonym HMAC-SHA256 key {key_fingerprint(ctx.key)}"
    stamp = ctx.exported_at.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for rec in records:
        m = rec.meta
        score = rec.scores.get(mid)
        if not rec.readable:
            status = f"unreadable: {rec.error}"
        elif score is not None:
            status = "scored"
        elif mid in rec.out_of_scope:  # no score, neither flagged nor not flagged
            status = f"out of scope: {rec.out_of_scope[mid]}"
        elif mid in rec.score_errors:
            status = f"failed: {rec.score_errors[mid]}"
        else:
            status = "not scored"
        rows.append({
            "path": csv_text(export_path(rec.path, m, ctx)),
            "patient": _ref(m.patient_id or m.patient_name if m else None, "patient", ctx),
            "study": _ref(m.study_uid if m else None, "study", ctx),
            "series": _ref(m.series_uid if m else None, "series", ctx),
            "id_mode": id_mode,
            "view": csv_text(" ".join(p for p in ((m.view_position or "", m.modality or "") if m else ()) if p)),
            "score": f"{score.score:.9g}" if score else "",
            "percentile": f"{score.percentile:.3f}" if score else "",
            "flagged": ("1" if score.score > ctx.threshold else "0") if score else "",
            "threshold": f"{ctx.threshold:.9g}",
            "operating_point": csv_text(ctx.operating_point),
            "calibration": csv_text(ctx.calibration or ctx.model.calibration.label),
            "model_id": mid,
            "model_name": csv_text(ctx.model.name),
            "model_method": csv_text(f"{ctx.model.method}/{ctx.model.backbone}/{ctx.model.score_type}"),
            "model_created": csv_text(ctx.model.created),
            "model_software": csv_text(" ".join(f"{k} {v}" for k, v in sorted(ctx.model.software.items()))),
            "status": csv_text(status),
            "exported_at": stamp,
        })
    return rows


def write_export(path: Path, rows: Sequence[dict[str, str]], overwrite: bool = False) -> int:
    """Write rows to ``path`` atomically (UTF-8 with BOM for spreadsheets); returns the row count.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the folder cannot be written.
    """
    include_identifiers = any(r.get("id_mode") == "real" for r in rows)
    with atomic_path(path, overwrite=overwrite, private=include_identifiers) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8-sig") as f:
            writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def _ref(value: str | None, kind: Literal["patient", "study", "series"], ctx: ExportContext) -> str:
    if not value:
        return ""
    if ctx.include_identifiers:
        return csv_text(value.strip())
    return pseudonymise(value, ctx.key, kind)


def export_path(path: Path, meta: RadiographMeta | None, ctx: ExportContext) -> str:
    """The path column: full with identifiers; otherwise relative, identifying parts pseudonymised."""
    if ctx.include_identifiers:
        return str(path)
    relative: PurePath = PurePath(path.name)
    for root in sorted(ctx.roots, key=lambda r: len(r.parts), reverse=True):  # the innermost root
        if path != root and path.is_relative_to(root):
            relative = path.relative_to(root)
            break
    known = _identifier_words(meta)
    return "/".join(_path_part(part, known, ctx.key) for part in relative.parts)


def _identifier_words(meta: RadiographMeta | None) -> set[str]:
    """The case's header identifiers, and the words of the patient name, lower case."""
    if meta is None:
        return set()
    values = [meta.patient_id, meta.accession_number, meta.study_uid, meta.series_uid, meta.sop_uid, meta.study_date]
    words = {v.strip().lower() for v in values if v and len(v.strip()) >= 3}
    words |= {w.lower() for w in re.split(r"[\^\s,]+", meta.patient_name or "") if len(w) >= 3}
    return words


def _path_part(part: str, known: set[str], key: bytes) -> str:
    lower = part.lower()
    if not (_UID_LIKE.search(part) or "^" in part or _LONG_NUMBER.search(part) or any(w in lower for w in known)):
        return part
    stem, dot, ext = part.rpartition(".")
    if not dot or not ext.isalnum() or len(ext) > 5 or ext.isdigit():  # no extension (a UID's last number is none)
        stem, ext = part, ""
    return pseudonymise(stem, key, "path") + (f".{ext}" if ext else "")

