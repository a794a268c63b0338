"""CSV export of worklist results: pseudonymised by default, written atomically, never over a file
without the caller saying so.

One row per case: the file path, patient / study / series references (keyed pseudonyms, see
:mod:`app.pseudonym`, unless real identifiers are asked for), view, score, percentile among
normals, flag, the threshold and operating point, the detector's id, name and version, the
status and the export time (UTC). The ``id_mode`` column says which kind of reference the file
holds, with the key's fingerprint. File paths are written as they are: if folders are named
after patients, the paths identify them.

Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR)
are prefixed with ``'`` (OWASP CSV injection); numbers are written as numbers. No Qt.
"""
from __future__ import annotations

import csv
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from app.pseudonym import key_fingerprint, pseudonymise
from app.records import CaseRecord
from engine.atomic import atomic_path
from engine.detector import DetectorMetadata

ExportScope = Literal["flagged", "all", "selected"]
COLUMNS: tuple[str, ...] = (
    "path", "patient", "study", "series", "id_mode", "view", "score", "percentile", "flagged",
    "threshold", "operating_point", "model_id", "model_name", "model_method", "model_created",
    "model_software", "status", "exported_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportContext:
    """What every row shares.

    Attributes:
        model: the active detector's metadata.
        threshold: the flag threshold (flagged = score > threshold).
        operating_point: how the threshold was chosen ("95 % specificity...").
        include_identifiers: write real identifiers instead of pseudonyms.
        key: the pseudonym key.
        exported_at: the export time (UTC).
    """

    model: DetectorMetadata
    threshold: float
    operating_point: str
    include_identifiers: bool
    key: bytes
    exported_at: datetime.datetime


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
            "path": _text(str(rec.path)),
            "patient": _ref(m.patient_id or m.patient_name if m else None, "patient", ctx),
            "study": _ref(m.study_uid if m else None, "study", ctx),
            "series": _ref(m.series_uid if m else None, "series", ctx),
            "id_mode": id_mode,
            "view": _text(" ".join(p for p in ((m.view_position or "", m.modality or "") if m else ()) if p)),
            "score": f"{score.score:.9g}" if score else "",
            "percentile": f"{score.percentile:.3f}" if score else "",
            "flagged": ("1" if score.score > ctx.threshold else "0") if score else "",
            "threshold": f"{ctx.threshold:.9g}",
            "operating_point": _text(ctx.operating_point),
            "model_id": mid,
            "model_name": _text(ctx.model.name),
            "model_method": _text(f"{ctx.model.method}/{ctx.model.backbone}/{ctx.model.score_type}"),
            "model_created": _text(ctx.model.created),
            "model_software": _text(" ".join(f"{k} {v}" for k, v in sorted(ctx.model.software.items()))),
            "status": _text(status),
            "exported_at": stamp,
        })
    return rows


def write_export(path: Path, rows: Sequence[dict[str, str]], overwrite: bool = False) -> int:
    """Write rows to ``path`` atomically (UTF-8 with BOM for spreadsheets); returns the row count.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the folder cannot be written.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8-sig") as f:
            writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def _ref(value: str | None, kind: Literal["patient", "study", "series"], ctx: ExportContext) -> str:
    if not value:
        return ""
    if ctx.include_identifiers:
        return _text(value.strip())
    return pseudonymise(value, ctx.key, kind)


def _text(value: str) -> str:
    """Neutralise spreadsheet formulas in free text."""
    return "'" + value if value.startswith(_FORMULA_START) else value
