"""Normal calibration: percentiles, specificity thresholds, heatmap levels, metadata round trip."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxrscreen.engine.detector import DetectorMetadata, NormalCalibration, harrell_davis_threshold
from cxrscreen.engine.preprocess import PreprocessSpec

CAL = NormalCalibration.from_samples(np.array([4.0, 1.0, 3.0, 2.0]), np.linspace(0, 1, 101).reshape(1, 101))


def test_scores_are_sorted_and_percentiles_count_ties_half():
    assert CAL.normal_scores == (1.0, 2.0, 3.0, 4.0)
    np.testing.assert_allclose(CAL.percentile([0.5, 1.0, 2.5, 4.0, 9.0]), [0.0, 12.5, 50.0, 87.5, 100.0])


def test_the_higher_order_statistic_never_flags_more_calibration_normals_than_allowed():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    cal = dataclasses.replace(NormalCalibration.from_samples(scores, np.zeros((1, 2, 2))), threshold_method="higher")
    for spec in (0.5, 0.9, 0.95, 0.99):
        t = cal.threshold_at_specificity(spec)
        assert np.mean(scores > t) <= 1 - spec + 1e-12
    with pytest.raises(ValueError, match="specificity"):
        cal.threshold_at_specificity(1.0)


def test_heatmap_levels_follow_the_normal_pixel_distribution():
    # heatmap values uniform on [0, 1]: the level of v is v
    np.testing.assert_allclose(CAL.heatmap_level(np.array([0.0, 0.25, 0.9, 5.0])), [0.0, 0.25, 0.9, 1.0], atol=1e-6)


def test_metadata_json_round_trip():
    meta = DetectorMetadata(method="ddad", backbone="ae-u", score_type="inter", preprocess=PreprocessSpec(size=64),
                            calibration=CAL, training={"normal_train": 540}, name="test")
    back = DetectorMetadata.from_json(meta.to_json())
    assert back == meta
    assert len(meta.model_id) == 32 and meta.model_id != DetectorMetadata(
        method="ddad", backbone="ae-u", score_type="inter", preprocess=PreprocessSpec(), calibration=CAL).model_id


def test_invalid_calibrations_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        NormalCalibration((2.0, 1.0), (0.0, 1.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="finite"):
        NormalCalibration((float("nan"),), (0.0, 1.0), (0.0, 1.0))


def test_a_threshold_needs_one_over_one_minus_specificity_normals() -> None:
    from cxrscreen.engine.detector import NormalCalibration

    three = NormalCalibration((0.1, 0.2, 0.3), (0.0, 1.0), (0.0, 1.0))
    # the case: 90 / 95 / 99 % on 3 normals are all the largest normal
    assert {three.threshold_at_specificity(s) for s in (0.90, 0.95, 0.99)} == {0.3}
    assert [NormalCalibration.normals_needed(s) for s in (0.90, 0.95, 0.99)] == [10, 20, 100]
    assert not three.supports(0.90)
    # the card says "Harrell–Davis" above: the note says this threshold is not that estimate
    assert three.operating_point_note(0.95).endswith("needs at least 20, this detector was calibrated on 3 (the "
                                                     "threshold is their highest score)")
    twenty = NormalCalibration(tuple(float(i) for i in range(20)), (0.0, 1.0), (0.0, 1.0))
    assert twenty.supports(0.95) and twenty.operating_point_note(0.95) is None and not twenty.supports(0.99)


def test_achieved_specificity_has_the_clopper_pearson_interval() -> None:
    from cxrscreen.engine.detector import NormalCalibration, clopper_pearson

    cal = NormalCalibration(tuple(float(i) for i in range(20)), (0.0, 1.0), (0.0, 1.0))
    spec, lo, hi = cal.achieved_specificity(18.0)  # 19 of 20 at or below
    assert spec == 0.95
    # exact values (scipy.stats.beta.ppf(0.025, 19, 2), beta.ppf(0.975, 20, 1))
    assert (lo, hi) == pytest.approx((0.751267, 0.998735), abs=1e-6)
    assert clopper_pearson(0, 5) == pytest.approx((0.0, 0.521824), abs=1e-6)  # edge: none
    assert clopper_pearson(5, 5) == pytest.approx((0.478176, 1.0), abs=1e-6)  # edge: all
    with pytest.raises(ValueError, match="k=6, n=5"):
        clopper_pearson(6, 5)


def test_harrell_davis_by_hand():
    # s = ½ on five scores: q = (0.5 · 6 − ½) / 5 = ½, Beta(3, 3) weights are symmetric: the middle score
    assert harrell_davis_threshold(np.arange(5.0), 0.5) == pytest.approx(2.0)
    # weights sum to one: equal scores give that score
    assert harrell_davis_threshold(np.full(30, 2.5), 0.95) == pytest.approx(2.5)
    # a specificity below ½ / (n + 1): the lowest score
    assert harrell_davis_threshold(np.arange(4.0), 0.05) == 0.0


@pytest.mark.parametrize(("n", "spec"), [(40, 0.95), (60, 0.95), (120, 0.9), (241, 0.95), (200, 0.99)])
def test_harrell_davis_threshold_passes_the_promised_share_of_new_normals_on_average(n, spec):
    # any continuous score distribution: F(X_(k)) of the k-th of n normals has mean k / (n + 1), so the
    # estimate on the scores k / (n + 1) is the share of the population it passes on average
    expected_share = harrell_davis_threshold(np.arange(1, n + 1) / (n + 1), spec)
    assert expected_share == pytest.approx(spec, abs=0.002)
    # the empirical quantile interpolated at s (numpy's default) sits on rank s(n − 1) + 1: it passes
    # (2s − 1) / (n + 1) fewer
    assert float(np.quantile(np.arange(1, n + 1) / (n + 1), spec)) < spec - 0.5 * (2 * spec - 1) / (n + 1)


def test_new_calibrations_use_harrell_davis_and_old_files_keep_the_higher_order_statistic():
    scores = np.linspace(0.0, 1.0, 40)
    cal = NormalCalibration.from_samples(scores, np.zeros((1, 2, 2)))
    assert cal.threshold_method == "harrell-davis"
    assert cal.threshold_at_specificity(0.95) == pytest.approx(harrell_davis_threshold(scores, 0.95))
    assert NormalCalibration.from_dict(cal.to_dict()) == cal
    old = {k: v for k, v in cal.to_dict().items() if k != "threshold_method"}  # a detector made before
    assert NormalCalibration.from_dict(old).threshold_at_specificity(0.95) == float(np.quantile(scores, 0.95, method="higher"))
    # with too few normals both are the largest normal score (and the note says so)
    few = NormalCalibration.from_samples(scores[:10], np.zeros((1, 2, 2)))
    assert few.threshold_at_specificity(0.95) == scores[9]
    with pytest.raises(ValueError, match="threshold_method"):
        dataclasses.replace(cal, threshold_method="linear")


@pytest.mark.parametrize("a, b", [(0.5, 0.5), (1.0, 1.0), (2.5, 7.0), (57.5, 3.5), (0.1, 30.0), (300.0, 0.2),
                                  (9500.2, 500.8)])
def test_the_numpy_incomplete_beta_equals_scipys(a: float, b: float) -> None:
    """Harrell–Davis weights need I_x(a, b); the base profile has no scipy, so it is computed here."""
    special = pytest.importorskip("scipy.special")  # a test dependency ([dev])
    from cxrscreen.engine.detector import regularized_incomplete_beta

    x = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(regularized_incomplete_beta(a, b, x), special.betainc(a, b, x), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="a > 0"):
        regularized_incomplete_beta(0.0, 1.0, x)


def test_the_training_normals_are_a_floor_for_the_threshold_never_a_ceiling():
    """Held-out normals that sit low under-state the threshold; training normals that score higher
    raise it to their own estimate. Training normals that score lower (a detector that fits them)
    change nothing; nor do they for a site calibration or a detector made before."""
    held = np.linspace(0.0, 1.0, 60)
    base = NormalCalibration.from_samples(held, np.zeros((1, 2, 2)))
    higher = dataclasses.replace(base, training_normal_scores=tuple(np.linspace(0.2, 1.5, 300)))
    lower = dataclasses.replace(base, training_normal_scores=tuple(np.linspace(-0.5, 0.6, 300)))
    for spec in (0.9, 0.95, 0.99):
        t_held = base.threshold_at_specificity(spec)  # Harrell–Davis; at 99 % (60 < 100 normals) the largest
        t_train = harrell_davis_threshold(np.linspace(0.2, 1.5, 300), spec)
        assert t_train > t_held and higher.threshold_at_specificity(spec) == pytest.approx(t_train)
        assert higher.floor_raises(spec) and not lower.floor_raises(spec)
        assert lower.threshold_at_specificity(spec) == pytest.approx(t_held)
    # the promise on the held-out normals is then over-delivered, and says so: all 60 at or below
    assert higher.achieved_specificity(higher.threshold_at_specificity(0.95))[0] == 1.0
    # stored in the file, absent from files made before (their thresholds unchanged)
    assert NormalCalibration.from_dict(higher.to_dict()) == higher
    assert "training_normal_scores" not in base.to_dict()
    assert NormalCalibration.from_dict(base.to_dict()).training_normal_scores == ()
    # the "higher" estimate of detectors made before ignores a floor; too few training normals give none
    old = dataclasses.replace(higher, threshold_method="higher")
    assert old.threshold_at_specificity(0.95) == float(np.quantile(held, 0.95, method="higher"))
    assert dataclasses.replace(base, training_normal_scores=(5.0,) * 10).training_floor(0.95) is None
    with pytest.raises(ValueError, match="training normal scores must be sorted"):
        dataclasses.replace(base, training_normal_scores=(2.0, 1.0))
