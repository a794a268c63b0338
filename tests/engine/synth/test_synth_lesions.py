"""engine.synth lesions: masks inside the lungs, visible, local, and scaled by strength."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cxrscreen.engine.synth import LESION_KINDS, generate_chest

SIZE = 128


def _pair(seed: int, kind: str, strength: float = 1.0):
    return generate_chest(seed, SIZE), generate_chest(seed, SIZE, lesion=kind, lesion_strength=strength)


@pytest.mark.parametrize("kind", LESION_KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_mask_is_inside_the_lung_and_the_lesion_is_brighter(kind, seed):
    normal, lesion = _pair(seed, kind)
    assert lesion.finding == kind
    assert lesion.mask is not None and lesion.mask.dtype == bool
    assert lesion.mask.sum() >= 20
    assert not (lesion.mask & ~lesion.lung_mask).any()
    # same patient: the lung field is the lesion-free one
    np.testing.assert_array_equal(lesion.lung_mask, normal.lung_mask)
    # an opacity: clearly brighter than the same place without it
    assert lesion.pixels[lesion.mask].mean() - normal.pixels[lesion.mask].mean() > 0.08


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_lesion_changes_only_its_neighbourhood(kind):
    normal, lesion = _pair(5, kind)
    changed = np.abs(lesion.pixels - normal.pixels) > 1e-5
    # blur, soft margins and edge enhancement spread a lesion by a few pixels, no more
    near = ndimage.distance_transform_edt(~lesion.mask) <= 0.12 * SIZE
    assert changed.any()
    assert not (changed & ~near).any()


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_strength_scales_visibility_and_zero_is_invisible(kind):
    normal = generate_chest(6, SIZE)
    contrasts = []
    for strength in (0.0, 0.3, 1.0, 2.0):
        lesion = generate_chest(6, SIZE, lesion=kind, lesion_strength=strength)
        assert lesion.mask is not None and lesion.mask.any()  # the mask exists even at 0
        contrasts.append(lesion.pixels[lesion.mask].mean() - normal.pixels[lesion.mask].mean())
        if strength == 0.0:
            np.testing.assert_array_equal(lesion.pixels, normal.pixels)
    assert contrasts[0] == 0.0
    assert 0.0 < contrasts[1] < contrasts[2] < contrasts[3]


def test_kinds_have_their_own_shape_and_place():
    seeds = range(6)
    lung_area = [generate_chest(s, SIZE).lung_mask.sum() for s in seeds]
    nodules = [generate_chest(s, SIZE, lesion="nodule") for s in seeds]
    effusions = [generate_chest(s, SIZE, lesion="effusion") for s in seeds]
    # nodules are small: one to three blobs, a fraction of the lung field
    for chest, area in zip(nodules, lung_area):
        assert chest.mask.sum() < 0.12 * area
        labels, n = ndimage.label(chest.mask)
        assert 1 <= n <= 3
    # effusions sit at a lung base: below the lung field's middle
    for chest in effusions:
        lung_rows = np.nonzero(chest.lung_mask)[0]
        assert np.nonzero(chest.mask)[0].mean() > np.median(lung_rows)


def test_lesion_is_the_same_at_every_size():
    small = generate_chest(3, 64, lesion="nodule").mask
    large = generate_chest(3, 256, lesion="nodule").mask
    # the same place: the downsampled large mask overlaps the small one
    large_small = large.reshape(64, 4, 64, 4).mean(axis=(1, 3)) > 0.5
    overlap = (small & large_small).sum() / max((small | large_small).sum(), 1)
    assert overlap > 0.6


def _auroc(negatives: list[float], positives: list[float]) -> float:
    neg, pos = np.asarray(negatives)[:, None], np.asarray(positives)[None, :]
    return float((neg < pos).mean() + 0.5 * (neg == pos).mean())


def test_a_detector_fitted_on_normals_finds_lesions():
    # what the DDAD tests rely on, with a linear stand-in: PCA reconstruction error fitted on
    # 80 normals (the documented low-variation settings) separates unseen lesion images
    opts = {"variation": 0.3, "pose": False, "marker": False}
    train = np.stack([generate_chest(s, 48, **opts).pixels.ravel() for s in range(1000, 1080)])
    mean = train.mean(axis=0)
    basis = np.linalg.svd(train - mean, full_matrices=False)[2][:15]

    def score(pixels: np.ndarray) -> float:
        x = pixels.ravel() - mean
        return float(((x - (x @ basis.T) @ basis) ** 2).mean())

    normals = [score(generate_chest(s, 48, **opts).pixels) for s in range(2000, 2030)]
    for kind in LESION_KINDS:
        lesions = [score(generate_chest(s, 48, lesion=kind, **opts).pixels) for s in range(3000, 3030)]
        assert _auroc(normals, lesions) > 0.8, kind
