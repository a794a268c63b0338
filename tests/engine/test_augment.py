"""Acquisition augmentation: reproducible, in range, identity when off, black outside the image."""
from __future__ import annotations

import math

import pytest
import torch

from cxrscreen.engine.augment import AcquisitionAugment


def _batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(16, 1, 32, 32) * 2 - 1


def test_same_generator_state_same_augmentation():
    aug = AcquisitionAugment((-1, 1), p=0.5)
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_output_stays_in_range_and_p0_is_the_identity():
    x = _batch()
    out = AcquisitionAugment((-1, 1), p=1.0)(x, torch.Generator().manual_seed(0))
    assert out.min() >= -1 and out.max() <= 1 and out.shape == x.shape
    torch.testing.assert_close(AcquisitionAugment((-1, 1), p=0.0)(x, torch.Generator()), x)


def test_geometry_fills_outside_with_black_and_exposure_can_be_off():
    white = torch.ones(64, 1, 32, 32)
    out = AcquisitionAugment((-1, 1), photometric=False, p=1.0)(white, torch.Generator().manual_seed(1))
    corners = out[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < -0.5).any()  # some images were shrunk, shifted or rotated: black borders
    centre = out[:, 0, 12:20, 12:20]
    assert (centre.mean(dim=(1, 2)) > 0.95).all()  # no exposure change: the middle stays white (but for noise)


def test_exposure_changes_when_enabled():
    grey = torch.zeros(64, 1, 16, 16)  # 0 in [-1, 1] = mid grey
    out = AcquisitionAugment((-1, 1), photometric=True, p=1.0)(grey, torch.Generator().manual_seed(2))
    means = out[:, 0, 6:10, 6:10].mean(dim=(1, 2))
    assert means.std() > 0.03  # gamma / contrast / brightness differ per image


def test_invalid_probability():
    with pytest.raises(ValueError, match="p must be"):
        AcquisitionAugment((-1, 1), p=1.5)


def test_framing_magnifies_and_shifts_further():
    """DDAD's acquisition-framing: magnification up to 1.45 (a tighter field) against 1.12."""
    square = -torch.ones(256, 1, 64, 64)
    square[:, :, 24:40, 24:40] = 1.0  # a bright 16 x 16 square in the middle: its area measures the magnification
    g = torch.Generator
    areas = {framing: (AcquisitionAugment((-1, 1), photometric=False, p=1.0, framing=framing)(square, g().manual_seed(5))
                       > 0).sum(dim=(1, 2, 3)).float() / 256 for framing in (False, True)}
    assert areas[False].max() < 1.12 ** 2 * 1.1 < 1.45 ** 2 * 0.9 < areas[True].max()
    assert areas[True].min() > 0.5  # shifted, never lost


def _extent(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns each image's bright region spans."""
    return mask.any(dim=3).sum(dim=(1, 2)).float(), mask.any(dim=2).sum(dim=(1, 2)).float()


def test_aspect_stretches_one_axis_either_way_within_its_bound():
    """acquisition-aspect: rows or columns stretched up to 1.35x (another width-to-height ratio)."""
    square = -torch.ones(512, 1, 64, 64)
    square[:, :, 24:40, 24:40] = 1.0
    aug = AcquisitionAugment((-1, 1), photometric=False, p=1.0, framing=True, aspect=1.35)
    rows, cols = _extent(aug(square, torch.Generator().manual_seed(6)) > 0)
    ratio = rows / cols
    assert ratio.max() > 1.2 and ratio.min() < 1 / 1.2  # both axes get stretched, by more than 1.2 at times
    assert ratio.max() < 1.35 * 1.2 and ratio.min() > 1 / (1.35 * 1.2)  # never beyond the bound (+ pixel rounding)
    plain = AcquisitionAugment((-1, 1), photometric=False, p=1.0, framing=True)
    rows, cols = _extent(plain(square, torch.Generator().manual_seed(6)) > 0)
    assert ((rows / cols - 1).abs() < 0.2).all()  # framing alone keeps the square square (rotation, rounding)


@pytest.mark.parametrize("kwargs, total, row", [
    ({}, -828.3267, [0.322384, 0.125955, 0.441267, -0.446581]),
    ({"framing": True}, -595.1021, [-0.11441, -0.562711, -0.880257, -0.457578]),
    ({"framing": True, "photometric": False}, -688.1919, [0.08111, -0.196908, -0.356093, -0.071098]),
])
def test_earlier_modes_replay_the_augmentations_they_made_before_aspect_and_processing(kwargs, total, row):
    """A run of an earlier mode resumes with the same augmentations: the new draws are made only when asked
    for. The figures were computed with engine/augment.py as it was before the two options (commit c54d5ff)."""
    out = AcquisitionAugment((-1, 1), p=0.5, **kwargs)(_batch(), torch.Generator().manual_seed(3))
    assert float(out.double().sum()) == pytest.approx(total, abs=1e-3)
    torch.testing.assert_close(out[5, 0, 16, :4], torch.tensor(row), rtol=0, atol=1e-5)


def test_aspect_and_processing_change_the_augmentation_and_aspect_is_checked():
    x = _batch()
    a = AcquisitionAugment((-1, 1), p=0.5, framing=True)(x, torch.Generator().manual_seed(7))
    for kwargs in ({"aspect": 1.35}, {"processing": True}):
        assert not torch.equal(a, AcquisitionAugment((-1, 1), p=0.5, framing=True, **kwargs)(x, torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="aspect must be"):
        AcquisitionAugment((-1, 1), aspect=0.8)


@pytest.mark.parametrize("augment, framing, aspect", [("none", None, None), ("acquisition", False, 1.0),
                                                      ("acquisition-framing", True, 1.0),
                                                      ("acquisition-aspect", True, 1.35),
                                                      ("acquisition-processing", True, 1.0)])
def test_ddad_augment_setting_builds_that_augmentation(augment, framing, aspect):
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.methods.ddad.recipe import _Ensemble

    config = Config(backbone="ae", members=2, epochs=1, batch_size=4, augment=augment)
    module = _Ensemble("a", torch.zeros(8, 1, 64, 64), config, torch.device("cpu"), "separate")
    if framing is None:
        assert module.augment is None
    else:
        assert module.augment.zoom[1] == (1.45 if framing else 1.12) and module.augment.aspect == aspect
        assert module.augment.processing == (augment == "acquisition-processing")


def test_processing_raises_or_lowers_local_contrast():
    """acquisition-processing: local contrast up (unsharp masking) or down (haze), per image."""
    cols = torch.arange(64, dtype=torch.float32)
    x = (0.5 * torch.sin(2 * math.pi * cols / 16)).expand(256, 1, 64, 64).clone()  # stripes, 16 px period

    def contrast(aug: AcquisitionAugment) -> torch.Tensor:
        aug.zoom, aug.shift = (1.0, 1.0), 0.0  # geometry off (but for a rotation of at most 5 degrees)
        out = aug(x, torch.Generator().manual_seed(8))[..., 16:-16, 16:-16]
        return (out - out.mean(dim=(2, 3), keepdim=True)).abs().mean(dim=(1, 2, 3))

    base = contrast(AcquisitionAugment((-1, 1), photometric=False, p=1.0))  # blur (σ <= 0.9 px) barely dims them
    ratio = contrast(AcquisitionAugment((-1, 1), photometric=False, p=1.0, processing=True)) / base
    assert ratio.max() > 1.3 and ratio.min() < 0.8  # sharper and hazier images both occur


@pytest.mark.parametrize("intensity, photometric", [("none", True), ("percentile", True), ("equalize", False),
                                                    ("equalize-bands", False)])
def test_ddad_exposure_changes_are_trained_only_where_the_input_is_not_equalised(intensity, photometric):
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.methods.ddad.recipe import _Ensemble
    from cxrscreen.engine.preprocess import PreprocessSpec

    config = Config(backbone="ae", members=2, epochs=1, batch_size=4, augment="acquisition",
                    preprocess=PreprocessSpec(size=64, intensity=intensity))
    module = _Ensemble("a", torch.zeros(8, 1, 64, 64), config, torch.device("cpu"), "separate")
    assert module.augment.photometric == photometric  # equalised inputs: an exposure change would be undone anyway
