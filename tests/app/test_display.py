"""Pure display steps: windows, polarity, uint16 codes, the pyqtgraph path, thumbnails."""
from __future__ import annotations

import numpy as np
import pytest

from cxrscreen.app.viewer.display import (
    EncodedImage,
    Window,
    apply_invert,
    apply_thumbnail,
    apply_uint8,
    apply_window,
    auto_window,
    build_display_image,
    encode_uint16,
    full_range_window,
    gray_lut,
    window_levels,
)


def test_linear_window_matches_dicom_formula() -> None:
    # PS3.3 C.11.2.1.2.1 with c=100, w=11: y = (x - 99.5) / 10 + 0.5, clipped
    x = np.array([[94.0, 94.5, 99.5, 104.5, 105.0]], dtype=np.float32)
    y = apply_window(x, Window(100.0, 11.0, "LINEAR"))
    np.testing.assert_allclose(y, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_linear_exact_and_sigmoid() -> None:
    x = np.array([[0.0, 50.0, 100.0]], dtype=np.float32)
    np.testing.assert_allclose(apply_window(x, Window(50.0, 100.0, "LINEAR_EXACT")), [[0.0, 0.5, 1.0]], atol=1e-6)
    # sigmoid: 1 / (1 + exp(-4 (x - c) / w)); at x = c it is 0.5
    y = apply_window(x, Window(50.0, 100.0, "SIGMOID"))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-4 * (x - 50) / 100)), rtol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"center": 0.0, "width": 0.5, "function": "LINEAR"},   # LINEAR needs width >= 1
    {"center": 0.0, "width": 0.0, "function": "LINEAR_EXACT"},
    {"center": float("nan"), "width": 10.0},
    {"center": 0.0, "width": 10.0, "function": "GAMMA"},
])
def test_window_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Window(**kwargs)


def test_invert_and_uint8() -> None:
    a = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(apply_invert(a), [[1.0, 0.75, 0.0]])
    np.testing.assert_array_equal(apply_uint8(a), [[0, 64, 255]])  # 63.75 rounds to 64


def test_encode_uint16_is_exact_for_integer_values() -> None:
    v = np.array([[-1024.0, 0.0], [3071.0, 12.0]], dtype=np.float32)  # CT-like range, offset
    enc = encode_uint16(v)
    assert enc.step == 1.0 and enc.offset == -1024.0
    np.testing.assert_array_equal(enc.decode(), v)
    assert enc.value_at(1, 0) == 3071.0


def test_encode_uint16_quantises_non_integer_values() -> None:
    v = np.linspace(0.0, 1.0, 1000, dtype=np.float32).reshape(10, 100)
    enc = encode_uint16(v)
    assert np.max(np.abs(enc.decode() - v)) <= enc.step / 2 + 1e-7


def _pyqtgraph_path(codes: np.ndarray, levels_codes: tuple[float, float], lut: np.ndarray) -> np.ndarray:
    """What pyqtgraph's ImageItem does with uint16 data, levels and a LUT (rescale then floor)."""
    lo, hi = levels_codes
    n = lut.shape[0]
    idx = np.clip(np.floor((codes.astype(np.float64) - lo) * (n / (hi - lo))), 0, n - 1).astype(np.intp)
    return lut[idx]


@pytest.mark.parametrize("window", [Window(2048, 4096, "LINEAR"), Window(1500, 800, "LINEAR_EXACT"),
                                    Window(1800, 600, "SIGMOID")])
@pytest.mark.parametrize("invert", [False, True])
def test_levels_and_lut_reproduce_the_reference_window(window: Window, invert: bool) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4096, size=(64, 64)).astype(np.float32)
    enc = encode_uint16(values)
    lo, hi = window_levels(window)
    fast = _pyqtgraph_path(enc.codes, (enc.to_code(lo), enc.to_code(hi)), gray_lut(window.function, invert))
    ref = apply_window(values, window)
    ref = apply_uint8(apply_invert(ref) if invert else ref)
    assert np.max(np.abs(fast.astype(int) - ref.astype(int))) <= 1  # one 8-bit step at most


def test_auto_window_ignores_padding_and_saturation() -> None:
    values = np.full((100, 100), 0.0, dtype=np.float32)  # collimation black
    values[10:90, 10:90] = np.linspace(1000, 2000, 80 * 80).reshape(80, 80)
    values[0, :5] = 4095  # a few saturated pixels
    w = auto_window(encode_uint16(values), 0.0, 100.0)
    lo, hi = window_levels(w)
    # the anatomy's range, not the padding's 0 or the saturated 4095
    assert 999 <= lo <= 1001 and 1999 <= hi <= 2001


def test_full_range_window() -> None:
    enc = encode_uint16(np.array([[10.0, 20.0], [30.0, 40.0]], dtype=np.float32))
    lo, hi = window_levels(full_range_window(enc))
    assert lo == pytest.approx(10.0) and hi == pytest.approx(40.0)  # min -> black, max -> white


def test_thumbnail_area_average_keeps_aspect() -> None:
    pixels = np.zeros((200, 100), dtype=np.float32)
    pixels[:, 50:] = 1.0  # right half white
    t = apply_thumbnail(pixels, 64)
    assert t.shape == (50, 25) and t.dtype == np.uint8  # factor 4
    assert t[:, :12].max() == 0 and t[:, 13:].min() == 255
    assert 120 <= t[0, 12] <= 135  # the cell straddling the edge averages


def test_display_image_of_8bit_raster_uses_stored_values() -> None:
    stored = np.arange(256, dtype=np.float32).reshape(16, 16)
    img = build_display_image(stored / 255.0, None, bits_stored=8)
    assert img.rendering is None and img.default_window is not None
    np.testing.assert_array_equal(img.values.decode(), stored)  # exact 0..255 units
    assert (img.default_window.center, img.default_window.width) == (128.0, 256.0)
    assert not img.inverted


def test_display_image_monochrome1_polarity_from_data() -> None:
    rng = np.random.default_rng(1)
    modality = rng.integers(0, 4096, size=(32, 32)).astype(np.float32)
    preset = Window(2048.0, 4096.0, "LINEAR", "header")
    pixels = apply_invert(apply_window(modality, preset))  # what a reader shows for MONOCHROME1
    img = build_display_image(pixels, modality, presets=(preset,), photometric="MONOCHROME1")
    assert img.inverted and img.default_window == preset and img.rendering is None


def test_display_image_keeps_a_rendering_no_window_reproduces() -> None:
    rng = np.random.default_rng(2)
    modality = rng.integers(0, 4096, size=(32, 32)).astype(np.float32)
    pixels = np.sqrt(modality / 4095.0).astype(np.float32)  # a non-linear VOI LUT
    img = build_display_image(pixels, modality, presets=(Window(2048.0, 4096.0),))
    assert img.default_window is None and img.rendering is not None
    np.testing.assert_allclose(img.rendering.decode(), pixels, atol=1 / 65535)


def test_encoded_image_codes_are_uint16() -> None:
    enc = EncodedImage(codes=np.zeros((2, 2), np.uint16), offset=5.0, step=2.0)
    assert enc.to_code(9.0) == 2.0
