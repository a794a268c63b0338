"""Acquisition check: were this folder's images acquired and processed like the detector's training normals?

The drift test (:mod:`engine.drift`) reads only the lower part of a batch's scores, because
abnormal studies may fill the upper part. A shift that moves only the normals' upper tail is
invisible to it (narrower framing, a mix of shifts: ``bench/RESULTS.md``, "WSCXR and MSACL under
the later shifts, retrained"). This check looks at the images instead of the scores, at a
property that disease hardly changes but acquisition and post-processing set: how strongly each
image shows detail at four scales.

The descriptor. Each image is cropped to its exposed field, resized to 64 × 64 and equalised
(:data:`DESCRIPTOR_SPEC`, the same shared :func:`engine.preprocess.preprocess` every detector
uses, fixed here whatever the detector's own preprocessing), split into four
difference-of-Gaussian detail bands (:func:`engine.preprocess.band_strengths`, σ 1–8 pixels) and
described by each band's share of the total detail strength (four numbers summing to 1). Another
system's unsharp masking, dynamic-range compression, resolution, collimation or framing moves
these shares; pneumonia moves them little (measured on the dev protocol's 300 labelled abnormal
images of the unlabeled pool against its 600 known normals, never dev_test: the largest effect
is on the coarsest band, where an abnormal image exceeds a normal one in 67 % of pairs).

The test. For each band ``d``, ``A_d`` is the Mann–Whitney probability that a batch image's
share exceeds a reference normal's (ties half); a batch like the reference has ``A_d = 1/2``
plus what its abnormal studies add, at most ``π_max · 0.17`` with the effect above and up to
``π_max = 0.7`` abnormal studies (the drift test's allowance): :data:`TOLERANCE` = 0.12. The
null hypothesis ``|A_d − 1/2| ≤ TOLERANCE`` is tested one-sided in the observed direction with
DeLong's variance of ``A_d`` (normal approximation), Bonferroni over both directions of the
four bands: the batch's acquisition *differs* when ``8 · min_d p_d < alpha``. The reference is
the detector's known normals (training and calibration normals alike: the descriptor does not
depend on what the detector learned), at most :data:`MAX_REFERENCE`, stored in the detector's
``scope`` metadata when it is trained (``scope["acquisition"]``); detectors made before have
none and are not checked.

What it means. A batch that differs was acquired or processed unlike anything the detector was
trained and calibrated on, so neither its scores nor its flag rate have been verified there,
even where the score test sees nothing; the reader is warned and asked to confirm normals of
this batch. A site calibration made on them keeps their descriptors (``cxrscreen recalibrate``,
or marks in the app when the scores carry descriptors): while it is in use, folders are checked
against the site's normals instead, and a detector that stores no reference gains the check.
The warning does not say the promise fails: some detectors hold on some such batches
(``bench/acquisition.py``, ``bench/RESULTS.md`` measure both).

At training (:func:`check_unlabeled`), the same test compares the unlabeled images with the known
normals. A dual-distribution method (DDAD, AMAE) learns whatever tells the two sets apart, so an
unlabeled set acquired otherwise (another system, another batch: the issue's failed adaptation)
can make the detector measure the acquisition instead of disease (``bench/RESULTS.md``, "The
unlabeled set acquired otherwise": an off-centre batch as DDAD's unlabeled set took the promise on
that batch from 86 % to 53 % specificity; a hazier one did no harm). ``cxrscreen train`` warns
before training, and the detector keeps the result (``scope["unlabeled_acquisition"]``, shown on
its card). It assumes, as for a folder, at most 70 % abnormal images in the unlabeled set.

What it cannot see: shifts that change intensity only (exposure, window: equalisation removes
them, as it does for the detectors) and shifts smaller than the tolerance.

Numpy and the standard library only (the app has no scipy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from cxrscreen.engine.preprocess import PreprocessSpec, band_strengths, finish, geometry

FEATURE_NAME = "band-shares-64-field-equalize-v1"
DESCRIPTOR_SPEC = PreprocessSpec(size=64, aspect="stretch", intensity="equalize", crop="field")
BANDS: tuple[str, ...] = ("finest", "fine", "medium", "coarse")
"""The four detail bands (σ 0–1, 1–2, 2–4 and 4–8 pixels at 64 px)."""
TOLERANCE = 0.12
"""Largest |A − 1/2| a batch like the reference may show (π_max 0.7 × the largest disease effect 0.17)."""
ALPHA = 0.05
MIN_IMAGES = 8
MAX_REFERENCE = 600
AGAINST = "the detector's training normals"
KNOWN_NORMALS = "the known normals"


def descriptor(pixels: np.ndarray) -> np.ndarray:
    """The four detail bands' shares of an image's detail strength (float64, (4,), summing to 1).

    ``pixels``: decoded display pixels in [0, 1] (:attr:`Radiograph.pixels`), any size.
    A flat image (no detail) gets equal shares.
    """
    return descriptor_of_geometry(geometry(pixels, DESCRIPTOR_SPEC))


def descriptor_of_geometry(resized: np.ndarray) -> np.ndarray:
    """:func:`descriptor` from :func:`engine.preprocess.geometry` of the image at
    :data:`DESCRIPTOR_SPEC` (already computed when a detector's spec has the same geometry)."""
    x = (finish(resized, DESCRIPTOR_SPEC).astype(np.float64) + 1.0) / 2.0
    b = band_strengths(x)
    total = float(b.sum())
    return b / total if total > 0 and math.isfinite(total) else np.full(len(BANDS), 1.0 / len(BANDS))


def p_text(p: float) -> str:
    """"p = 0.0017", or "p < 1e-12" where the normal approximation's tail underflows to 0."""
    return "p < 1e-12" if p < 1e-12 else f"p = {p:.2g}"


def as_descriptor(value: Any) -> tuple[float, ...] | None:
    """A descriptor read from JSON (a list of four finite numbers), or None when it is not one."""
    if not isinstance(value, (list, tuple)) or len(value) != len(BANDS):
        return None
    try:
        d = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return d if all(math.isfinite(v) for v in d) else None


@dataclass(frozen=True)
class AcquisitionReference:
    """The detector's known normals' descriptors: per band, their sorted shares."""

    values: tuple[tuple[float, ...], ...]
    feature: str = FEATURE_NAME

    def __post_init__(self) -> None:
        if len(self.values) != len(BANDS):
            raise ValueError(f"an acquisition reference has {len(BANDS)} bands, got {len(self.values)}")
        n = {len(v) for v in self.values}
        if len(n) != 1 or n.pop() < 2:
            raise ValueError("an acquisition reference needs the same number (>= 2) of values per band")
        for v in self.values:
            a = np.asarray(v, dtype=np.float64)
            if not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0):
                raise ValueError("acquisition reference values must be finite and sorted")

    @property
    def n(self) -> int:
        return len(self.values[0])

    @classmethod
    def from_descriptors(cls, descriptors: np.ndarray) -> "AcquisitionReference":
        """From (N, 4) descriptors (at most :data:`MAX_REFERENCE` kept: a fixed subset beyond)."""
        d = np.asarray(descriptors, dtype=np.float64)
        if d.ndim != 2 or d.shape[1] != len(BANDS):
            raise ValueError(f"descriptors must be (N, {len(BANDS)}), got {d.shape}")
        if len(d) > MAX_REFERENCE:
            d = d[np.sort(np.random.default_rng(0).choice(len(d), MAX_REFERENCE, replace=False))]
        return cls(tuple(tuple(round(float(v), 6) for v in np.sort(d[:, k])) for k in range(len(BANDS))))

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "bands": list(BANDS), "values": [list(v) for v in self.values]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AcquisitionReference":
        if d.get("feature") != FEATURE_NAME:
            raise ValueError(f"unknown acquisition feature {d.get('feature')!r} (this version reads {FEATURE_NAME})")
        return cls(tuple(tuple(float(v) for v in band) for band in d["values"]), FEATURE_NAME)

    @classmethod
    def stored_in(cls, container: dict[str, Any] | None) -> "AcquisitionReference | None":
        """The reference stored under ``"acquisition"`` in a detector's ``scope`` metadata or a site
        calibration's dict, or None (made before the check, too few images, or a feature this
        version does not read)."""
        d = (container or {}).get("acquisition")
        if not isinstance(d, dict):
            return None
        try:
            return cls.from_dict(d)
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class AcquisitionReport:
    """The acquisition check of one batch.

    Attributes:
        n: images in the batch with a descriptor.
        n_reference: reference normals.
        tested: False when the batch is too small (fewer than :data:`MIN_IMAGES`).
        differs: the batch's detail differs from the reference's beyond :data:`TOLERANCE`.
        p_value: Bonferroni p-value of "within the tolerance" (1.0 when not tested).
        auc: per band, P(batch share > reference share), ties half.
        tolerance: the tolerance on ``|auc − 1/2|``.
        alpha: the test's level.
        against: the reference normals, in words (the message names them).
        subject: ``"folder"`` (a folder to score) or ``"unlabeled"`` (a training's unlabeled images
            against its known normals, :func:`check_unlabeled`): what the message speaks of.
    """

    n: int
    n_reference: int
    tested: bool
    differs: bool
    p_value: float
    auc: tuple[float, ...]
    tolerance: float = TOLERANCE
    alpha: float = ALPHA
    against: str = AGAINST
    subject: str = "folder"

    def __post_init__(self) -> None:
        if self.subject not in ("folder", "unlabeled"):
            raise ValueError(f"an acquisition report's subject is 'folder' or 'unlabeled', not {self.subject!r}")

    @property
    def largest(self) -> str:
        """The band that differs most, in words (a folder: "its coarse detail is stronger than theirs in
        71 % of image pairs"; unlabeled images: "their coarse detail is stronger than the known
        normals' in …"); empty when not tested."""
        if not self.tested:
            return ""
        k = int(np.argmax(np.abs(np.asarray(self.auc) - 0.5)))
        a = self.auc[k]
        way = "stronger" if a > 0.5 else "weaker"
        share = a if a > 0.5 else 1.0 - a
        whose, than = ("their", "the known normals'") if self.subject == "unlabeled" else ("its", "theirs")
        return f"{whose} {BANDS[k]} detail is {way} than {than} in {100 * share:.0f} % of image pairs"

    @property
    def message(self) -> str:
        """What the reader or trainer is told (empty when nothing is to be said): one sentence for a
        folder; for unlabeled images, also what it can do to a detector and what to do."""
        if not self.tested or not self.differs:
            return ""
        evidence = (f"{self.largest} (at most {100 * (0.5 + self.tolerance):.0f} % expected from disease; "
                    f"{p_text(self.p_value)})")
        if self.subject == "unlabeled":
            return (f"The unlabeled images were acquired or processed unlike {self.against}: {evidence}. A detector "
                    "that contrasts the two sets (DDAD, AMAE) can learn that difference instead of disease and flag "
                    "the normals of a batch like the unlabeled images (measured: another batch as the unlabeled set "
                    "flagged 47 % of its normals at the promised 5 %); take both sets from the same acquisition, or "
                    "add confirmed normals of the new batch to the known normals instead. If both do come from one "
                    "acquisition, this site's findings change the images more than the check allows, and folders "
                    "with many abnormal studies will be warned.")
        return (f"This folder's images were acquired or processed unlike {self.against}: {evidence}, so its scores "
                f"and flag rate are unverified here.")

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "n_reference": self.n_reference, "tested": self.tested, "differs": self.differs,
                "p_value": self.p_value, "auc": list(self.auc), "tolerance": self.tolerance, "alpha": self.alpha,
                "bands": list(BANDS), "against": self.against, "subject": self.subject, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AcquisitionReport":
        return cls(int(d["n"]), int(d["n_reference"]), bool(d["tested"]), bool(d["differs"]), float(d["p_value"]),
                   tuple(float(v) for v in d["auc"]), float(d.get("tolerance", TOLERANCE)), float(d.get("alpha", ALPHA)),
                   str(d.get("against", AGAINST)), str(d.get("subject", "folder")))


def mann_whitney_delong(batch: np.ndarray, reference_sorted: np.ndarray) -> tuple[float, float]:
    """P(batch value > reference value) (ties half) and DeLong's standard error of it."""
    b = np.asarray(batch, dtype=np.float64)
    r = np.asarray(reference_sorted, dtype=np.float64)
    bs = np.sort(b)
    v10 = (np.searchsorted(r, b, "left") + np.searchsorted(r, b, "right")) / (2.0 * len(r))
    v01 = 1.0 - (np.searchsorted(bs, r, "left") + np.searchsorted(bs, r, "right")) / (2.0 * len(b))
    var = (v10.var(ddof=1) / len(b) if len(b) > 1 else 0.0) + (v01.var(ddof=1) / len(r) if len(r) > 1 else 0.0)
    return float(v10.mean()), math.sqrt(max(var, 0.0))


def check_acquisition(descriptors: np.ndarray, reference: AcquisitionReference, tolerance: float = TOLERANCE,
                      alpha: float = ALPHA, against: str = AGAINST) -> AcquisitionReport:
    """Test a batch's (n, 4) descriptors against ``reference`` (see the module docstring);
    ``against`` names the reference normals in the report's message.

    Raises:
        ValueError: a parameter out of range, or descriptors of the wrong shape or not finite.
    """
    if not 0.0 <= tolerance < 0.5:
        raise ValueError(f"tolerance must be in [0, 0.5), got {tolerance!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    d = np.asarray(descriptors, dtype=np.float64).reshape(-1, len(BANDS)) if np.size(descriptors) else \
        np.zeros((0, len(BANDS)))
    if not np.all(np.isfinite(d)):
        raise ValueError("acquisition check: every descriptor must be finite")
    if len(d) < MIN_IMAGES:
        return AcquisitionReport(len(d), reference.n, False, False, 1.0, (), tolerance, alpha, against)
    aucs, pvals = [], []
    nd = NormalDist()
    for k in range(len(BANDS)):
        a, se = mann_whitney_delong(d[:, k], np.asarray(reference.values[k]))
        aucs.append(a)
        excess = abs(a - 0.5) - tolerance
        # se 0 (every pair one way): the excess alone decides
        pvals.append(1.0 - nd.cdf(excess / se) if se > 0 else (0.0 if excess > 0 else 1.0))
    p = min(1.0, 2 * len(BANDS) * min(pvals))
    return AcquisitionReport(len(d), reference.n, True, p < alpha, p, tuple(aucs), tolerance, alpha, against)


def check_unlabeled(descriptors: np.ndarray, reference: AcquisitionReference) -> AcquisitionReport:
    """A training's unlabeled images (their (n, 4) descriptors) against its known normals'
    ``reference``: were they acquired alike? The folder test and tolerance (so it assumes at most
    70 % abnormal images among them); the report's message speaks of the training sets."""
    report = check_acquisition(descriptors, reference, against=KNOWN_NORMALS)
    return replace(report, subject="unlabeled")


def unlabeled_verdict(scope: dict[str, Any] | None) -> str:
    """What a detector's ``scope["unlabeled_acquisition"]`` (:func:`check_unlabeled`, stored by
    training) says, in words, for its card and ``cxrscreen export``: "⚠ " and the warning, or that
    the sets were acquired alike; empty when the detector stores no such check (made before it, or
    trained without enough unlabeled images) or it cannot be read."""
    d = (scope or {}).get("unlabeled_acquisition")
    try:
        r = AcquisitionReport.from_dict(d) if isinstance(d, dict) else None
    except (KeyError, TypeError, ValueError):
        r = None
    if r is None or not r.tested:
        return ""
    if r.differs:
        return "⚠ " + r.message
    return (f"acquired like the known normals ({r.n} checked against {r.n_reference}; the largest difference, "
            f"{r.largest}, is within the {100 * (0.5 + r.tolerance):.0f} % disease may explain)")
