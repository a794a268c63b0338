"""Detection metrics with exact tie handling, operating points and stratified bootstrap intervals.

Conventions: label 1 = abnormal (positive); higher score = more anomalous; an image is flagged
when ``score > threshold``. AUROC equals the Mann-Whitney statistic (ties count half); AP is the
step-wise area under the precision-recall curve over distinct thresholds (as scikit-learn).
Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (abnormal)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("need both normal (0) and abnormal (1) images")
    return y, s


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): one point per distinct score, flagged = score >= threshold,
    starting at (0, 0) with threshold +inf."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    return fpr, tpr, np.r_[np.inf, s_sorted[distinct]]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[distinct]
    precision = tps / (distinct + 1)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class Confusion:
    threshold: float
    sensitivity: float
    specificity: float
    accuracy: float
    precision: float
    f1: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    """Metrics when images with ``score > threshold`` are flagged."""
    y, s = _check(labels, scores)
    flag = s > threshold
    tp = int(np.sum(flag & (y == 1)))
    fp = int(np.sum(flag & (y == 0)))
    fn = int(np.sum(~flag & (y == 1)))
    tn = int(np.sum(~flag & (y == 0)))
    sens = tp / (tp + fn)
    spec = tn / (tn + fp)
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * prec * sens / (prec + sens) if prec + sens else 0.0
    return Confusion(float(threshold), sens, spec, (tp + tn) / len(y), prec, f1)


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity − 1 on these labels (optimistic on the
    data it is chosen on). Returned in the ``score > threshold`` convention."""
    fpr, tpr, thr = roc_curve(labels, scores)
    i = int(np.argmax(tpr - fpr))
    if i == 0:
        return float(np.max(scores))
    # flag = score >= thr[i]  <=>  score > the next lower distinct score
    y, s = _check(labels, scores)
    below = s[s < thr[i]]
    return float(below.max()) if below.size else float(np.nextafter(thr[i], -np.inf))


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float) -> float:
    """Highest sensitivity among thresholds whose specificity on these labels is >= ``specificity``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max())


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float],
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over stratified bootstrap resamples (normals and
    abnormals resampled separately, so every resample keeps the class sizes)."""
    y, s = _check(labels, scores)
    rng = np.random.default_rng(seed)
    pos, neg = np.nonzero(y == 1)[0], np.nonzero(y == 0)[0]
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        values[b] = statistic(y[idx], s[idx])
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
