"""The per-pixel MS-SSIM map against scikit-image's SSIM and small hand-checked cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cxrscreen.models.ssim import MS_SSIM_WEIGHTS, ms_ssim_map, n_scales, ssim_map


def _pair(size: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, size, size, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(1, 1, size, size, generator=g)).clamp(-1, 1)
    return x, y


def test_single_scale_map_is_scikit_images_away_from_the_border():
    x, y = _pair()
    ours = ssim_map(x, y, data_range=2.0)[0].numpy()
    _, ref = structural_similarity(x[0, 0].numpy().astype(np.float64), y[0, 0].numpy().astype(np.float64),
                                   data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   full=True)
    # scikit-image pads with scipy's "reflect" (edge repeated), ours with torch's (edge not repeated):
    # the 11-px window reaches the padding only within 5 px of the border
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-5)


def test_identical_images_have_ms_ssim_one_everywhere():
    x, _ = _pair(64)
    got = ms_ssim_map(x, x.clone(), data_range=2.0)
    assert got.shape == (1, 64, 64)
    torch.testing.assert_close(got, torch.ones_like(got))


def test_one_scale_is_the_ssim_map_clamped_at_zero():
    x, y = _pair(32, seed=3)
    y = -x  # negatively correlated: SSIM < 0 in places
    single = ssim_map(x, y, 2.0)
    assert (single < 0).any()
    torch.testing.assert_close(ms_ssim_map(x, y, 2.0, scales=1), single.clamp(min=0))


def test_scales_combine_as_weighted_powers():
    x, y = _pair(32, seed=4)
    # two scales: cs at full resolution ^ w0/(w0+w1) times (l*cs) at half resolution, upsampled, ^ w1/(w0+w1)
    from cxrscreen.models.ssim import gaussian_window, ssim_components

    g = gaussian_window()
    _, cs0 = ssim_components(x, y, 2.0, g)
    l1, cs1 = ssim_components(torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2), 2.0, g)
    w0, w1 = MS_SSIM_WEIGHTS[0], MS_SSIM_WEIGHTS[1]
    coarse = (l1 * cs1).clamp(min=0) ** (w1 / (w0 + w1))
    expected = cs0.clamp(min=0) ** (w0 / (w0 + w1)) * coarse.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(ms_ssim_map(x, y, 2.0, scales=2), expected[:, 0])


def test_more_noise_more_error():
    x, _ = _pair(64)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    errors = [float((1 - ms_ssim_map(x, x + s * noise, 2.0)).mean()) for s in (0.05, 0.2, 0.5)]
    assert errors[0] < errors[1] < errors[2]


def test_number_of_scales_follows_the_image_size():
    # the coarsest side must hold the 11-px window: 64 -> 64, 32, 16; 224 -> ... 14; at most 5
    assert [n_scales(s) for s in (11, 21, 22, 32, 64, 224, 1024)] == [1, 1, 2, 2, 3, 5, 5]
    with pytest.raises(ValueError, match="smaller than the 11-px"):
        n_scales(10)
    with pytest.raises(ValueError, match="one shape"):
        ms_ssim_map(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 16), 2.0)
