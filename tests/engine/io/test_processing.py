"""The pure numpy display steps, against values computed by hand from PS3.3 C.11."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxrscreen.engine.io.processing import (
    apply_inversion,
    apply_luma,
    apply_min_max,
    apply_modality_lut,
    apply_voi_lut,
    apply_window,
)


def test_modality_rescale_with_negative_slope() -> None:
    stored = np.array([0, 100, 4095], dtype=np.uint16)
    # slope -1, intercept 4095: the stored scale runs the other way.
    out = apply_modality_lut(stored, slope=-1.0, intercept=4095.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [4095, 3995, 0])


def test_modality_rescale_identity_is_a_float32_copy() -> None:
    stored = np.array([[3, 7]], dtype=np.uint8)
    out = apply_modality_lut(stored)
    out[0, 0] = 99  # the result must not alias the input
    assert stored[0, 0] == 3


def test_modality_lut_clamps_below_and_above_the_table() -> None:
    lut = np.array([10, 20, 30], dtype=np.uint16)
    # first mapped value 5: 4 -> lut[0] (clamped), 5 -> 10, 7 -> 30, 9 -> lut[-1] (clamped).
    out = apply_modality_lut(np.array([4, 5, 6, 7, 9]), lut=lut, lut_first=5)
    np.testing.assert_array_equal(out, [10, 10, 20, 30, 30])


def test_modality_zero_slope_is_rejected_and_named() -> None:
    with pytest.raises(ValueError, match="slope=0"):
        apply_modality_lut(np.zeros(3), slope=0.0)


def test_linear_window_matches_the_standard_piecewise_definition() -> None:
    # c=100, w=11: y=0 for x <= 94.5, y=1 for x > 104.5, else (x - 99.5)/10 + 0.5.
    x = np.array([94, 94.5, 95, 99.5, 104, 104.5, 105], dtype=np.float32)
    out = apply_window(x, center=100, width=11)
    np.testing.assert_allclose(out, [0, 0, 0.05, 0.5, 0.95, 1.0, 1], atol=1e-6)


def test_linear_window_of_width_one_is_a_threshold_at_center_minus_half() -> None:
    # w=1: x <= c - 0.5 -> 0, x > c - 0.5 -> 1 (c=10: 9 -> 0, 10 -> 1).
    out = apply_window(np.array([8, 9, 10, 11], dtype=np.float32), center=10, width=1)
    np.testing.assert_array_equal(out, [0, 0, 1, 1])


def test_linear_exact_window() -> None:
    # c=100, w=10: y = (x - 100)/10 + 0.5 clipped: 95 -> 0, 97.5 -> 0.25, 100 -> 0.5, 105 -> 1.
    x = np.array([90, 95, 97.5, 100, 105, 110], dtype=np.float32)
    out = apply_window(x, center=100, width=10, function="LINEAR_EXACT")
    np.testing.assert_allclose(out, [0, 0, 0.25, 0.5, 1, 1], atol=1e-6)


def test_sigmoid_window() -> None:
    # y = 1 / (1 + exp(-4 (x - c) / w)): x = c -> 0.5; x = c + w/2 -> 1/(1 + e^-2).
    x = np.array([100, 105, 95], dtype=np.float32)
    out = apply_window(x, center=100, width=10, function="SIGMOID")
    np.testing.assert_allclose(out, [0.5, 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))], rtol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_inverted_window_is_one_minus_window(function: str) -> None:
    x = np.linspace(-50, 250, 31, dtype=np.float32)
    plain = apply_window(x, center=100, width=80, function=function)  # type: ignore[arg-type]
    inverted = apply_window(x, center=100, width=80, function=function, invert=True)  # type: ignore[arg-type]
    np.testing.assert_allclose(inverted, 1 - plain, atol=1e-6)


def test_window_rejects_bad_width_and_function() -> None:
    x = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match="width must be >= 1, got 0.5"):
        apply_window(x, center=0, width=0.5)  # LINEAR needs w >= 1
    with pytest.raises(ValueError, match="'GAMMA'"):
        apply_window(x, center=0, width=10, function="GAMMA")  # type: ignore[arg-type]


def test_voi_lut_divides_by_the_declared_bit_range() -> None:
    lut = np.array([0, 51, 102, 255], dtype=np.uint16)  # 8 bits per entry
    # first mapped value 10: 9 -> lut[0], 11 -> 51/255, 20 -> lut[-1].
    out = apply_voi_lut(np.array([9, 11, 12, 20], dtype=np.float32), lut, lut_first=10, bits=8)
    np.testing.assert_allclose(out, [0, 0.2, 0.4, 1.0], atol=1e-7)
    inverted = apply_voi_lut(np.array([11.0], dtype=np.float32), lut, lut_first=10, bits=8, invert=True)
    np.testing.assert_allclose(inverted, [0.8], atol=1e-7)


def test_voi_lut_with_data_beyond_declared_bits_uses_the_data_maximum() -> None:
    # Declared 8 bits but entries up to 1000: scaled by 1000 so the output stays in [0, 1].
    out = apply_voi_lut(np.array([0, 1]), np.array([0, 1000]), lut_first=0, bits=8)
    np.testing.assert_allclose(out, [0, 1])


def test_min_max_stretches_and_handles_constant_images() -> None:
    np.testing.assert_allclose(apply_min_max(np.array([10, 15, 20], dtype=np.float32)), [0, 0.5, 1])
    np.testing.assert_allclose(apply_min_max(np.array([10, 20], dtype=np.float32), invert=True), [1, 0])
    # A constant image has no range: all 0, not NaN.
    np.testing.assert_array_equal(apply_min_max(np.full(4, 7, dtype=np.float32)), np.zeros(4))


def test_inversion_is_in_place() -> None:
    arr = np.array([0.0, 0.25, 1.0], dtype=np.float32)
    out = apply_inversion(arr)
    assert out is arr
    np.testing.assert_array_equal(arr, [1.0, 0.75, 0.0])


def test_luma_of_uint8_equals_pillow_convert_l_exactly() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb, mode="RGB").convert("L"))
    np.testing.assert_array_equal(apply_luma(rgb), expected)


def test_luma_of_uint16_uses_601_weights_without_rounding() -> None:
    rgb = np.array([[[1000, 0, 0], [0, 1000, 0], [0, 0, 1000]]], dtype=np.uint16)
    np.testing.assert_allclose(apply_luma(rgb), [[299, 587, 114]], rtol=1e-6)


def test_luma_needs_three_channels() -> None:
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        apply_luma(np.zeros((4, 2), dtype=np.uint8))
