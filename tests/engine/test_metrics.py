"""Metrics against hand-computed values (ties, operating points, bootstrap)."""
from __future__ import annotations

import numpy as np
import pytest

from cxrscreen.engine import metrics as M

Y = np.array([0, 0, 1, 1])


def test_auroc_perfect_reversed_and_tied():
    assert M.auroc(Y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.auroc(Y, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert M.auroc(Y, [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: every pair counts half
    # pairs (n,a): (0.1,0.2)✓ (0.1,0.4)✓ (0.3,0.2)✗ (0.3,0.4)✓ -> 3/4
    assert M.auroc(Y, [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.75)


def test_average_precision_by_hand():
    # ranking a(0.4), n(0.3), a(0.2), n(0.1): precision at each recall step: 1/1, 2/3 -> AP = 0.5*1 + 0.5*2/3
    assert M.average_precision(Y, [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.5 + 1 / 3)
    # a tie between a normal and an abnormal at the top counts as one threshold: precision 1/2 there
    assert M.average_precision(np.array([0, 1]), [0.5, 0.5]) == pytest.approx(0.5)


def test_confusion_flags_strictly_above_threshold():
    c = M.confusion_at(Y, [0.1, 0.3, 0.2, 0.4], threshold=0.2)  # flagged: 0.3 (n), 0.4 (a)
    assert (c.sensitivity, c.specificity, c.accuracy, c.precision) == (0.5, 0.5, 0.5, 0.5)
    assert c.f1 == pytest.approx(0.5)


def test_youden_threshold_separates_perfectly_when_possible():
    s = [0.1, 0.2, 0.3, 0.4]
    t = M.youden_threshold(Y, s)
    c = M.confusion_at(Y, s, t)
    assert (c.sensitivity, c.specificity) == (1.0, 1.0)


def test_sensitivity_at_specificity():
    y = np.array([0] * 10 + [1] * 4)
    s = np.r_[np.arange(10) / 10, [0.95, 0.85, 0.5, 0.05]]
    # spec >= 0.9 allows one flagged normal: flagging scores >= 0.85 catches 0.95 and 0.85 (and the normal 0.9) -> 2/4
    assert M.sensitivity_at_specificity(y, s, 0.9) == 0.5
    assert M.sensitivity_at_specificity(y, s, 1.0) == 0.25  # only 0.95 is above every normal


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(0)
    y_small = np.r_[np.zeros(20), np.ones(20)].astype(int)
    s_small = np.r_[rng.normal(0, 1, 20), rng.normal(1, 1, 20)]
    y_big = np.r_[np.zeros(400), np.ones(400)].astype(int)
    s_big = np.r_[rng.normal(0, 1, 400), rng.normal(1, 1, 400)]
    lo_s, hi_s = M.bootstrap_ci(y_small, s_small, M.auroc, n_boot=300)
    lo_b, hi_b = M.bootstrap_ci(y_big, s_big, M.auroc, n_boot=300)
    assert lo_s <= M.auroc(y_small, s_small) <= hi_s
    assert lo_b <= M.auroc(y_big, s_big) <= hi_b
    assert hi_b - lo_b < (hi_s - lo_s) / 2


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="both"):
        M.auroc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        M.auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="finite"):
        M.auroc([0, 1], [0.1, float("nan")])
