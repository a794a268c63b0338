"""Drift: does a batch of scores sit above the detector's calibration normals by more than its abnormal studies explain?

A detector's operating point ("95 % specificity") is a quantile of its calibration normals'
scores. On images from another acquisition batch the normals may score higher, and the promise
silently fails. Abnormal studies only add mass at high scores, so the *lower* part of a batch's
score distribution is made of normals; it is compared with the calibration normals.

The test. Let F be the calibration normals' score distribution (the population the ``m``
calibration scores were drawn from) and let a batch of ``n`` scores be a mixture
``(1 − π) F + π G`` of normals like the calibration's and abnormal studies with any distribution
``G``, with an abnormal share ``π ≤ π_max``. Then at every score ``t``

    P(batch score ≤ t) ≥ (1 − π_max) · F(t)        (stochastic-dominance bound)

whatever G is. At the calibration's ``j``-th smallest score ``t = c_(j)``, ``F(c_(j))`` is
Beta(j, m − j + 1)-distributed (the calibration set's own sampling uncertainty), and the count
``K`` of batch scores ``≤ t`` is Binomial(n, θ) with ``θ ≥ (1 − π_max) F(t)``, so

    p_j = E_{U ~ Beta(j, m − j + 1)} [ P(Binomial(n, (1 − π_max) U) ≤ k_j) ]

is a valid one-sided p-value for "no drift" (exact up to numerical integration; conservative
when π < π_max or when abnormal studies also score low). The test looks at the calibration
quantiles :data:`LEVELS` (the lower half carries the power on large batches, the upper ones on
small ones) and combines them by Tarone's Bonferroni for discrete tests: a level whose
smallest attainable p-value (``k_j = 0``, which depends on n and m only, not on the data) could
never reach ``alpha / K`` is left out, K being the least number with at most K levels left in;
drift is reported when ``K · min_j p_j < alpha`` over those (on 16 images only the upper levels
can reject at all, so they are not diluted by the others). Assumptions: the batch's images are independent, and normals of an unshifted batch
score like the calibration normals (the calibration normals are an unbiased sample of them).
Power (``bench/drift.py``, ``bench/RESULTS.md``): it needs a large shift on a small batch and
catches small ones on large batches; with 16 images it can only see a batch whose scores are
almost all above the calibration normals' 70th percentile.

The warning. A significant shift is not yet a broken promise: with hundreds of images the test
finds shifts that cost the promise a point or two, which no threshold set on 60 calibration
normals can promise to beat anyway. The reader is warned (:attr:`DriftReport.warning`) when the
test finds drift *and* the estimate below falls more than :data:`UNRELIABLE_POINTS` short of the
promise; a significant shift whose estimate stays within those points is a caution (it names the
estimate and asks for confirmed normals), as is an estimate short of the promise on a batch too
small to test. The warning's false-alarm rate on a batch like the calibration's is at most the
test's α. A formal test of "the promise fails by at most 5 points" (the null shifted by
δ₀ = Φ⁻¹(s) − Φ⁻¹(s − 0.05) on the normal-score scale) was tried and dropped: with π_max = 0.7 it
keeps too little power (600 images, 30 % abnormal, normals shifted by one standard deviation, the
promise at 74 %: warned in 17 % of simulated batches against 78 % for the rule above;
``bench/drift_margin.py``, ``bench/RESULTS.md``).
What no check of the lower part can see: a batch whose normals match the calibration's lower half
and differ only in the upper tail, or whose upper tail moved more than its lower part (the
estimate then errs towards the promise). For those, the acquisition check
(:mod:`engine.acquisition`) looks at the images instead of the scores; a report carries its result
(:attr:`DriftReport.acquisition`) and warns when the images differ from the detector's training
normals (or a site calibration's confirmed normals), the images' verdict first in the message.

The estimate. Scores are mapped to the calibration normals' normal scores ``z = Φ⁻¹(F̂(score))``
(F̂ smoothed so that no score is infinite). Assuming the batch's normals are shifted by ``δ`` on
that scale (the binormal model of ROC analysis, which holds for any monotone change of the
score), ``δ`` is the median over the lower levels ``q`` of ``z(batch quantile at q (1 − π_max))
− Φ⁻¹(q)``: the batch's lower part matched with the calibration's, with as much of the batch as
plausible set aside as abnormal. The promised specificity ``s`` then becomes ``Φ(Φ⁻¹(s) − δ)``
on the batch's normals (the held-out normals' ``s`` point: when the training-normal floor of
:meth:`NormalCalibration.threshold_at_specificity` sets a higher threshold, the batch's normals
get more than that, and the estimate errs towards a warning). π_max abnormal studies are
assumed, the reading of the batch most favourable to the promise; the binormal model is an
approximation, so the estimate can err either way (``bench/RESULTS.md`` compares it with the
specificity measured on labelled batches).

Numpy and the standard library only (the app has no scipy).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from cxrscreen.engine.acquisition import AcquisitionReport
from cxrscreen.engine.detector import NormalCalibration

LEVELS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
"""Calibration quantiles where the batch is compared (Tarone's Bonferroni over those that can reject)."""
MATCH_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
"""Lower normal quantiles matched for the specificity estimate."""
MAX_ABNORMAL_SHARE = 0.7
"""Default π_max: the data sets this project is measured on hold up to 63 % abnormal studies
(Kermany: 62.5 %; the dev protocol's unlabeled set 60 %); a screening worklist holds far fewer."""
ALPHA = 0.05
"""Default false-alarm level of the test, at the worst case π = π_max."""
MIN_IMAGES = 8
"""Fewer scores are not tested (the test could not reject anything)."""
UNRELIABLE_POINTS = 5.0
"""The promise is called unreliable when the estimate falls this many points short of it."""
RECALIBRATE = " Recalibrate on confirmed normals of this batch."
CONFIRM = " Confirm some normals of this batch to check the operating point."


@dataclass(frozen=True)
class DriftReport:
    """The drift check of one batch of scores against one calibration.

    Attributes:
        n: scores in the batch.
        n_calibration: calibration normals.
        max_abnormal_share: π_max, the largest abnormal share the test allows for.
        alpha: the test's level.
        p_value: one-sided p-value of "no drift", Bonferroni over the levels that can reject
            (Tarone; 1.0 when not tested).
        drift: whether the batch scores significantly higher than the calibration normals
            plus up to π_max abnormal studies explain.
        tested: False when the batch is too small to test (fewer than :data:`MIN_IMAGES`).
        levels: the calibration quantiles compared.
        batch_below: per level, the share of the batch at or below that calibration quantile.
        floor: per level, the least share an undrifted batch can have there ((1 − π_max) · level).
        shift_z: estimated shift δ of the batch's normals on the calibration's normal-score scale.
        specificity_promised: the promised specificity ``s``.
        specificity_estimated: ``Φ(Φ⁻¹(s) − δ)``, the specificity the batch's normals get at
            the promised threshold (an estimate, see the module docstring); None when not tested.
        unreliable: drift found and the estimate more than :data:`UNRELIABLE_POINTS` short of
            the promise: a warning (see :attr:`warning`).
        acquisition: the acquisition check of the same images (:mod:`engine.acquisition`), or
            None when it was not run (no reference: a detector made before it, or a site
            calibration made without its normals' descriptors).
    """

    n: int
    n_calibration: int
    max_abnormal_share: float
    alpha: float
    p_value: float
    drift: bool
    tested: bool
    levels: tuple[float, ...]
    batch_below: tuple[float, ...]
    floor: tuple[float, ...]
    shift_z: float | None
    specificity_promised: float
    specificity_estimated: float | None
    unreliable: bool
    acquisition: AcquisitionReport | None = None

    @property
    def estimate_short(self) -> bool:
        """The estimate falls more than :data:`UNRELIABLE_POINTS` short of the promise (with or
        without a significant test: on a small batch it is the only hint there is)."""
        return self.specificity_estimated is not None and \
            100 * (self.specificity_promised - self.specificity_estimated) > UNRELIABLE_POINTS

    @property
    def acquisition_differs(self) -> bool:
        """The images were acquired or processed unlike the reference normals (the detector's
        training normals, or a site calibration's confirmed normals; :mod:`engine.acquisition`)."""
        return self.acquisition is not None and self.acquisition.differs

    @property
    def warning(self) -> bool:
        """The reader is warned: significant drift with the promise estimated more than
        :data:`UNRELIABLE_POINTS` short (:attr:`unreliable`), or images acquired unlike the
        reference normals (:attr:`acquisition_differs`: the promise is unverified there,
        whatever the scores' lower part says)."""
        return self.unreliable or self.acquisition_differs

    @property
    def caution(self) -> bool:
        """Worth a look but no warning: a significant shift whose estimate stays within
        :data:`UNRELIABLE_POINTS` of the promise, or an estimate short of it on a batch too small to
        test."""
        return self.tested and not self.warning and (self.drift or self.estimate_short)

    @property
    def message(self) -> str:
        """One or two sentences for the reader (the CLI, the worklist banner, the database)."""
        text = self._score_message()
        if not self.acquisition_differs:
            return text
        # the images' verdict first (it is the warning), then what the scores say, without their own advice
        for advice in (RECALIBRATE, CONFIRM):
            text = text[:-len(advice)] if text.endswith(advice) else text
        return f"{self.acquisition.message} Confirm some normals of this batch and recalibrate. Scores: {text}"

    def _score_message(self) -> str:
        s = 100 * self.specificity_promised
        if not self.tested:
            return (f"{self.n} scored images are too few to check whether this folder scores like the "
                    f"calibration normals (at least {MIN_IMAGES} are needed).")
        e = None if self.specificity_estimated is None else round(100 * self.specificity_estimated)
        # "would get about 6 %" read as 6 % flagged: name the quantity, and the flag share it means
        est = "" if e is None else (
            f"at the {s:g} % specificity operating point its normals would get about {e} % specificity, "
            f"about {100 - e} % of them flagged (estimated from its lowest scores)")
        if not self.drift:
            text = (f"No drift detected: this folder's {self.n} scores are consistent with the {self.n_calibration} "
                    f"calibration normals plus up to {100 * self.max_abnormal_share:.0f} % abnormal studies "
                    f"(p = {self.p_value:.2g}).")
            if self.estimate_short:
                text += f" Too few images to be sure, though: {est}.{CONFIRM}"
            return text
        head = "This folder scores higher than the calibration normals"  # the detector's own or a site's
        why = (f"{self.n} scores, p = {self.p_value:.2g} even if {100 * self.max_abnormal_share:.0f} % of them were "
               f"abnormal")
        if self.unreliable:
            return f"{head}; its flag rate is not reliable: {est} ({why}).{RECALIBRATE}"
        return (f"This folder scores slightly higher than the calibration normals ({why}); {est}, within "
                f"{UNRELIABLE_POINTS:g} points of the promise.{CONFIRM}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["acquisition"] = None if self.acquisition is None else self.acquisition.to_dict()
        d["acquisition_differs"] = self.acquisition_differs
        d["message"] = self.message
        d["estimate_short"] = self.estimate_short
        d["warning"] = self.warning
        d["caution"] = self.caution
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DriftReport":
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k != "acquisition"}
        for k in ("levels", "batch_below", "floor"):
            fields[k] = tuple(float(v) for v in fields[k])
        acq = d.get("acquisition")  # records made before the acquisition check have none
        fields["acquisition"] = AcquisitionReport.from_dict(acq) if isinstance(acq, dict) else None
        return cls(**fields)


def check_drift(scores: np.ndarray, calibration: NormalCalibration, specificity: float = 0.95,
                max_abnormal_share: float = MAX_ABNORMAL_SHARE, alpha: float = ALPHA,
                acquisition: AcquisitionReport | None = None) -> DriftReport:
    """Test a batch of scores for drift above ``calibration``'s normals (see the module docstring).

    Args:
        scores: (n,) finite scores of the batch (images the detector scored; none refused).
        calibration: the calibration the operating point comes from.
        specificity: the promised specificity, in (0, 1).
        max_abnormal_share: π_max in [0, 1): the largest abnormal share the test allows for.
        alpha: the test's level, in (0, 1).
        acquisition: the acquisition check of the same images (:func:`engine.acquisition.check_acquisition`),
            carried in the report (its warning and message).

    Raises:
        ValueError: a parameter out of range, or non-finite scores.
    """
    if not 0.0 <= max_abnormal_share < 1.0:
        raise ValueError(f"max_abnormal_share must be in [0, 1), got {max_abnormal_share!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 < specificity < 1.0:
        raise ValueError(f"specificity must be in (0, 1), got {specificity!r}")
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if not np.all(np.isfinite(x)):
        raise ValueError("drift check: every score must be finite")
    cal = np.asarray(calibration.normal_scores, dtype=np.float64)
    n, m = len(x), len(cal)
    keep = 1.0 - max_abnormal_share
    floor = tuple(keep * q for q in LEVELS)
    if n < MIN_IMAGES:
        return DriftReport(n, m, max_abnormal_share, alpha, 1.0, False, False, LEVELS, (), floor, None,
                           specificity, None, False, acquisition)
    below, pvals, pmins = [], [], []
    for q in LEVELS:
        j = min(m, max(1, math.ceil(q * m)))  # the calibration's j-th smallest score, F(c_(j)) ~ Beta(j, m - j + 1)
        k = int(np.searchsorted(x, cal[j - 1], side="right"))
        below.append(k / n)
        pvals.append(_pvalue(k, n, j, m, keep))
        pmins.append(_pvalue(0, n, j, m, keep))
    p = tarone(pvals, pmins, alpha)
    shift = shift_estimate(x, calibration, max_abnormal_share)
    est = NormalDist().cdf(NormalDist().inv_cdf(specificity) - shift)
    drift = p < alpha
    unreliable = drift and 100 * (specificity - est) > UNRELIABLE_POINTS
    return DriftReport(n, m, max_abnormal_share, alpha, p, drift, True, LEVELS, tuple(below), floor, shift,
                       specificity, est, unreliable, acquisition)


def tarone(pvals: list[float], pmins: list[float], alpha: float) -> float:
    """Bonferroni over the tests that can reject (Tarone 1990), as a p-value compared with ``alpha``.

    K is the least number such that at most K tests have a smallest attainable p-value
    ``≤ alpha / K``; the result is ``K · min p`` over those tests (capped at 1). Tests that can
    never reach ``alpha / K`` cannot make a false alarm, so leaving them out keeps the
    family-wise error at ``alpha``. With no test able to reject, plain Bonferroni over all.
    """
    for k in range(1, len(pvals) + 1):
        eligible = [pv for pv, pm in zip(pvals, pmins) if pm <= alpha / k]
        if len(eligible) <= k:
            if not eligible:
                break
            return min(1.0, k * min(eligible))
    return min(1.0, len(pvals) * min(pvals))


def shift_estimate(scores: np.ndarray, calibration: NormalCalibration, abnormal_share: float) -> float:
    """δ: the shift of a batch's normals on the calibration's normal-score scale, from its lower part.

    The batch's quantile at ``q (1 − abnormal_share)`` is taken as its normals' ``q`` quantile
    (abnormal studies above them) for each ``q`` in :data:`MATCH_LEVELS`; δ is the median of
    ``z(that score) − Φ⁻¹(q)``.
    """
    x = np.asarray(scores, dtype=np.float64)
    qs = np.asarray(MATCH_LEVELS)
    b = np.quantile(x, qs * (1.0 - abnormal_share))
    z = normal_score(b, calibration)
    nd = NormalDist()
    return float(np.median(z - np.array([nd.inv_cdf(q) for q in qs])))


def normal_score(scores: np.ndarray, calibration: NormalCalibration) -> np.ndarray:
    """``Φ⁻¹`` of the calibration normals' smoothed distribution function at each score.

    F̂ = (#below + #equal / 2 + 1/2) / (m + 1), so the scale ends at ``±Φ⁻¹((m + 1/2) / (m + 1))``
    (± 2.6 for 120 normals) instead of infinity.
    """
    cal = np.asarray(calibration.normal_scores, dtype=np.float64)
    x = np.asarray(scores, dtype=np.float64)
    lo = np.searchsorted(cal, x, side="left")
    hi = np.searchsorted(cal, x, side="right")
    f = (0.5 * (lo + hi) + 0.5) / (len(cal) + 1.0)
    nd = NormalDist()
    return np.array([nd.inv_cdf(float(v)) for v in np.atleast_1d(f)]).reshape(np.shape(x))


def _pvalue(k: int, n: int, j: int, m: int, keep: float, grid: int = 2001) -> float:
    """E over U ~ Beta(j, m − j + 1) of P(Binomial(n, keep · U) ≤ k)."""
    if k >= n:
        return 1.0
    u, w = beta_quadrature(j, m, grid)
    return float(min(1.0, np.sum(w * binomial_cdf(k, n, keep * u))))


def beta_quadrature(j: int, m: int, grid: int = 2001) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of Beta(j, m − j + 1), the distribution of F at the
    calibration's j-th smallest of m scores: ``grid`` points within 14 standard deviations of its mean."""
    mean = j / (m + 1.0)
    sd = math.sqrt(mean * (1.0 - mean) / (m + 2.0))
    lo, hi = max(1e-12, mean - 14.0 * sd), min(1.0 - 1e-12, mean + 14.0 * sd)
    u = np.linspace(lo, hi, grid)
    log_pdf = (j - 1) * np.log(u) + (m - j) * np.log1p(-u)
    w = np.exp(log_pdf - log_pdf.max())
    return u, w / w.sum()


def binomial_cdf(k: int, n: int, p: np.ndarray) -> np.ndarray:
    """P(Binomial(n, p) ≤ k) for an array of p, as the regularised incomplete beta I_{1−p}(n − k, k + 1)."""
    p = np.asarray(p, dtype=np.float64)
    if k < 0:
        return np.zeros_like(p)
    if k >= n:
        return np.ones_like(p)
    return _betainc(float(n - k), float(k + 1), 1.0 - p)


def _betainc(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """Regularised incomplete beta function I_x(a, b), vectorised over x (Lentz's continued fraction)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    out = np.empty_like(x)
    out[x <= 0.0] = 0.0
    out[x >= 1.0] = 1.0
    inner = (x > 0.0) & (x < 1.0)
    if not inner.any():
        return out
    xi = x[inner]
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)) + a * np.log(xi) + b * np.log1p(-xi)
    direct = xi < (a + 1.0) / (a + b + 2.0)  # the continued fraction converges fast here; else use symmetry
    res = np.empty_like(xi)
    res[direct] = np.exp(log_front[direct]) * _betacf(a, b, xi[direct]) / a
    sym = ~direct
    res[sym] = 1.0 - np.exp(log_front[sym]) * _betacf(b, a, 1.0 - xi[sym]) / b
    out[inner] = np.clip(res, 0.0, 1.0)
    return out


def _betacf(a: float, b: float, x: np.ndarray, max_iter: int = 400, eps: float = 1e-13) -> np.ndarray:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for mm in range(1, max_iter + 1):
        m2 = 2 * mm
        aa = mm * (b - mm) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h *= d * c
        aa = -(a + mm) * (qab + mm) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h *= delta
        if np.all(np.abs(delta - 1.0) < eps):
            break
    return h
