"""Adapting a site detector to a new acquisition batch with the reader's confirmed normals (no widgets).

Issue 22's measured adaptation (bench/RESULTS.md, "Adaptation to a new batch"): retrain the
detector with the new batch's reader-confirmed normals *added to its known normals*, so they
reach every part that learns what normal looks like (DDAD's modules A and B alike), while its
unlabeled folder stays as it was. Putting the new batch in the unlabeled folder instead made a
DDAD detector worse (module A alone learns the new batch, and the discrepancy then measures the
batch, not disease): that move is not offered.

:func:`write_adaptation_folder` builds the new known-normal folder without copying a pixel: a
link to the detector's own known-normal folder and a reader set of the confirmed normals
(``confirmed_normal/``, links, with ``reader_sets.json`` so the card counts the reader's
marks). :func:`training_job` finds the in-app training that made a library detector (its
folders, method and settings); a detector trained elsewhere has none, and then the app says how
to do the same by hand.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cxrscreen.app.reader_sets import SET_NAMES, export_reader_sets
from cxrscreen.app.training.job import JobRecord, find_jobs

MIN_CONFIRMED = 20  # fewer new normals than this cannot teach the batch (the bench used 40)
KNOWN_LINK = "known_normal"  # the link to the detector's own known-normal folder


class AdaptationError(ValueError):
    """Adaptation cannot be set up; the message says why and what to do, in one sentence."""


def training_job(runs_root: Path, model_id: str) -> JobRecord | None:
    """The newest in-app training job that registered ``model_id`` (None: trained elsewhere or its record is gone)."""
    return next((r for r in find_jobs(runs_root) if r.model_id == model_id and r.status == "registered"), None)


def write_adaptation_folder(known_normal: Path, confirmed: Sequence[Path], out: Path, reader: str) -> Path:
    """The adapted detector's known-normal folder under ``out``: the old known normals (one folder
    link) plus the confirmed normals of the new batch (a reader set of file links).

    Raises:
        AdaptationError: too few confirmed normals, the old folder is gone, or ``out`` exists.
    """
    confirmed = list(dict.fromkeys(Path(p) for p in confirmed))
    if len(confirmed) < MIN_CONFIRMED:
        raise AdaptationError(f"{len(confirmed)} confirmed normal{'s' if len(confirmed) != 1 else ''} in this worklist; "
                              f"adapting needs at least {MIN_CONFIRMED} (mark more with O)")
    known_normal = Path(known_normal)
    if not known_normal.is_dir():
        raise AdaptationError(f"the detector's known-normal folder {known_normal} is not there any more")
    known = known_normal.resolve()
    inside = [p for p in confirmed if p.resolve().is_relative_to(known)]
    if inside:
        raise AdaptationError(f"{len(inside)} confirmed normal(s) are already in the detector's known-normal folder "
                              f"(e.g. {inside[0].name}): this worklist is not a new batch")
    if out.exists() or out.is_symlink():
        raise AdaptationError(f"{out} already exists")
    out.mkdir(parents=True)
    os.symlink(known, out / KNOWN_LINK, target_is_directory=True)
    export_reader_sets(confirmed, [], out, "links", reader)
    empty = out / SET_NAMES["abnormal"]
    if empty.is_dir() and not any(empty.iterdir()):
        empty.rmdir()  # the reader set's empty confirmed-abnormal folder: nothing to train on
    return out


def explanation(n_confirmed: int, n_known: int | None, method_title: str) -> str:
    """What adapting does, when it helps and when it would hurt (the confirmation dialog's text)."""
    known = f"its {n_known:,} known normals" if n_known is not None else "its known normals"
    return (
        f"Retrain {method_title} with the same settings and folders, adding the {n_confirmed} confirmed normals "
        f"of this worklist to {known}. The detector file in use does not change: the adapted one is a new "
        f"library entry, checked and calibrated like any new detector.\n\n"
        "When it helps: this batch comes from another machine, protocol or site, and its normal studies score "
        "higher than the detector's normals (the drift banner says so). Measured on a simulated batch with DDAD "
        "and 40 confirmed normals: AUROC 0.850 → 0.916, specificity at the promised 95 % 0.43 → 0.78 (DDAD's "
        "default preset, three trainings: 0.905 → 0.920 and 0.88 → 0.93 on average, where 40 more normals of the "
        "old batch gave 0.902); with AMAE 0.780 → 0.929 and 0.05 → 0.83.\n\n"
        "When it hurts: the adapted detector can lose accuracy on the old batch (AMAE: AUROC 0.966 → 0.936 "
        "there; DDAD lost none), so keep the old detector for the old batch; a 'confirmed normal' that is not "
        "normal teaches the detector that finding as normal; "
        "a batch whose difference is disease, not acquisition, cannot be adapted away; fewer than about "
        f"{2 * MIN_CONFIRMED} new normals teach little; adding this batch to the unlabeled folder as well cost the "
        "old batch 0.05 AUROC (DDAD; training warns when the unlabeled images differ). After retraining, recalibrate on confirmed normals of "
        "this batch that were not used here (Detector ▸ Calibration)."
    )
