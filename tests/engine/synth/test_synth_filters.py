"""engine.synth.filters: the numpy Gaussian blur and bilinear sampling equal SciPy's ndimage."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cxrscreen.engine.synth.filters import bilinear_sample, gaussian_filter


@pytest.mark.parametrize(("shape", "sigma", "truncate", "dtype"), [
    ((64, 64), 0.7, 3.0, np.float32),    # the detector blur of render()
    ((256, 200), 3.84, 2.5, np.float32),  # render()'s unsharp mask, a non-square image
    ((5, 7), 4.0, 4.0, np.float64),       # radius 16 > the image: mirrored more than once
    ((3, 50), 0.3, 4.0, np.float32),      # radius 1
])
def test_gaussian_filter_is_scipys(shape, sigma, truncate, dtype):
    image = np.random.default_rng(0).random(shape).astype(dtype)
    ours = gaussian_filter(image, sigma, truncate=truncate)
    theirs = ndimage.gaussian_filter(image, sigma, truncate=truncate)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_bilinear_sample_is_scipys_map_coordinates_inside_and_outside():
    rng = np.random.default_rng(1)
    image = rng.random((50, 60))
    rows, cols = rng.uniform(-2, 52, 20_000), rng.uniform(-2, 62, 20_000)
    # the edges exactly, and just outside them (0 there, as SciPy's mode "constant")
    rows[:6], cols[:6] = [0, 49, -1e-9, 49 + 1e-9, 20, 20], [0, 59, 3, 3, 59 + 1e-9, -1e-9]
    ours = bilinear_sample(image, rows, cols)
    theirs = ndimage.map_coordinates(image, [rows, cols], order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert ours[0] == image[0, 0] and ours[1] == image[49, 59] and not ours[2:6].any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D float image"):
        gaussian_filter(np.zeros((4, 4), dtype=np.uint8), 1.0)
    with pytest.raises(ValueError, match="sigma must be > 0, got 0"):
        gaussian_filter(np.zeros((4, 4)), 0.0)
    with pytest.raises(ValueError, match="positions of one shape"):
        bilinear_sample(np.zeros((4, 4)), np.zeros(3), np.zeros(2))
