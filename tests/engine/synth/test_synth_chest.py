"""engine.synth.generate_chest: determinism, ranges, anatomy sanity, variation, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from cxrscreen.engine.synth import generate_chest


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def test_same_seed_same_image_other_seed_other_image():
    a, b, c = generate_chest(7, 64), generate_chest(7, 64), generate_chest(8, 64)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert np.abs(a.pixels - c.pixels).mean() > 0.02


def test_generator_seed_is_reported_and_reproducible():
    rng = np.random.default_rng(3)
    first = generate_chest(rng, 64)
    second = generate_chest(rng, 64)  # the generator advanced: another patient
    assert first.seed != second.seed
    np.testing.assert_array_equal(generate_chest(first.seed, 64).pixels, first.pixels)


@pytest.mark.parametrize("size", [16, 64, (96, 128), (128, 80)])
def test_shape_dtype_and_range(size):
    chest = generate_chest(1, size)
    shape = (size, size) if isinstance(size, int) else size
    assert chest.pixels.shape == chest.lung_mask.shape == chest.heart_mask.shape == shape
    assert chest.pixels.dtype == np.float32
    assert chest.lung_mask.dtype == bool
    assert 0.0 <= chest.pixels.min() and chest.pixels.max() <= 1.0
    assert np.isfinite(chest.pixels).all()
    assert chest.mask is None and chest.finding == "normal"


def test_uses_the_display_range():
    # dark air outside the body, bright bone/markers: not a washed-out band
    p = generate_chest(2, 128).pixels
    assert np.percentile(p, 1) < 0.1
    assert np.percentile(p, 99) > 0.7


@pytest.mark.parametrize("seed", range(6))
def test_lungs_are_darker_than_heart_and_mediastinum(seed):
    chest = generate_chest(seed, 128)
    lungs = chest.pixels[chest.lung_mask].mean()
    heart = chest.pixels[chest.heart_mask].mean()
    assert 0.05 * chest.pixels.size < chest.lung_mask.sum() < 0.5 * chest.pixels.size
    assert chest.heart_mask.sum() > 0.02 * chest.pixels.size
    assert heart - lungs > 0.2
    # the heart lies low and to the image's right of the midline (the patient's left)
    rows, cols = np.nonzero(chest.heart_mask)
    assert cols.mean() > 0.5 * chest.pixels.shape[1]
    assert rows.mean() > 0.45 * chest.pixels.shape[0]


def test_two_lungs_either_side_of_the_mediastinum():
    chest = generate_chest(4, 128, variation=0.0, pose=False)
    labels, n = ndimage.label(chest.lung_mask)
    assert n == 2
    centres = [np.nonzero(labels == i)[1].mean() for i in (1, 2)]
    assert min(centres) < 64 < max(centres)
    # the midline column between them is brighter than both lungs (mediastinum, spine)
    assert chest.pixels[40:80, 62:66].mean() > chest.pixels[chest.lung_mask].mean() + 0.2


def _rib_band_anisotropy(pixels: np.ndarray, lung: np.ndarray) -> tuple[float, float]:
    """Ribs are near-horizontal bands ~18 px apart at 256 px: in the 2-D spectrum of a patch
    of the right lung (image left) they put power at vertical frequencies of periods 12-35 px.

    Returns:
        (ratio of vertical- to horizontal-frequency power in that band, dominant period in px).
    """
    half = lung[:, : lung.shape[1] // 2]
    depth = ndimage.distance_transform_edt(half)
    r0, c0 = np.unravel_index(np.argmax(depth), depth.shape)
    k = 40
    patch = pixels[r0 - k : r0 + k, c0 - k : c0 + k]
    patch = patch - ndimage.gaussian_filter(patch, 8)
    power = np.abs(np.fft.fft2(patch * np.outer(np.hanning(2 * k), np.hanning(2 * k)))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(2 * k), np.fft.fftfreq(2 * k), indexing="ij")
    f = np.hypot(fx, fy)
    band = (f > 1 / 35) & (f < 1 / 12)
    vertical = band & (np.abs(fy) > np.abs(fx))
    horizontal = band & (np.abs(fy) <= np.abs(fx))
    peak = np.argmax(np.where(vertical, power, 0.0))
    return float(power[vertical].sum() / power[horizontal].sum()), float(1.0 / f.ravel()[peak])


@pytest.mark.parametrize("seed", [0, 3])
def test_ribs_make_a_periodic_pattern_over_the_lungs(seed, monkeypatch):
    chest = generate_chest(seed, 256, marker=False)
    ratio, period = _rib_band_anisotropy(chest.pixels, chest.lung_mask)
    assert ratio > 2.5
    assert 12 <= period <= 35  # posterior ribs ~0.12 units apart: 1/17 of the image height
    # control: the same chest without ribs has no such oriented periodicity (vessels are
    # roughly isotropic)
    import cxrscreen.engine.synth.bones as bones

    monkeypatch.setattr(bones, "ribs", lambda anat, x, y, wall: np.zeros_like(x))
    flat = generate_chest(seed, 256, marker=False)
    assert _rib_band_anisotropy(flat.pixels, flat.lung_mask)[0] < ratio / 2


def test_variation_changes_exposure_and_anatomy():
    varied = [generate_chest(s, 64, marker=False) for s in range(12)]
    fixed = [generate_chest(s, 64, variation=0.0, pose=False, marker=False) for s in range(12)]
    assert np.std([c.pixels.mean() for c in varied]) > 0.02
    assert np.std([c.lung_mask.mean() for c in varied]) > 0.005
    # without variation only the noise differs between seeds
    assert np.std([c.pixels.mean() for c in fixed]) < 0.002
    assert np.abs(fixed[0].pixels - fixed[1].pixels).mean() < 0.03
    np.testing.assert_array_equal(fixed[0].lung_mask, fixed[1].lung_mask)


def test_marker_is_a_bright_tag_in_a_top_corner():
    with_marker = generate_chest(5, 128).pixels
    without = generate_chest(5, 128, marker=False).pixels
    rows, cols = np.nonzero(np.abs(with_marker - without) > 0.05)
    assert len(rows) > 20
    assert rows.max() < 0.25 * 128
    assert cols.max() < 0.2 * 128 or cols.min() > 0.8 * 128
    assert with_marker[rows, cols].max() > 0.95  # lead is opaque: saturated white
    assert (with_marker - without)[rows, cols].mean() > 0.2


def test_pose_moves_the_anatomy_but_not_the_patient():
    posed = generate_chest(9, 128, marker=False)
    upright = generate_chest(9, 128, marker=False, pose=False)
    assert not np.array_equal(posed.lung_mask, upright.lung_mask)
    # same patient: similar lung area (zoom changes it by at most ~30 %)
    assert 0.7 < posed.lung_mask.sum() / upright.lung_mask.sum() < 1.4


def test_same_patient_at_every_size():
    small = generate_chest(11, 64).pixels
    large = _block_mean(generate_chest(11, 256).pixels, 4)
    assert np.corrcoef(small.ravel(), large.ravel())[0, 1] > 0.95
    assert np.abs(small - large).mean() < 0.04


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"size": 8}, ValueError, "size"),
        ({"size": (64, 10000)}, ValueError, "size"),
        ({"size": 64.0}, TypeError, "size"),
        ({"lesion": "tumour"}, ValueError, "tumour"),
        ({"lesion_strength": -1.0}, ValueError, "lesion_strength"),
        ({"variation": 3.0}, ValueError, "variation"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, error, words):
    with pytest.raises(error, match=words):
        generate_chest(0, **{"size": 32, **kwargs})


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), ("3", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_seed(seed, error):
    with pytest.raises(error, match="seed"):
        generate_chest(seed, 32)


def test_fast_enough_for_test_fixtures():
    # the budget is 50 ms for 256 px on a free core; allow for a busy shared machine
    generate_chest(0, 256)
    for size, budget in ((64, 0.03), (256, 0.15)):
        times = []
        for seed in range(5):
            start = time.perf_counter()
            generate_chest(seed, size)
            times.append(time.perf_counter() - start)
        assert np.median(times) < budget, f"{size} px took {np.median(times) * 1000:.1f} ms"
