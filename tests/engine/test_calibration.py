"""Normal calibration: percentiles, specificity thresholds, heatmap levels, metadata round trip."""
from __future__ import annotations

import numpy as np
import pytest

from engine.detector import DetectorMetadata, NormalCalibration
from engine.preprocess import PreprocessSpec

CAL = NormalCalibration.from_samples(np.array([4.0, 1.0, 3.0, 2.0]), np.linspace(0, 1, 101).reshape(1, 101))


def test_scores_are_sorted_and_percentiles_count_ties_half():
    assert CAL.normal_scores == (1.0, 2.0, 3.0, 4.0)
    np.testing.assert_allclose(CAL.percentile([0.5, 1.0, 2.5, 4.0, 9.0]), [0.0, 12.5, 50.0, 87.5, 100.0])


def test_threshold_at_specificity_never_flags_more_normals_than_allowed():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    cal = NormalCalibration.from_samples(scores, np.zeros((1, 2, 2)))
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
