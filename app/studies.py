"""Studies, not only files: DICOM images grouped by patient, study and series (Qt-free).

Clinicians read studies: a chest examination is often a frontal and a lateral view, sometimes
several series, and the question asked of it is whether the *study* needs a look. So the
worklist's DICOM files are grouped by their headers' StudyInstanceUID (and, within a study, by
SeriesInstanceUID); files without a study UID (PNG and JPEG folders, anonymised DICOMs) stay
files. A study's row carries its most suspicious frontal image (the highest score among its
frontal images scored by the active detector) and opens on it.

Laterals. The detectors read frontal views: the out-of-scope gate (:mod:`engine.scope`)
refuses lateral and oblique view positions, so a lateral is listed with its study and can be
shown, but it never carries the study's score ("lateral, not scored").

Reading state. A study is read when every one of its images is (the lateral too: it is part of
the examination), partly read when some are, unread when none is; the per-file states are the
reading session's (:class:`app.session.ReadingSession`), nothing is stored per study.

Earlier studies. Studies of the same patient (PatientID, else the patient's name) dated before
the current one are its priors, newest first; the compare view shows one beside the current
study. The patient identifiers used for this grouping are the header summary the worklist
already holds (and the study database already stores for display): nothing more is stored,
and none of it is written to the audit trail.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cxrscreen.app.records import CaseRecord
from cxrscreen.engine.io import RadiographMeta
from cxrscreen.engine.scope import LATERAL_VIEWS

LATERAL_TEXT = "lateral, not scored"
StudyReading = Literal["unread", "partly read", "read"]
STUDY_READINGS: tuple[StudyReading, ...] = ("unread", "partly read", "read")


def is_lateral(meta: RadiographMeta | None) -> bool:
    """Whether the header names a lateral or oblique view (the scope gate refuses these)."""
    view = (meta.view_position or "").strip().upper() if meta is not None else ""
    return view in LATERAL_VIEWS


@dataclass(frozen=True)
class StudyImage:
    """One image of a study.

    Attributes:
        path: the file.
        series_uid: its series ("" when the header has none).
        view: its view position as in the header ("" when absent).
        lateral: whether it is a lateral or oblique view (not scored as a frontal).
    """

    path: Path
    series_uid: str
    view: str
    lateral: bool


@dataclass(frozen=True)
class Study:
    """The images of one study, series by series.

    Attributes:
        uid: the StudyInstanceUID.
        patient: the patient's identifier as in the header (PatientID, else the name; "" when
            neither): kept in memory to find earlier studies, never stored or audited.
        date: the study date (YYYYMMDD, "" when absent).
        images: its images, series by series (by their first file name), files by name.
    """

    uid: str
    patient: str
    date: str
    images: tuple[StudyImage, ...]

    @property
    def series(self) -> dict[str, list[StudyImage]]:
        """Images by series UID, in order."""
        out: dict[str, list[StudyImage]] = {}
        for image in self.images:
            out.setdefault(image.series_uid, []).append(image)
        return out

    @property
    def frontal(self) -> list[StudyImage]:
        """The images a detector scores (not lateral or oblique)."""
        return [i for i in self.images if not i.lateral]

    def image(self, path: Path) -> StudyImage | None:
        """The image of this file, or None when the file is not in the study."""
        return next((i for i in self.images if i.path == path), None)


@dataclass(frozen=True)
class StudyLead:
    """The image a study's row stands for, and what it says.

    Attributes:
        path: the most suspicious frontal image scored (else the first frontal image, else the
            first image).
        score: its score by the active detector (None: no frontal image scored yet).
        flagged: whether it is flagged at the current operating point.
        scored: how many of the study's frontal images are scored.
    """

    path: Path
    score: float | None
    flagged: bool
    scored: int


def group_studies(records: Iterable[CaseRecord]) -> tuple[list[Study], list[Path]]:
    """Group DICOM files by study (and series); everything else stays a file.

    Args:
        records: the worklist's records, in worklist order.

    Returns:
        (studies in the worklist order of their first image, files that belong to no study in
        worklist order).
    """
    grouped: dict[str, list[tuple[CaseRecord, RadiographMeta]]] = {}  # in worklist order of first image
    files: list[Path] = []
    for rec in records:
        meta = rec.meta
        if meta is None or meta.format != "dicom" or not meta.study_uid:
            files.append(rec.path)
            continue
        grouped.setdefault(meta.study_uid, []).append((rec, meta))
    studies = []
    for uid, members in grouped.items():
        # series and files by file name, not by worklist order: a re-sort never reorders a study
        first_name: dict[str, str] = {}
        for rec, meta in members:
            key = meta.series_uid or ""
            first_name[key] = min(first_name.get(key, rec.path.name), rec.path.name)
        members.sort(key=lambda m: (first_name[m[1].series_uid or ""], m[1].series_uid or "", m[0].path.name))
        patient = next((m.patient_id or m.patient_name or "" for _r, m in members if m.patient_id or m.patient_name), "")
        date = next((m.study_date.strip() for _r, m in members if m.study_date), "")
        images = tuple(StudyImage(r.path, m.series_uid or "", (m.view_position or "").strip(), is_lateral(m))
                       for r, m in members)
        studies.append(Study(uid, patient.strip(), date, images))
    return studies, files


def study_lead(study: Study, score: Callable[[Path], float | None], flagged: Callable[[Path], bool]) -> StudyLead:
    """The image a study's row stands for: its most suspicious frontal image.

    Args:
        study: the study.
        score: the active detector's score of a file (None: not scored, failed or out of scope).
        flagged: whether a file is flagged at the current operating point.
    """
    frontal = study.frontal
    scored = [(s, i.path) for i in frontal if (s := score(i.path)) is not None]
    if scored:
        best, path = max(scored, key=lambda t: t[0])
        return StudyLead(path, best, bool(flagged(path)), len(scored))
    path = frontal[0].path if frontal else study.images[0].path
    return StudyLead(path, None, False, 0)


def order_studies(studies: Sequence[Study], leads: Mapping[str, StudyLead]) -> list[str]:
    """The Studies list's order: patient by patient, each patient's studies together and newest
    first (a study, then its priors), patients placed as the worklist places cases: flagged
    first, then by score, by their most suspicious study.

    Args:
        studies: the studies (ties keep this order).
        leads: each study's lead, by UID.

    Returns:
        the study UIDs in order. Studies of no known patient are each a patient of their own;
        undated studies come after the patient's dated ones.
    """
    def rank(uid: str) -> tuple[int, float]:
        lead = leads[uid]
        return (0 if lead.flagged else 1, -lead.score if lead.score is not None else float("inf"))
    patients: dict[tuple[bool, str], list[Study]] = {}
    for study in studies:
        patients.setdefault((True, study.patient) if study.patient else (False, study.uid), []).append(study)
    ordered = sorted(patients.values(), key=lambda group: min(rank(s.uid) for s in group))
    return [s.uid for group in ordered for s in sorted(group, key=lambda s: s.date, reverse=True)]


def earlier_studies(studies: Sequence[Study], study: Study) -> list[Study]:
    """The same patient's studies dated before ``study``, newest first.

    Studies without a date, or of a patient without an identifier, cannot be placed in time
    and are not called earlier.
    """
    if not study.patient or not study.date:
        return []
    earlier = [s for s in studies if s.uid != study.uid and s.patient == study.patient and s.date
               and s.date < study.date]
    return sorted(earlier, key=lambda s: s.date, reverse=True)


def earlier_by_study(studies: Sequence[Study]) -> dict[str, list[Study]]:
    """:func:`earlier_studies` of every study at once, by study UID (linear in the studies of
    each patient, not in all studies: a worklist of 5,000 studies is listed in one pass)."""
    by_patient: dict[str, list[Study]] = {}
    for study in studies:
        if study.patient and study.date:
            by_patient.setdefault(study.patient, []).append(study)
    return {s.uid: earlier_studies(by_patient.get(s.patient, ()), s) for s in studies}


def study_reading(study: Study, is_read: Callable[[Path], bool]) -> StudyReading:
    """A study's reading state from its images': read when all are, partly read when some are.

    Args:
        study: the study.
        is_read: whether a file is read (or reviewed) in the reading session.
    """
    n = sum(1 for image in study.images if is_read(image.path))
    return "unread" if n == 0 else ("read" if n == len(study.images) else "partly read")


@dataclass(frozen=True)
class StudyProgress:
    """How far the reading of some studies has come.

    Attributes:
        studies: how many studies.
        read: how many are read (every image).
        partly: how many are partly read.
        flagged_unread: how many flagged studies are not read yet (unread or partly read).
    """

    studies: int
    read: int
    partly: int
    flagged_unread: int

    def text(self, flags: bool = True) -> str:
        """E.g. "12 of 40 studies read, 2 partly, 3 flagged unread" (``flags``: say the last part)."""
        text = f"{self.read:,} of {self.studies:,} stud{'y' if self.studies == 1 else 'ies'} read"
        if self.partly:
            text += f", {self.partly:,} partly"
        if flags:
            text += f", {self.flagged_unread:,} flagged unread"
        return text


def study_progress(uids: Iterable[str], reading: Mapping[str, StudyReading],
                   flagged: Mapping[str, bool]) -> StudyProgress:
    """Count the reading states of these studies (by UID, in ``reading`` and ``flagged``)."""
    states = [(reading[u], flagged[u]) for u in uids]
    return StudyProgress(len(states), sum(1 for r, _f in states if r == "read"),
                         sum(1 for r, _f in states if r == "partly read"),
                         sum(1 for r, f in states if f and r != "read"))


def next_study(order: Sequence[str], current: str | None, step: int) -> str | None:
    """The study ``step`` rows from ``current`` in the list's order (J: +1, K: -1), without wrapping.

    Returns:
        its UID; None at either end (or in an empty list). With no current study, J starts at the
        first and K at the last.
    """
    if step not in (-1, 1):
        raise ValueError(f"step must be -1 or 1, got {step!r}")
    if not order:
        return None
    if current not in order:
        return order[0] if step > 0 else order[-1]
    i = order.index(current) + step
    return order[i] if 0 <= i < len(order) else None


def next_unread_flagged_study(order: Sequence[str], current: str | None, reading: Mapping[str, StudyReading],
                              flagged: Mapping[str, bool]) -> str | None:
    """N: the next flagged study below ``current`` that is not read yet (wrapping, as the
    worklist's N), or None when there is none (the current study counts only as the last one tried)."""
    start = order.index(current) if current in order else -1
    for k in range(1, len(order) + 1):
        uid = order[(start + k) % len(order)]
        if flagged[uid] and reading[uid] != "read":
            return uid
    return None
