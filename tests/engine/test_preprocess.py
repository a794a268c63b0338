"""The shared preprocessing: hand-checked steps, invariances, spec round trip."""
from __future__ import annotations

import numpy as np
import pytest

from PIL import Image, ImageDraw

from cxrscreen.engine.detector import DetectorMetadata, NormalCalibration
from cxrscreen.engine.preprocess import (
    BAND_SIGMAS, BAND_TARGETS, PreprocessSpec, _blur, _quantiles, apply_aspect, apply_crop, apply_intensity,
    apply_resize, band_strengths, field_box, preprocess, preprocess_batch,
)


def _chest(h: int = 240, w: int = 200, seed: int = 0) -> np.ndarray:
    """A chest-like radiograph: a textured body (an upright ellipse, 0.3-0.9) on near-black air."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    body = ((x - 0.5) / 0.38) ** 2 + ((y - 0.55) / 0.6) ** 2 < 1.0
    ribs = 0.15 * np.sin(y * 60) * np.cos(x * 9)  # texture, so equalisation has something to rank
    lungs = ((np.abs(x - 0.5) > 0.08) & (np.abs(x - 0.5) < 0.3) & (y > 0.25) & (y < 0.75))
    img = np.where(body, 0.6 + ribs - 0.25 * lungs + 0.3 * y, 0.01)
    img = img + rng.normal(0, 0.01, (h, w))
    return np.clip(img, 0, 1).astype(np.float32)


def _with_border(img: np.ndarray, top: int, bottom: int, left: int, right: int, value: float,
                 text: bool = False) -> np.ndarray:
    """``img`` inside a uniform border (a detector edge), optionally with burnt-in text on it."""
    out = np.pad(img, ((top, bottom), (left, right)), constant_values=value)
    if text:
        pil = Image.fromarray((out * 255).astype(np.uint8))
        d = ImageDraw.Draw(pil)
        d.text((2, out.shape[0] - bottom + 2), "PORTABLE AP", fill=255)  # on the bottom border
        d.text((out.shape[1] - right + 2, 3), "R", fill=255)  # in the right border's corner
        out = np.asarray(pil, np.float32) / 255.0
    return out


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


def test_old_metadata_without_crop_preprocesses_exactly_as_before():
    # metadata written before the crop option: no "crop" key
    old = {"size": 32, "aspect": "pad", "intensity": "equalize", "output_range": [-1.0, 1.0]}
    spec = PreprocessSpec.from_dict(old)
    assert spec.crop == "none"
    assert spec.to_dict() == old  # written back unchanged: older readers still load it
    img = _with_border(_chest(), 10, 10, 30, 5, 0.0)
    before = apply_intensity(apply_resize(apply_aspect(img, "pad"), 32), "equalize") * 2.0 - 1.0  # the old steps
    np.testing.assert_array_equal(preprocess(img, spec), before.astype(np.float32))
    cal = NormalCalibration.from_samples(np.linspace(0, 1, 20), np.zeros((20, 4, 4)))
    meta = DetectorMetadata(method="ddad", backbone="ae", score_type="inter", preprocess=spec, calibration=cal)
    assert '"crop"' not in meta.to_json()
    assert DetectorMetadata.from_json(meta.to_json()).preprocess == spec
    cropped = PreprocessSpec(size=32, crop="field")
    assert PreprocessSpec.from_dict(cropped.to_dict()) == cropped and cropped.to_dict()["crop"] == "field"
    with pytest.raises(ValueError, match="crop must be one of"):
        PreprocessSpec(crop="lungs")


@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("text", [False, True])
def test_field_crop_removes_a_border_with_or_without_text(value, text):
    img = _chest()
    t, b, l, r = field_box(img)
    bordered = _with_border(img, 20, 30, 25, 40, value, text=text)
    t2, b2, l2, r2 = field_box(bordered)
    # the same box, shifted by the border, to a pixel or two (the field is found on a 256 px copy)
    assert abs((t2 - 20) - t) <= 3 and abs((b2 - 20) - b) <= 3
    assert abs((l2 - 25) - l) <= 3 and abs((r2 - 25) - r) <= 3
    spec = PreprocessSpec(size=64, intensity="equalize", crop="field")
    diff = np.abs(preprocess(bordered, spec) - preprocess(img, spec)).mean()
    assert diff < 0.08, diff  # near-identical model input (range -1..1; a pixel or two of shift of the texture)
    old = PreprocessSpec(size=64, intensity="equalize")
    assert np.abs(preprocess(bordered, old) - preprocess(img, old)).mean() > 0.2  # without the crop: far apart


def test_field_crop_trims_empty_background_beside_the_body_only():
    img = _chest()
    t, b, l, r = field_box(img)
    assert 0 < l < 0.2 * img.shape[1] and 0.8 * img.shape[1] < r < img.shape[1]  # the ellipse spans 12-88 %
    assert (b - t) > 0.75 * img.shape[0]
    assert field_box(np.full((50, 40), 0.4, np.float32)) == (0, 50, 0, 40)  # flat: nothing to tell, nothing cut
    dark = np.zeros((100, 100), np.float32)
    dark[45:55, 35:65] = np.random.default_rng(0).uniform(0.3, 0.6, (10, 30))  # a small field on black
    # rows 45-54 hold 30 % field (>= 20 %), columns 10 %: the first pass cuts rows only, the second (on
    # rows 30-69) sees columns 35-64 hold 25 %; both passes together cut at most FIELD_MAX_TRIM (30 %) per side
    assert field_box(dark) == (30, 70, 30, 70)
    saturated = np.zeros((100, 100), np.float32)
    saturated[20:80, 20:80] = 1.0  # white only: a white border, no field, nothing cut
    assert field_box(saturated) == (0, 100, 0, 100)
    np.testing.assert_array_equal(apply_crop(img, "none"), img)


@pytest.mark.parametrize("change", ["gamma 0.6", "gamma 1.6", "window"])
def test_field_crop_and_equalisation_are_indifferent_to_exposure(change):
    img = _with_border(_chest(seed=1), 12, 0, 18, 0, 0.0)
    shifted = {"gamma 0.6": img ** 0.6, "gamma 1.6": img ** 1.6, "window": 0.15 + 0.6 * img}[change]
    assert field_box(shifted) == field_box(img)
    spec = PreprocessSpec(size=64, intensity="equalize", crop="field")
    # not exactly equal: resizing averages pixels, which does not commute with a gamma change
    assert np.abs(preprocess(shifted, spec) - preprocess(img, spec)).mean() < 0.02
    old = PreprocessSpec(size=64, crop="field")
    assert np.abs(preprocess(shifted, old) - preprocess(img, old)).mean() > 0.05  # without equalisation: not so


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (7, 5), (64, 64)])
def test_field_quantiles_equal_numpys(shape):
    rng = np.random.default_rng(shape[0])
    values = (rng.integers(0, 9, shape) / 8).astype(np.float32)  # few levels: many ties
    qs = (0.005, 0.5, 0.995)
    np.testing.assert_allclose(_quantiles(values, qs), np.quantile(values, qs), rtol=0, atol=1e-12)


def _textured(seed: int = 0, size: int = 256) -> np.ndarray:
    """The chest image with detail at several scales (smoothed noise), as lung markings and ribs give."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = _chest(size, size, seed).astype(np.float64)
    for sigma, amplitude in ((1.0, 0.03), (3.0, 0.05), (8.0, 0.08)):
        field = gaussian_filter(rng.normal(0, 1, (size, size)), sigma)
        img += amplitude * field / field.std()
    return np.clip(img, 0, 1).astype(np.float32)


def _unsharp(img: np.ndarray, amount: float, sigma: float = 0.03) -> np.ndarray:
    """``u + amount (u - G * u)``: another system's sharpening (amount > 0) or softening (< 0)."""
    from scipy.ndimage import gaussian_filter

    return np.clip(img + amount * (img - gaussian_filter(img, sigma * max(img.shape), mode="reflect")), 0, 1)


def test_band_blur_is_scipys_gaussian_with_reflected_edges():
    from scipy.ndimage import gaussian_filter

    img = np.random.default_rng(1).random((40, 56))
    for fraction in BAND_SIGMAS:
        ours = _blur(img, fraction)
        # sigma a fraction of each side; scipy's "reflect" is the same half-sample symmetric edge
        ref = gaussian_filter(img, (fraction * 40, fraction * 56), mode="reflect", truncate=3.0)
        np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("amount", [-0.5, 1.0])
def test_equalize_bands_shrinks_what_another_systems_sharpening_or_softening_changes(amount):
    img = _textured()
    changed = _unsharp(img, amount)
    bands = PreprocessSpec(size=64, intensity="equalize-bands", output_range=(0, 1))
    plain = PreprocessSpec(size=64, intensity="equalize", output_range=(0, 1))
    # equalisation alone keeps the change: the fine bands are weaker (softened) or stronger (sharpened)
    ratio_plain = band_strengths(preprocess(changed, plain))[0] / band_strengths(preprocess(img, plain))[0]
    assert (ratio_plain < 0.85) if amount < 0 else (ratio_plain > 1.2)
    # with the band step the unchanged image has the targets' strengths, and the two finest bands of the changed
    # one move much less than under equalisation alone (one pass, then equalised: not undone exactly)
    np.testing.assert_allclose(band_strengths(preprocess(img, bands)), BAND_TARGETS, rtol=0.1)
    ratio_bands = band_strengths(preprocess(changed, bands))[:2] / band_strengths(preprocess(img, bands))[:2]
    ratio_plain = band_strengths(preprocess(changed, plain))[:2] / band_strengths(preprocess(img, plain))[:2]
    assert np.all(np.abs(np.log(ratio_bands)) < 0.7 * np.abs(np.log(ratio_plain)))
    moved_plain = np.abs(preprocess(changed, plain) - preprocess(img, plain)).mean()
    moved_bands = np.abs(preprocess(changed, bands) - preprocess(img, bands)).mean()
    assert moved_bands < 0.75 * moved_plain


def test_equalize_bands_keeps_equalisations_invariance_and_range():
    img = _textured(seed=2)
    spec = PreprocessSpec(size=64, intensity="equalize-bands", crop="field")
    out = preprocess(img, spec)
    assert out.dtype == np.float32 and out.shape == (64, 64) and -1.0 < out.min() < -0.95 and 0.95 < out.max() < 1.0
    np.testing.assert_allclose(np.sort(out.ravel()), np.sort(preprocess(_textured(seed=3), spec).ravel()),
                               atol=1e-6)  # equalised: the same grey levels for any image
    small = apply_resize(img, 64)  # a gamma change of the input to the step: nothing moves (equalised first)
    np.testing.assert_array_equal(apply_intensity(small ** 2.0, "equalize-bands"), apply_intensity(small, "equalize-bands"))
    flat = preprocess(np.full((50, 50), 0.4, np.float32), PreprocessSpec(size=32, intensity="equalize-bands"))
    assert np.all(np.isfinite(flat)) and np.ptp(flat) == 0.0  # no detail to scale: no division by zero
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
