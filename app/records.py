"""Case records: what the worklist knows about one file (no Qt, no pixels).

A record is created by indexing (header only) and filled in by scoring. Scores are kept per
detector (``model_id``), so two detectors' results can sit side by side; the worklist shows
the active detector's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cxrscreen.engine.io import RadiographMeta
from cxrscreen.app.pseudonym import DISPLAY_DIGITS, pseudonymise


@dataclass(frozen=True)
class CaseScore:
    """One detector's result for one file.

    Attributes:
        score: the image score (higher = more anomalous).
        percentile: percent of the detector's calibration normals scoring lower (ties half).
        acquisition: the image's detail descriptor for the acquisition check
            (:mod:`engine.acquisition`) when it was scored with a reference to check it against
            (the study database keeps it); None otherwise.
    """

    score: float
    percentile: float
    acquisition: tuple[float, ...] | None = None


@dataclass
class CaseRecord:
    """One file in the worklist.

    Attributes:
        path: the file.
        meta: its header, or None when it could not be read.
        error: why the file cannot be read (header or pixels), else None.
        scores: results by detector model id.
        score_errors: why scoring failed, by detector model id.
        content: the file's content hash in the study database (None until known).
        out_of_scope: why the detector's out-of-scope gate refused the image, by model id.
    """

    path: Path
    meta: RadiographMeta | None = None
    error: str | None = None
    scores: dict[str, CaseScore] = field(default_factory=dict)
    score_errors: dict[str, str] = field(default_factory=dict)
    content: str | None = None
    out_of_scope: dict[str, str] = field(default_factory=dict)

    @property
    def readable(self) -> bool:
        """Whether the file can be shown and scored."""
        return self.error is None


def patient_text(meta: RadiographMeta | None, show_identifiers: bool, key: bytes) -> str:
    """The worklist's patient cell: name and id, or a pseudonym when identifiers are hidden."""
    if meta is None:
        return ""
    ident = meta.patient_id or meta.patient_name
    if not ident:
        return ""
    if show_identifiers:
        parts = [p for p in (meta.patient_name, meta.patient_id) if p]
        return " · ".join(dict.fromkeys(parts))
    return pseudonymise(ident, key, "patient", DISPLAY_DIGITS)


def study_text(meta: RadiographMeta | None, show_identifiers: bool, key: bytes) -> str:
    """The worklist's study cell: date and accession (or a pseudonym and the year only)."""
    if meta is None:
        return ""
    date = format_date(meta.study_date, full=show_identifiers)
    ident = meta.accession_number or meta.study_uid
    if show_identifiers:
        ref = meta.accession_number or (meta.study_uid[-12:] if meta.study_uid else "")
    else:
        ref = pseudonymise(ident, key, "study", DISPLAY_DIGITS) if ident else ""
    return " · ".join(p for p in (date, ref) if p)


def view_text(meta: RadiographMeta | None) -> str:
    """The worklist's view cell: view position and modality ("PA · DX")."""
    if meta is None:
        return ""
    return " · ".join(p for p in (meta.view_position, meta.modality) if p)


def format_date(value: str | None, full: bool = True) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD, or only the year when ``full`` is False.

    Dates are identifying (HIPAA Safe Harbor), so hidden identifiers keep the year only.
    """
    if not value:
        return ""
    v = value.strip()
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}" if full else v[:4]
    return v if full else v[:4]
