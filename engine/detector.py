"""A detector on disk: one ONNX graph plus its metadata, and the onnxruntime session that runs it.

Contract of every exported detector graph (all methods):
    input  ``image``   float32 (N, 1, S, S), preprocessed with the stored :class:`PreprocessSpec`
    output ``score``   float32 (N,), higher = more anomalous
    output ``heatmap`` float32 (N, S, S), the anomaly map whose mean (or method-specific
                       pooling) is the score; aligned with the preprocessed input

The metadata (JSON under the ONNX ``metadata_props`` key ``cxrscreen.detector``) holds the
method, preprocessing, a calibration on held-out known normals (all their scores, and quantiles
of their heatmap values), the training summary and a unique model id.

Torch-free: used by ``cxrscreen score`` and by the desktop app.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cxrscreen.engine.acquisition import AcquisitionReference
from cxrscreen.engine.preprocess import PreprocessSpec
from cxrscreen.engine.scope import ScopeGate

logger = logging.getLogger(__name__)

METADATA_KEY = "cxrscreen.detector"
SCHEMA_VERSION = 1
INPUT_NAME = "image"
SCORE_NAME = "score"
HEATMAP_NAME = "heatmap"

ProviderChoice = Literal["auto", "cuda", "cpu"]
# how a specificity threshold is estimated from the calibration normals (NormalCalibration)
ThresholdMethod = Literal["harrell-davis", "higher"]
THRESHOLD_METHODS: tuple[str, ...] = ("harrell-davis", "higher")
TRAINING_FLOOR_MAX = 300
"""Training normals scored for the threshold's floor (a fixed random subset beyond): enough for a
99 % threshold, a bounded cost on a slow preset."""


class DetectorError(ValueError):
    """A detector file is missing, unreadable, or lacks valid cxrscreen metadata.

    Attributes:
        path: the file.
        reason: what is wrong.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion ``k / n``.

    Found by bisection on the binomial distribution function (numpy only: the app has no
    scipy): the lower bound is the p with P(X >= k) = α/2, the upper the p with P(X <= k) = α/2.
    """
    if not (0 <= k <= n and n >= 1):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    import math

    alpha = (1.0 - level) / 2.0
    log_comb = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)]

    def cdf(x: int, p: float) -> float:  # P(X <= x)
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 1.0 if x >= n else 0.0
        lp, lq = math.log(p), math.log1p(-p)
        return float(min(1.0, sum(math.exp(log_comb[i] + i * lp + (n - i) * lq) for i in range(x + 1))))

    def solve(f) -> float:  # f increasing in p, root in [0, 1]
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return 0.5 * (lo + hi)

    lower = 0.0 if k == 0 else solve(lambda p: (1.0 - cdf(k - 1, p)) - alpha)
    upper = 1.0 if k == n else solve(lambda p: alpha - cdf(k, p))
    return lower, upper


def regularized_incomplete_beta(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """I_x(a, b), the Beta(a, b) distribution function at ``x`` (numpy only: the base profile has no scipy).

    The continued fraction of Numerical Recipes (``betacf``, modified Lentz), evaluated for all
    ``x`` at once, on the side of the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where it converges
    fast; equal to ``scipy.special.betainc`` within 1e-10 up to a + b = 10,000 (tests/engine/test_calibration.py).

    Args:
        a: first shape parameter, > 0.
        b: second shape parameter, > 0.
        x: points in [0, 1].
    """
    import math

    if not (a > 0.0 and b > 0.0):
        raise ValueError(f"need a > 0 and b > 0, got a={a!r}, b={b!r}")
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    flip = x >= (a + 1.0) / (a + b + 2.0)
    aa, bb = np.where(flip, b, a), np.where(flip, a, b)
    xx = np.where(flip, 1.0 - x, x)
    inner = (xx > 0.0) & (xx < 1.0)
    xs = np.where(inner, xx, 0.5)  # placeholders where the answer is exact
    tiny = 1e-300
    qab, qap, qam = aa + bb, aa + 1.0, aa - 1.0
    c = np.ones_like(xs)
    d = 1.0 - qab * xs / qap
    d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
    h = d.copy()
    for m in range(1, 100_000):
        m2 = 2 * m
        step = m * (bb - m) * xs / ((qam + m2) * (aa + m2))
        d = 1.0 + step * d
        d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + step / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        h = h * d * c
        step = -(aa + m) * (qab + m) * xs / ((aa + m2) * (qap + m2))
        d = 1.0 + step * d
        d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + step / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    lbeta = np.array([math.lgamma(p + q) - math.lgamma(p) - math.lgamma(q) for p, q in zip(aa.ravel(), bb.ravel())])
    front = np.exp(lbeta.reshape(xs.shape) + aa * np.log(xs) + bb * np.log1p(-xs)) * h / aa
    small_side = np.where(inner, front, np.where(xx <= 0.0, 0.0, 1.0))
    return np.where(flip, 1.0 - small_side, small_side)


def harrell_davis_threshold(sorted_scores: np.ndarray, specificity: float) -> float:
    """The Harrell–Davis estimate centred on rank s(n+1) (see :meth:`NormalCalibration.threshold_at_specificity`).

    Args:
        sorted_scores: (n,) ascending calibration scores, n >= 1 / (1 − specificity).
        specificity: s in (0, 1).
    """
    n = len(sorted_scores)
    # HD's weights centre on rank n·q + ½; this q puts them on rank s(n+1) (q < 1 for n >= 1 / (1 − s))
    q = (specificity * (n + 1) - 0.5) / n
    if q <= 0.0:  # a specificity below ½ / (n+1): the lowest score
        return float(sorted_scores[0])
    weights = np.diff(regularized_incomplete_beta(q * (n + 1), (1.0 - q) * (n + 1), np.arange(n + 1) / n))
    return float(np.dot(weights, sorted_scores))


@dataclass(frozen=True)
class NormalCalibration:
    """How a detector's outputs behave on known-normal images it never trained on.

    Attributes:
        normal_scores: sorted image scores of the held-out normals (the empirical distribution
            behind "percentile among normals" and specificity-based thresholds).
        heatmap_quantile_levels: probabilities in [0, 1], increasing.
        heatmap_quantiles: heatmap values at those probabilities, pooled over all pixels of
            all held-out normal heatmaps, so colours mean the same evidence in every image.
        source: a sentence saying where the normals came from.
        name: "" for the calibration stored in the detector file; a site calibration's name
            (set from reader-confirmed normals of a site's images, see
            :mod:`engine.site_calibration`) otherwise.
        threshold_method: how :meth:`threshold_at_specificity` estimates a threshold:
            "harrell-davis" (detectors made since it was added) or "higher" (the empirical
            quantile's higher order statistic; detectors made before, kept as they were made).
        training_normal_scores: sorted scores of (at most :data:`TRAINING_FLOOR_MAX` of) the
            normals the detector trained on, scored once training ended; empty for site
            calibrations and detectors made before. With them, a Harrell–Davis threshold is
            never below the same estimate on these normals (see :meth:`threshold_at_specificity`).
        acquisition: for a site calibration, its confirmed normals' detail descriptors
            (:mod:`engine.acquisition`): while it is in use, folders are checked against the
            site's own normals. None for the detector's own calibration (the detector stores
            its reference beside it) and for site calibrations made without descriptors.
    """

    normal_scores: tuple[float, ...]
    heatmap_quantile_levels: tuple[float, ...]
    heatmap_quantiles: tuple[float, ...]
    source: str = "held-out known normals"
    name: str = ""
    threshold_method: ThresholdMethod = "harrell-davis"
    training_normal_scores: tuple[float, ...] = ()
    acquisition: AcquisitionReference | None = None

    def __post_init__(self) -> None:
        if len(self.normal_scores) < 1:
            raise ValueError("a calibration needs at least one normal score")
        for what, values in (("calibration normal", self.normal_scores), ("training normal", self.training_normal_scores)):
            v = np.asarray(values, dtype=np.float64)
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{what} scores must be finite")
            if np.any(np.diff(v) < 0):
                raise ValueError(f"{what} scores must be sorted ascending")
        if len(self.heatmap_quantile_levels) != len(self.heatmap_quantiles) or len(self.heatmap_quantiles) < 2:
            raise ValueError("heatmap quantile levels and values must have the same length >= 2")
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}, got {self.threshold_method!r}")

    @classmethod
    def from_samples(
        cls, scores: np.ndarray, heatmaps: np.ndarray, source: str = "held-out known normals", n_levels: int = 201
    ) -> "NormalCalibration":
        """Build a calibration from held-out normal scores (N,) and heatmaps (N, S, S)."""
        levels = np.linspace(0.0, 1.0, n_levels)
        q = np.quantile(np.asarray(heatmaps, dtype=np.float64).ravel(), levels)
        return cls(
            normal_scores=tuple(float(v) for v in np.sort(np.asarray(scores, dtype=np.float64))),
            heatmap_quantile_levels=tuple(float(v) for v in levels),
            heatmap_quantiles=tuple(float(v) for v in q),
            source=source,
        )

    @property
    def n_normals(self) -> int:
        return len(self.normal_scores)

    @property
    def label(self) -> str:
        """Which calibration this is, in words: every result names the one it used."""
        if not self.name:
            return f"detector calibration ({self.n_normals} held-out normals)"
        return f"site calibration “{self.name}” ({self.n_normals} confirmed normals)"

    def percentile(self, scores: np.ndarray | float) -> np.ndarray:
        """Percent of calibration normals scoring strictly below each score, ties counted half.

        0 = lower than every normal, 100 = higher than every normal.
        """
        s = np.asarray(self.normal_scores)
        x = np.asarray(scores, dtype=np.float64)
        below = np.searchsorted(s, x, side="left")
        below_or_equal = np.searchsorted(s, x, side="right")
        return 100.0 * (below + below_or_equal) / (2.0 * len(s))

    def threshold_at_specificity(self, specificity: float) -> float:
        """The score threshold (flagged: score > threshold) meant to pass ``specificity`` of new normals.

        "harrell-davis": a weighted mean of all sorted calibration scores X_(1..n) with the
        Harrell–Davis weights (Harrell & Davis, Biometrika 1982), Beta(q(n+1), (1−q)(n+1))
        probabilities of the intervals ((i−1)/n, i/n], at the level q = (s(n+1) − ½) / n. The
        weights then centre on rank s(n+1), the rank whose share of the normal population
        below it is s on average (E F(X_(k)) = k / (n+1)); the mean of several order
        statistics varies less from one calibration set to another than one order statistic.
        "higher": the empirical ``specificity`` quantile's higher order statistic (no
        calibration normal more than 1 − s above it), as detectors made before
        ``threshold_method`` were. With fewer than :meth:`normals_needed` normals, either is the
        largest normal score (see :meth:`operating_point_note`).

        The training-normal floor (detectors whose calibration has ``training_normal_scores``):
        the Harrell–Davis threshold is raised to the same estimate on the training normals when
        that is higher. A detector that fits its training normals scores them lower than new
        normals, so their estimate is, up to sampling noise, a lower bound of the population's;
        when the held-out estimate falls below it, the held-out normals (60 by default) sit low,
        and the promise would fail on every batch without any drift to see (``bench/RESULTS.md``,
        "Does the calibration hold-out represent the normals?"). For a detector that fits its
        normals the floor is below the held-out estimate and changes nothing.
        """
        if not 0.0 < specificity < 1.0:
            raise ValueError(f"specificity must be in (0, 1), got {specificity!r}")
        t = self._held_out_threshold(specificity)
        floor = self.training_floor(specificity)
        return t if floor is None else max(t, floor)

    def _held_out_threshold(self, specificity: float) -> float:
        s = np.asarray(self.normal_scores)
        if self.threshold_method == "higher" or len(s) < self.normals_needed(specificity):
            return float(np.quantile(s, specificity, method="higher"))
        return harrell_davis_threshold(s, specificity)

    def training_floor(self, specificity: float) -> float | None:
        """The training normals' Harrell–Davis threshold at ``specificity`` (None without enough of them)."""
        tr = np.asarray(self.training_normal_scores, dtype=np.float64)
        if self.threshold_method != "harrell-davis" or len(tr) < self.normals_needed(specificity):
            return None
        return harrell_davis_threshold(tr, specificity)

    def floor_raises(self, specificity: float) -> bool:
        """Whether the training-normal floor sets the threshold at ``specificity`` (above the held-out estimate)."""
        floor = self.training_floor(specificity)
        return floor is not None and floor > self._held_out_threshold(specificity)

    def floor_levels(self, levels: tuple[float, ...] = (0.90, 0.95, 0.99)) -> list[str]:
        """Of ``levels``, those where the training-normal floor sets the threshold, as "95 %" words."""
        return [f"{100 * q:g} %" for q in levels if self.floor_raises(q)]

    @staticmethod
    def normals_needed(specificity: float) -> int:
        """Calibration normals a threshold at ``specificity`` needs to mean anything: ⌈1 / (1 − specificity)⌉.

        With fewer, not even one normal is expected above the threshold, so the empirical
        quantile is the largest normal score whatever the specificity asked (90, 95 and 99 %
        on 3 normals are the same number).
        """
        if not 0.0 < specificity < 1.0:
            raise ValueError(f"specificity must be in (0, 1), got {specificity!r}")
        return int(np.ceil(1.0 / (1.0 - specificity) - 1e-9))

    def supports(self, specificity: float) -> bool:
        """Whether there are enough calibration normals for a threshold at ``specificity``."""
        return self.n_normals >= self.normals_needed(specificity)

    def achieved_specificity(self, threshold: float, level: float = 0.95) -> tuple[float, float, float]:
        """Share of calibration normals at or below ``threshold`` and its Clopper–Pearson interval.

        Returns:
            (specificity, lower, upper): the share and the exact binomial ``level`` interval of
            the specificity a new normal would get from the same population.
        """
        s = np.asarray(self.normal_scores)
        k = int(np.count_nonzero(s <= threshold))
        lo, hi = clopper_pearson(k, len(s), level)
        return k / len(s), lo, hi

    def operating_point_note(self, specificity: float) -> str | None:
        """A warning when a threshold at ``specificity`` rests on too few normals, else None."""
        need = self.normals_needed(specificity)
        if self.n_normals >= need or self.floor_raises(specificity):  # the floor rests on enough training normals
            return None
        which = f"the site calibration “{self.name}” has" if self.name else "this detector was calibrated on"
        return (f"{100 * specificity:g} % specificity rests on too few normals: it needs at least {need}, "
                f"{which} {self.n_normals} (the threshold is their highest score)")

    def heatmap_level(self, values: np.ndarray) -> np.ndarray:
        """Map heatmap values to [0, 1] by the normal heatmap distribution (its CDF).

        0.5 = the median normal pixel; 0.99 = stronger than 99 % of normal pixels.
        """
        return np.interp(values, self.heatmap_quantiles, self.heatmap_quantile_levels).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal_scores": list(self.normal_scores),
            "heatmap_quantile_levels": list(self.heatmap_quantile_levels),
            "heatmap_quantiles": list(self.heatmap_quantiles),
            "source": self.source,
            "n_normals": self.n_normals,
            **({"name": self.name} if self.name else {}),
            "threshold_method": self.threshold_method,
            **({"training_normal_scores": list(self.training_normal_scores)} if self.training_normal_scores else {}),
            **({"acquisition": self.acquisition.to_dict()} if self.acquisition is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NormalCalibration":
        return cls(
            normal_scores=tuple(float(v) for v in d["normal_scores"]),
            heatmap_quantile_levels=tuple(float(v) for v in d["heatmap_quantile_levels"]),
            heatmap_quantiles=tuple(float(v) for v in d["heatmap_quantiles"]),
            source=str(d.get("source", "held-out known normals")),
            name=str(d.get("name", "")),
            # detectors made before the setting existed keep the thresholds they were made with
            threshold_method=d.get("threshold_method", "higher"),
            # detectors made before the floor have none (their thresholds stay as they were)
            training_normal_scores=tuple(float(v) for v in d.get("training_normal_scores", ())),
            # site calibrations made before the acquisition check (or without descriptors) have none
            acquisition=AcquisitionReference.stored_in(d),
        )


@dataclass(frozen=True)
class DetectorMetadata:
    """Everything stored inside a detector file besides the graph.

    Attributes:
        method: registry name of the training method ("ddad", ...).
        backbone: network variant ("ae", "ae-u", "memae", ...).
        score_type: which anomaly map is the score ("inter", "intra", "rec", ...).
        preprocess: how images are turned into the ``image`` input.
        calibration: behaviour on held-out known normals.
        training: summary of the training run (counts, file-list hash, epochs, seconds, config).
        model_id: unique id of this detector (a UUID4 hex string).
        name: a human-readable name (editable in the model library).
        software: versions of cxrscreen and of the libraries that produced the file.
        created: ISO-8601 UTC timestamp.
        metrics: optional validation metrics (AUROC, AP, ...) with the data they came from.
        scope: the out-of-scope gate's model of what the detector saw (``{"model": ...}``, see
            :mod:`engine.scope`); empty for detectors made before the gate (header and image
            checks only).
    """

    method: str
    backbone: str
    score_type: str
    preprocess: PreprocessSpec
    calibration: NormalCalibration
    training: dict[str, Any] = field(default_factory=dict)
    model_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    name: str = ""
    software: dict[str, str] = field(default_factory=dict)
    created: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA_VERSION,
                "model_id": self.model_id,
                "name": self.name,
                "method": self.method,
                "backbone": self.backbone,
                "score_type": self.score_type,
                "input": {"name": INPUT_NAME, "shape": [None, 1, self.input_size, self.input_size]},
                "outputs": {"score": SCORE_NAME, "heatmap": HEATMAP_NAME},
                "preprocess": self.preprocess.to_dict(),
                "calibration": self.calibration.to_dict(),
                "training": self.training,
                "metrics": self.metrics,
                "scope": self.scope,
                "software": self.software,
                "created": self.created,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "DetectorMetadata":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"metadata must be a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"unsupported detector metadata schema {d.get('schema')!r} (this version reads {SCHEMA_VERSION})")
        return cls(
            method=str(d["method"]),
            backbone=str(d["backbone"]),
            score_type=str(d["score_type"]),
            preprocess=PreprocessSpec.from_dict(d["preprocess"]),
            calibration=NormalCalibration.from_dict(d["calibration"]),
            training=dict(d.get("training", {})),
            model_id=str(d["model_id"]),
            name=str(d.get("name", "")),
            software=dict(d.get("software", {})),
            created=str(d.get("created", "")),
            metrics=dict(d.get("metrics", {})),
            scope=dict(d.get("scope") or {}),
        )


def read_metadata(path: Path | str) -> DetectorMetadata:
    """Read only the metadata of a detector file (no session, no weights in memory)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DetectorError(path, "no such detector file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others
        raise DetectorError(path, f"not a readable ONNX file ({exc.__class__.__name__})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise DetectorError(path, f"ONNX file has no '{METADATA_KEY}' metadata: not a cxrscreen detector")
    try:
        return DetectorMetadata.from_json(props[METADATA_KEY])
    except KeyError as exc:
        raise DetectorError(path, f"invalid detector metadata: no field {exc}") from exc
    except (ValueError, TypeError, AttributeError) as exc:  # a field of the wrong JSON type
        raise DetectorError(path, f"invalid detector metadata: {exc}") from exc


@dataclass(frozen=True)
class DetectorOutput:
    """Outputs for a batch: ``scores`` (N,) and ``heatmaps`` (N, S, S), float32."""

    scores: np.ndarray
    heatmaps: np.ndarray


def _preload_cuda_libraries(ort) -> None:
    """Load the CUDA/cuDNN libraries installed from pip (onnxruntime-gpu[cuda,cudnn]) so the CUDA
    provider finds them without system-wide CUDA; harmless where there is no GPU."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # missing libraries: the provider then fails and we fall back, reported
        logger.debug("onnxruntime.preload_dlls failed: %s", exc)


def nvidia_gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU with its driver loaded (without CUDA or torch)."""
    import os
    import shutil

    if os.path.isdir("/proc/driver/nvidia/gpus") and os.listdir("/proc/driver/nvidia/gpus"):
        return True
    if os.path.exists("/dev/nvidia0"):
        return True
    return os.name == "nt" and shutil.which("nvidia-smi") is not None


class Detector:
    """An ONNX detector loaded in onnxruntime.

    Args:
        path: the .onnx file.
        provider: "auto" tries CUDA then CPU; "cuda" requires CUDA (error if it does not
            initialise); "cpu" uses the CPU provider only.
        threads: intra-op threads for the CPU provider (0 = onnxruntime's default).

    Attributes:
        provider: the execution provider actually used (e.g. "CPUExecutionProvider").
        provider_note: why a GPU that exists was not used (None when it was, or when there is
            no GPU: then CPU is no fallback, just where the detector runs).
    """

    def __init__(self, path: Path | str, provider: ProviderChoice = "auto", threads: int = 0) -> None:
        import onnxruntime as ort

        if provider not in ("auto", "cuda", "cpu"):
            raise ValueError(f"provider must be 'auto', 'cuda' or 'cpu', got {provider!r}")
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        # a failed CUDA start is reported through provider_note, not as onnxruntime console noise
        ort.set_default_logger_severity(4)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        wanted: list[str] = ["CPUExecutionProvider"]
        if provider in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            _preload_cuda_libraries(ort)
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=wanted)
        except Exception as exc:
            raise DetectorError(self.path, f"onnxruntime cannot load the graph: {exc}") from exc
        self._calibration = self.meta.calibration
        self.provider: str = self._session.get_providers()[0]
        self.provider_note: str | None = None
        if provider == "cuda" and self.provider != "CUDAExecutionProvider":
            reason = ("this onnxruntime has no CUDA provider" if "CUDAExecutionProvider" not in available
                      else "the CUDA provider did not initialise (no usable GPU or CUDA libraries)")
            raise DetectorError(self.path, f"CUDA requested but {reason}")
        if provider == "auto" and "CUDAExecutionProvider" in available and self.provider != "CUDAExecutionProvider":
            # a warning only where a GPU exists and was not used; on a machine without one, CPU
            # is simply where detectors run (the CUDA build of onnxruntime is installed everywhere)
            if nvidia_gpu_present():
                self.provider_note = "an NVIDIA GPU is present but the CUDA provider did not initialise; running on CPU"
                logger.warning("%s: %s", self.path.name, self.provider_note)
        self._check_signature()

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if INPUT_NAME not in inputs or not {SCORE_NAME, HEATMAP_NAME} <= outputs:
            raise DetectorError(
                self.path,
                f"graph must take '{INPUT_NAME}' and return '{SCORE_NAME}' and '{HEATMAP_NAME}'; "
                f"it takes {sorted(inputs)} and returns {sorted(outputs)}",
            )
        shape = list(inputs[INPUT_NAME].shape)
        s = self.meta.input_size
        # symbolic axes (e.g. the batch) are strings or None; fixed ones must match the metadata
        expected = [None, 1, s, s]
        if len(shape) != 4 or any(isinstance(g, int) and e is not None and g != e for g, e in zip(shape, expected)):
            raise DetectorError(
                self.path,
                f"graph input '{INPUT_NAME}' has shape {shape} but the metadata's preprocess size is {s} "
                f"(expected [batch, 1, {s}, {s}])",
            )

    @property
    def calibration(self) -> NormalCalibration:
        """The active calibration: the file's, unless :meth:`set_calibration` chose a site's."""
        return self._calibration

    def set_calibration(self, calibration: NormalCalibration | None) -> None:
        """Use a site calibration for percentiles and thresholds (None: the file's own again).

        The detector file is not touched: a site calibration lives beside it.
        """
        self._calibration = self.meta.calibration if calibration is None else calibration

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return self.meta.preprocess

    @property
    def scope_gate(self) -> ScopeGate:
        """The out-of-scope gate for this detector (with its one-class model when it stores one)."""
        return ScopeGate.from_metadata(self.meta.scope)

    @property
    def acquisition_reference(self) -> AcquisitionReference | None:
        """Its known normals' detail descriptors for the acquisition check (:mod:`engine.acquisition`),
        or None for a detector made before the check."""
        return AcquisitionReference.stored_in(self.meta.scope)

    @property
    def check_reference(self) -> AcquisitionReference | None:
        """What the acquisition check compares a folder with: the active site calibration's confirmed
        normals (None when it has no descriptors), else the detector's own known normals."""
        return self.calibration.acquisition if self.calibration.name else self.acquisition_reference

    def run(self, batch: np.ndarray) -> DetectorOutput:
        """Run a preprocessed (N, 1, S, S) float32 batch."""
        s = self.meta.input_size
        if batch.ndim != 4 or batch.shape[1:] != (1, s, s):
            raise ValueError(f"batch must have shape (N, 1, {s}, {s}), got {batch.shape}")
        score, heatmap = self._session.run(
            [SCORE_NAME, HEATMAP_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return DetectorOutput(scores=np.asarray(score, dtype=np.float32), heatmaps=np.asarray(heatmap, dtype=np.float32))


def acquisition_reference_words(calibration: NormalCalibration) -> str:
    """What the acquisition check compares with, in words: the detector's training normals, or a
    site calibration's confirmed normals (see :attr:`Detector.check_reference`)."""
    return f"the confirmed normals of site calibration “{calibration.name}”" if calibration.name else \
        "the detector's training normals"

