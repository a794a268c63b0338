"""The shared preprocessing: hand-checked steps, invariances, spec round trip."""
from __future__ import annotations

import numpy as np
import pytest

from engine.preprocess import PreprocessSpec, apply_aspect, apply_intensity, apply_resize, preprocess, preprocess_batch


def test_default_maps_unit_range_to_minus_one_one():
    img = np.zeros((64, 64), np.float32)
    img[:, 32:] = 1.0
    out = preprocess(img, PreprocessSpec(size=64))
    assert out.dtype == np.float32 and out.shape == (64, 64)
    assert out[:, :32].max() == -1.0 and out[:, 32:].min() == 1.0  # no resize at native size


def test_resize_is_area_aware():
    # a 1-pixel checkerboard averages to grey when downscaled 8x (an unfiltered resize would alias)
    board = (np.indices((512, 512)).sum(0) % 2).astype(np.float32)
    small = apply_resize(board, 64)
    assert small.shape == (64, 64)
    assert np.abs(small[2:-2, 2:-2] - 0.5).max() < 0.05


def test_aspect_modes():
    img = np.arange(12, dtype=np.float32).reshape(3, 4) / 11
    assert apply_aspect(img, "stretch").shape == (3, 4)
    crop = apply_aspect(img, "center_crop")
    np.testing.assert_array_equal(crop, img[:, 0:3])  # (4-3)//2 = 0 columns dropped on the left
    pad = apply_aspect(img, "pad")
    assert pad.shape == (4, 4)
    np.testing.assert_array_equal(pad[0:3], img)  # (4-3)//2 = 0 rows on top, the rest at the bottom
    assert (pad[3] == img.min()).all()


def test_equalize_is_invariant_to_monotonic_intensity_changes():
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 4096, (32, 32)) / 4095).astype(np.float32)  # 12-bit levels, with ties
    gamma = np.sqrt(img) * 0.7 + 0.1  # exposure and gamma change (strictly monotonic on these levels)
    np.testing.assert_allclose(apply_intensity(img, "equalize"), apply_intensity(gamma, "equalize"), atol=1e-6)
    eq = apply_intensity(img, "equalize")
    assert 0.0 < eq.min() < 0.001 and 0.999 < eq.max() < 1.0  # (rank + 0.5) / N


def test_equalize_gives_ties_the_same_value():
    img = np.array([[0.2, 0.2], [0.5, 0.9]], np.float32)
    eq = apply_intensity(img, "equalize")
    assert eq[0, 0] == eq[0, 1] == pytest.approx(0.25)  # ranks 0 and 1 average to 0.5 -> (0.5+0.5)/4
    assert eq[1, 1] == pytest.approx(0.875)


def test_percentile_stretch_and_flat_image():
    img = np.linspace(0.2, 0.6, 10000, dtype=np.float32).reshape(100, 100)
    out = apply_intensity(img, "percentile")
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(apply_intensity(np.full((8, 8), 0.3, np.float32), "percentile") == 0.0)


def test_spec_round_trip_and_validation():
    spec = PreprocessSpec(size=128, aspect="pad", intensity="equalize", output_range=(0, 1))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="intensity"):
        PreprocessSpec(intensity="clahe")
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="size"):
        PreprocessSpec(size=4)


def test_bad_pixels_are_refused_and_batches_stack():
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((4, 4, 3), np.float32), PreprocessSpec())
    batch = preprocess_batch([np.zeros((80, 100), np.float32), np.ones((300, 200), np.float32)], PreprocessSpec(size=32))
    assert batch.shape == (2, 1, 32, 32)
    assert batch[0].max() == -1.0 and batch[1].min() == 1.0
