"""AnatPaste: the unsupervised lung mask and the pasted synthetic anomalies."""
from __future__ import annotations

import numpy as np
import pytest

from cxrscreen.engine.methods.amae.anatpaste import AnatPasteSettings, anatpaste, lung_mask
from cxrscreen.engine.preprocess import apply_resize
from cxrscreen.engine.synth import generate_chest


@pytest.mark.parametrize("size, min_precision, min_recall", [(256, 0.95, 0.7), (64, 0.8, 0.7)])
def test_lung_mask_finds_the_synthetic_lungs(size, min_precision, min_recall):
    for seed in range(4):
        chest = generate_chest(seed, 256)
        image = apply_resize(chest.pixels, size)
        truth = apply_resize(chest.lung_mask.astype(np.float32), size) > 0.5
        found = lung_mask(image)
        overlap = (found & truth).sum()
        assert overlap / found.sum() >= min_precision, seed  # what it finds is lung
        assert overlap / truth.sum() >= min_recall, seed  # and most of the lung


def test_lung_mask_keeps_dark_in_body_regions_only():
    img = np.full((128, 128), 0.8, dtype=np.float32)
    img[40:100, 20:50] = 0.2  # a lung-sized dark region inside the body: kept
    img[0:30, 100:128] = 0.2  # dark air touching the border: cleared
    img[60:63, 90:93] = 0.2  # a 9-pixel speck (limit 400 px² at 256 px = 100 px² here): dropped
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)  # film noise
    found = lung_mask(np.clip(img, 0, 1))
    assert found[50:90, 25:45].all()
    assert not found[0:25, 105:128].any()
    assert not found[55:68, 85:98].any()
    assert not lung_mask(np.zeros((64, 64), np.float32)).any()  # a blank image has no lungs


def test_paste_area_shape_and_confinement():
    chest = generate_chest(0, 128)
    lungs = chest.lung_mask
    rng = np.random.default_rng(0)
    blurred = 0
    for _ in range(40):
        p = anatpaste(chest.pixels, rng, lungs=lungs)
        # 2–15 % of the image, up to the rounding of the patch sides
        assert 0.02 * 0.85 <= p.area_fraction <= 0.15 * 1.15
        top, left, h, w = p.source_box
        assert 0 <= top <= 128 - h and 0 <= left <= 128 - w
        assert 0.3 - 0.05 <= h / w <= 1 / 0.3 + 0.5  # aspect within [0.3, 1/0.3] up to rounding
        assert lungs[p.centre]  # pasted at a lung point
        assert not p.alpha[~lungs].any()  # only inside the lung mask
        assert p.alpha.max() <= 254 / 255 + 1e-6
        unchanged = p.alpha == 0
        np.testing.assert_array_equal(p.image[unchanged], chest.pixels[unchanged])
        assert 0.0 <= p.image.min() and p.image.max() <= 1.0
        levels = p.alpha[p.alpha > 0]
        if len(levels) and (levels < levels.max() - 1e-3).mean() > 0.2:
            blurred += 1  # a soft edge, not a hard-edged cut-out
    assert blurred >= 25  # the blur radius is 0 only one draw in 15 (and then the lung edge still cuts)


def test_pasting_changes_the_image_and_is_deterministic_per_seed():
    chest = generate_chest(1, 96)
    a = anatpaste(chest.pixels, np.random.default_rng(7))
    b = anatpaste(chest.pixels, np.random.default_rng(7))
    c = anatpaste(chest.pixels, np.random.default_rng(8))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert not np.array_equal(a.image, c.image)
    assert np.abs(a.image - chest.pixels).max() > 0.01


def test_no_lung_found_pastes_anywhere():
    flat = np.full((64, 64), 0.5, dtype=np.float32)
    flat[:, 32:] = 0.7  # texture to copy
    p = anatpaste(flat, np.random.default_rng(0))
    assert p.alpha.max() > 0


def test_settings_are_validated():
    with pytest.raises(ValueError, match="area_ratio"):
        AnatPasteSettings(area_ratio=(0.2, 0.1))
    with pytest.raises(ValueError, match="aspect_ratio"):
        AnatPasteSettings(aspect_ratio=2.0)
    with pytest.raises(ValueError, match="lungs mask shape"):
        anatpaste(np.zeros((8, 8)), np.random.default_rng(0), lungs=np.ones((4, 4), bool))
