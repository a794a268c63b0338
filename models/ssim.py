"""Per-pixel multi-scale structural similarity (MS-SSIM) maps, in torch and exportable to ONNX.

SSIM (Wang et al., IEEE TIP 2004) and MS-SSIM (Wang, Simoncelli, Bovik, Asilomar 2003) with the
usual constants: an 11-tap Gaussian window of σ = 1.5, K1 = 0.01, K2 = 0.03, the five scale
weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and 2 × 2 average pooling between scales, as
the reference implementations (e.g. pytorch-msssim's ``ms_ssim``, scikit-image's
``structural_similarity`` for one scale).

What differs from a scalar MS-SSIM, and why: an anomaly map needs a value per pixel, so the
statistics are computed on a reflect-padded image (same size as the input, where the references
keep only the "valid" interior), each scale's contrast-structure map (and the coarsest scale's
luminance × contrast-structure map) is brought back to full resolution by nearest-neighbour
upsampling, and the maps are combined per pixel as the product of their weighted powers, each
clamped at 0 first (pytorch-msssim clamps its per-scale means the same way; a fractional power
of a negative value is undefined). Small images use fewer scales: as many of the five as keep
the coarsest side at least as large as the window (3 at 64 px, 5 at 224 px), with their weights
renormalised to sum to 1. No package offers a per-pixel MS-SSIM map (pytorch-msssim and piq
return one number per image), hence this module; its single-scale map equals scikit-image's
away from the border (tests/models/test_ssim.py).

Shapes: images (N, 1, H, W); maps (N, H, W).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> Tensor:
    """The normalised 1-D Gaussian (size,) of the SSIM window."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the window size must be an odd number >= 1, got {size}")
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def n_scales(size: int, window: int = WINDOW, most: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many scales (at most ``most``) keep the coarsest side of a ``size``-pixel image >= ``window``."""
    if size < window:
        raise ValueError(f"an image of {size} px is smaller than the {window}-px SSIM window")
    scales = 1
    while scales < most and size // 2**scales >= window:
        scales += 1
    return scales


def _filter(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian filtering of (N, 1, H, W), reflect-padded to the same size."""
    pad = g.numel() // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, g.reshape(1, 1, 1, -1))
    return F.conv2d(x, g.reshape(1, 1, -1, 1))


def ssim_components(x: Tensor, y: Tensor, data_range: float, g: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel luminance and contrast-structure terms (each (N, 1, H, W)) of images x and y."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mu_x * mu_x
    syy = _filter(y * y, g) - mu_y * mu_y
    sxy = _filter(x * y, g) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    contrast_structure = (2 * sxy + c2) / (sxx + syy + c2)
    return luminance, contrast_structure


def ssim_map(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """Single-scale SSIM per pixel: (N, H, W)."""
    luminance, cs = ssim_components(x, y, data_range, gaussian_window().to(x.device, x.dtype))
    return (luminance * cs)[:, 0]


def ms_ssim_map(x: Tensor, y: Tensor, data_range: float, scales: int | None = None) -> Tensor:
    """MS-SSIM per pixel of images x, y (N, 1, H, W): (N, H, W) in [0, 1] (1 = identical).

    Args:
        data_range: max - min of the pixel range (2 for [-1, 1]).
        scales: how many scales (None: :func:`n_scales` of the image's smaller side).
    """
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"x and y must be (N, 1, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    scales = scales or n_scales(min(h, w))
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"scales must be in 1 .. {len(MS_SSIM_WEIGHTS)}, got {scales}")
    weights = MS_SSIM_WEIGHTS[:scales]
    total = math.fsum(weights)
    g = gaussian_window().to(x.device, x.dtype)
    out = torch.ones_like(x)
    for j, weight in enumerate(weights):
        luminance, cs = ssim_components(x, y, data_range, g)
        term = luminance * cs if j == scales - 1 else cs
        term = torch.clamp(term, min=0.0) ** (weight / total)
        if j:
            term = F.interpolate(term, size=(h, w), mode="nearest")
        out = out * term
        if j < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out[:, 0]
