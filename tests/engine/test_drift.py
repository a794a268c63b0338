"""engine.drift: the drift test (valid under any abnormal share up to π_max, powered against real shifts) and its estimate."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cxrscreen.engine.detector import NormalCalibration
from cxrscreen.engine.drift import MIN_IMAGES, DriftReport, binomial_cdf, check_drift, shift_estimate


def _calibration(scores: np.ndarray) -> NormalCalibration:
    return NormalCalibration(tuple(float(v) for v in np.sort(scores)), (0.0, 1.0), (0.0, 1.0), "test normals")


def test_binomial_cdf_matches_the_direct_sum():
    n = 16
    for k in (0, 3, 15):
        for p in (0.01, 0.2, 0.7):
            direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
            assert binomial_cdf(k, n, np.array([p]))[0] == pytest.approx(direct, rel=1e-9)
    # the edges: k >= n is certain, p = 0 puts every draw at 0
    assert binomial_cdf(16, 16, np.array([0.5]))[0] == 1.0
    assert binomial_cdf(0, 16, np.array([0.0]))[0] == 1.0


def test_no_false_alarm_at_the_worst_allowed_abnormal_share():
    """Normals like the calibration's plus 70 % abnormal studies all above them: the worst case the
    test allows for; it must not call more than alpha of such batches drifted."""
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(200):
        cal = _calibration(rng.normal(0, 1, 120))
        batch = np.r_[rng.normal(0, 1, 60), rng.normal(50, 1, 140)]  # π = 0.7
        alarms += check_drift(batch, cal, max_abnormal_share=0.7).drift
    assert alarms <= 0.05 * 200 + 4  # alpha plus binomial slack (P(> 14 of 200 | 5 %) < 0.05)


def test_a_shifted_batch_is_flagged_and_its_specificity_estimated():
    rng = np.random.default_rng(1)
    cal = _calibration(rng.normal(0, 1, 120))
    # 600 images, 40 % abnormal; the normals shifted by one standard deviation (95 % -> 74 %)
    batch = np.r_[rng.normal(1.0, 1, 360), rng.normal(4, 1, 240)]
    r = check_drift(batch, cal, specificity=0.95)
    assert r.drift and r.unreliable and r.p_value < 0.01
    assert "scores higher than the calibration normals; its flag rate is not reliable" in r.message
    # the estimate names its quantity and what it means for the flags ("about 74 %" alone read as 74 % flagged)
    e = round(100 * r.specificity_estimated)
    assert f"its normals would get about {e} % specificity, about {100 - e} % of them flagged" in r.message
    # the estimate assumes 70 % abnormal (the most favourable reading): it errs towards the promise
    assert 0.70 < r.specificity_estimated < 0.95
    assert DriftReport.from_dict(r.to_dict()) == r


def test_an_unshifted_batch_with_abnormal_studies_is_not_flagged():
    rng = np.random.default_rng(2)
    cal = _calibration(rng.normal(0, 1, 120))
    batch = np.r_[rng.normal(0, 1, 240), rng.normal(2.5, 1, 400)]  # like dev_test: 62 % abnormal
    r = check_drift(batch, cal)
    assert not r.drift and not r.unreliable and r.message.startswith("No drift")


def test_the_shift_estimate_recovers_a_shift_of_an_all_normal_batch():
    rng = np.random.default_rng(3)
    cal = _calibration(rng.normal(0, 1, 2000))
    batch = rng.normal(0.5, 1, 5000)
    assert shift_estimate(batch, cal, abnormal_share=0.0) == pytest.approx(0.5, abs=0.1)
    # the scale does not matter: any increasing transform of both gives the same δ
    cal_exp = _calibration(np.exp(np.asarray(cal.normal_scores)))
    assert shift_estimate(np.exp(batch), cal_exp, 0.0) == pytest.approx(shift_estimate(batch, cal, 0.0), abs=1e-9)


def test_too_few_images_are_not_tested():
    cal = _calibration(np.arange(100.0))
    r = check_drift(np.full(MIN_IMAGES - 1, 1000.0), cal)
    assert not r.tested and not r.drift and "too few" in r.message


def test_bad_parameters_are_refused():
    cal = _calibration(np.arange(100.0))
    with pytest.raises(ValueError, match="max_abnormal_share"):
        check_drift(np.arange(20.0), cal, max_abnormal_share=1.0)
    with pytest.raises(ValueError, match="alpha"):
        check_drift(np.arange(20.0), cal, alpha=0.0)
    with pytest.raises(ValueError, match="finite"):
        check_drift(np.r_[np.arange(20.0), np.nan], cal)


def test_a_small_batch_far_above_is_not_significant_but_says_so():
    """16 images above the calibration's 60th percentile: the test cannot exclude 70 % abnormal
    studies (4 of 16 below the normals' 70th percentile, about what 30 % normals give), yet the
    estimate falls short and the message asks for confirmed normals."""
    cal = _calibration(np.arange(100.0))
    r = check_drift(np.linspace(60.0, 99.0, 16), cal)
    assert r.tested and not r.drift and r.estimate_short and r.caution and not r.warning
    assert "Too few images to be sure" in r.message and r.to_dict()["estimate_short"] is True


def test_tarone_leaves_out_levels_that_cannot_reject():
    from cxrscreen.engine.drift import tarone

    # two levels can reach 0.05 / 2, the third never reaches even 0.05: K = 2, not 3
    assert tarone([0.01, 0.5, 0.9], [0.001, 0.02, 0.2], alpha=0.05) == pytest.approx(0.02)
    # every level able to reject: plain Bonferroni
    assert tarone([0.01, 0.5, 0.9], [0.0, 0.0, 0.0], alpha=0.05) == pytest.approx(0.03)
    # none able to: plain Bonferroni too (it cannot reject either)
    assert tarone([0.3, 0.5], [0.2, 0.3], alpha=0.05) == pytest.approx(0.6)


def test_sixteen_images_above_nearly_every_normal_are_flagged():
    """On 16 images only the upper levels can reject; Tarone's count keeps them undiluted."""
    cal = _calibration(np.arange(100.0))
    r = check_drift(np.linspace(85.0, 120.0, 16), cal)  # none below the normals' 70th percentile
    assert r.drift and r.p_value < 0.05 and r.warning


def _quantiles(n: int, shift: float = 0.0) -> np.ndarray:
    """n evenly spaced quantiles of N(shift, 1): a sample without sampling noise."""
    from statistics import NormalDist

    return np.array([NormalDist(shift, 1.0).inv_cdf((i + 0.5) / n) for i in range(n)])


def test_a_small_significant_shift_is_a_caution_and_a_large_one_a_warning():
    """The warning is for a promise estimated to fail by more than 5 points; a shift that the test
    finds but that costs the promise less (95 % -> 91 % here) is a caution naming the estimate."""
    cal = _calibration(_quantiles(1000))
    small = check_drift(np.r_[_quantiles(1500, 0.3), np.full(3500, 10.0)], cal)  # Φ(1.645 - 0.3) = 91 %
    assert small.drift and small.p_value < 1e-4 and not small.warning and not small.unreliable and small.caution
    assert small.message.startswith("This folder scores slightly higher than the calibration normals")
    assert "about 91 % specificity" in small.message and "within 5 points of the promise" in small.message
    assert small.to_dict()["caution"] is True and small.to_dict()["warning"] is False
    large = check_drift(np.r_[_quantiles(1500, 0.6), np.full(3500, 10.0)], cal)  # 85 %
    assert large.drift and large.warning and not large.caution
    assert "its flag rate is not reliable" in large.message and "about 85 % specificity" in large.message
    quiet = check_drift(np.r_[_quantiles(1500), np.full(3500, 10.0)], cal)
    assert not quiet.drift and not quiet.warning and not quiet.caution and quiet.message.startswith("No drift")
