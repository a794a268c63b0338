"""IGD's global model (Chen, Tian, Pang, Liu, Wang, Carneiro, "Deep One-Class Classification via
Interpolated Gaussian Descriptor", AAAI 2022; code github.com/tianyu0207/IGD, ``p256/mvtec_module.py``
and ``p256/ssim_main.py``) on a one-channel ResNet18 encoder: the networks only. Training is in
``engine.methods.msacl_igd.recipe``.

- :class:`IGDDecoder`: ``twoin1Generator256.generate`` for any power-of-two size: Linear to
  8·dim x 4 x 4, an upsampling conv, residual "up" blocks (BatchNorm), BatchNorm, ReLU and a
  5 x 5 upsampling conv to one channel (no tanh, as the code at 256 px). The code's
  ``UpSampleConv`` (four copies of the input, depth-to-space) is nearest-neighbour upsampling
  followed by the conv: written as that here.
- :class:`IGDCritic`: ``VisualDiscriminator256``: a 5 x 5 stride-2 conv, residual "down" blocks
  (LayerNorm over C x H x W), a stride-2 conv to 4 x 4, Linear to one value (the interpolation
  critic: it predicts the mixing coefficient α of a decoded latent interpolation).
- :func:`reconstruction_error`: 0.85·(1 − MS-SSIM) + 0.15·L1 / range per image (MS-SSIM of
  ``pytorch_msssim``, :func:`ms_ssim`; its window fits the input size, :func:`ssim_window`).
- :class:`IGDScorer`: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)): score = ξ·rec +
  (1 − ξ)·(1 − h), h = exp(−‖z − c‖² / σ) (paper Eq. 10-11); the heatmap is the absolute
  residual |x − x̂| / range, Gaussian-blurred (the global model has no map of its own).

Shapes: images (N, 1, S, S); encoder features (N, 512); latents (N, L).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.models.wscxr import GaussianBlur

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # IGD p256/ssim_main.py msssim_weight


def ssim_window(size: int, largest: int = 11) -> int:
    """The largest odd Gaussian window ≤ ``largest`` that ``pytorch_msssim.ms_ssim`` accepts at
    ``size`` px (it needs size > (window − 1) · 16 for its four downsamplings): 11 at 256 px, 3 at 64."""
    window = largest if largest % 2 else largest - 1
    while window > 1 and not size > (window - 1) * 16:
        window -= 2
    return window


def _levels(size: int, smallest: int = 4) -> int:
    levels = math.log2(size / smallest)
    if size < 4 * smallest or not levels.is_integer():
        raise ValueError(f"IGD needs a power-of-two input size of at least {4 * smallest} px, got {size}")
    return int(levels)


class _UpBlock(nn.Module):
    """IGD's ResidualBlock(resample="up"): BN, ReLU, up-conv, BN, ReLU, conv, plus an up-conv shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        y = self.conv1(F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest"))
        return self.shortcut(up) + self.conv2(F.relu(self.bn2(y)))


class _DownBlock(nn.Module):
    """IGD's ResidualBlock(resample="down") of the critic: LN, ReLU, conv, LN, ReLU, conv + mean-pool,
    plus a mean-pool + 1 x 1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int, hw: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm([c_in, hw, hw]), nn.LayerNorm([c_in, hw, hw])
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.ln2(self.conv1(F.relu(self.ln1(x))))))
        return self.shortcut(F.avg_pool2d(x, 2)) + F.avg_pool2d(y, 2)


class IGDDecoder(nn.Module):
    """Latent (N, L) -> image (N, 1, S, S) (see the module docstring).

    Args:
        latent: L (the code: 128).
        size: S, a power of two >= 16.
        dim: the width (the code: 64).
    """

    def __init__(self, latent: int, size: int, dim: int = 64) -> None:
        super().__init__()
        blocks = _levels(size) - 2  # doublings from 4 px, less the first and the last up-conv
        widths = [8 * dim, 4 * dim, 2 * dim, dim][-blocks:] if blocks else []
        if blocks > 4:
            widths = [8 * dim] * (blocks - 4) + [8 * dim, 4 * dim, 2 * dim, dim]
        self.dim = dim
        self.ln1 = nn.Linear(latent, 4 * 4 * 8 * dim)
        self.up1 = nn.Conv2d(8 * dim, 8 * dim, 3, padding=1)
        chans = [8 * dim, *widths]
        self.blocks = nn.Sequential(*[_UpBlock(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.bn = nn.BatchNorm2d(chans[-1])
        self.up2 = nn.Conv2d(chans[-1], 1, 5, padding=2)

    def forward(self, z: Tensor) -> Tensor:
        x = self.ln1(z).reshape(-1, 8 * self.dim, 4, 4)
        x = self.blocks(self.up1(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        return self.up2(F.interpolate(F.relu(self.bn(x)), scale_factor=2.0, mode="nearest"))


class IGDCritic(nn.Module):
    """Image (N, 1, S, S) -> (N,), the interpolation critic (see the module docstring)."""

    def __init__(self, size: int, dim: int = 64) -> None:
        super().__init__()
        blocks = _levels(size) - 2  # from S/2 down to 8 px, then the stride-2 conv to 4
        widths = [2 * dim, 4 * dim, 8 * dim, 8 * dim][:blocks] + [8 * dim] * max(0, blocks - 4)
        self.conv1 = nn.Conv2d(1, dim, 5, stride=2, padding=2)
        chans = [dim, *widths]
        self.blocks = nn.Sequential(*[_DownBlock(a, b, size // 2 ** (i + 1))
                                      for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
        self.conv2 = nn.Conv2d(chans[-1], chans[-1], 3, stride=2, padding=1)
        self.ln1 = nn.Linear(4 * 4 * chans[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln1(self.conv2(self.blocks(self.conv1(x))).flatten(1)).reshape(-1)


def ms_ssim(x: Tensor, y: Tensor, data_range: float, window: int) -> Tensor:
    """MS-SSIM per image (N,) of one-channel images (N, 1, S, S), S a power of two.

    ``pytorch_msssim.ms_ssim(size_average=False, weights=MSSSIM_WEIGHTS)`` with its own per-level
    SSIM (``pytorch_msssim.ssim._ssim``), less the leading ``squeeze`` of trailing dimensions that
    the package does for 5-D input: exported to ONNX, a no-op squeeze becomes a Squeeze node that
    onnxruntime rejects. A power-of-two side needs no padding before each 2 x 2 mean pool.
    """
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    win = _fspecial_gauss_1d(window, 1.5).repeat(x.shape[1], 1, 1, 1).to(x)
    weights = x.new_tensor(MSSSIM_WEIGHTS)
    levels = []
    for level in range(len(MSSSIM_WEIGHTS)):
        ssim, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False, K=(0.01, 0.03))
        if level < len(MSSSIM_WEIGHTS) - 1:
            levels.append(torch.relu(cs))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    levels.append(torch.relu(ssim))
    return torch.prod(torch.stack(levels) ** weights.reshape(-1, 1, 1), dim=0).mean(1)


def reconstruction_error(x: Tensor, rec: Tensor, data_range: float, window: int, ssim_weight: float = 0.85) -> Tensor:
    """Per image (N,): ssim_weight·(1 − MS-SSIM) + (1 − ssim_weight)·mean |x − x̂| / range (IGD's ``ms_ssim_l1``)."""
    ms = ms_ssim(x, rec, data_range, window)
    l1 = (x - rec).abs().mean(dim=(1, 2, 3)) / data_range
    return ssim_weight * (1.0 - ms) + (1.0 - ssim_weight) * l1


def gaussian_normality(z: Tensor, centre: Tensor, sigma: Tensor) -> Tensor:
    """h = exp(−‖z − c‖² / σ) per latent (N,) (paper Eq. 10; IGD's ``dist``)."""
    return torch.exp(-((z - centre) ** 2).sum(dim=1) / sigma)


class IGDScorer(nn.Module):
    """The exported detector: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)).

    Args:
        stem: the frozen encoder, image -> (N, 512).
        head: the trained Linear(512, L).
        decoder: the trained :class:`IGDDecoder`.
        centre, sigma: the Gaussian descriptor's c (L,) and σ (scalar tensor).
        xi: ξ, the reconstruction's share of the score.
        data_range, window, ssim_weight: of :func:`reconstruction_error`.
        blur_sigma: σ of the heatmap blur in pixels.
    """

    def __init__(self, stem: nn.Module, head: nn.Linear, decoder: IGDDecoder, centre: Tensor, sigma: Tensor, xi: float,
                 size: int, data_range: float, window: int, ssim_weight: float, blur_sigma: float) -> None:
        super().__init__()
        self.stem, self.head, self.decoder = stem, head, decoder
        self.register_buffer("centre", centre.float().reshape(-1).clone())
        self.register_buffer("sigma", sigma.float().reshape(()).clone())
        self.xi, self.data_range, self.window, self.ssim_weight = xi, data_range, window, ssim_weight
        self.blur = GaussianBlur(blur_sigma, size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.head(self.stem(x))
        rec = self.decoder(z)
        error = reconstruction_error(x, rec, self.data_range, self.window, self.ssim_weight)
        score = self.xi * error + (1.0 - self.xi) * (1.0 - gaussian_normality(z, self.centre, self.sigma))
        return score, self.blur((x - rec).abs()[:, 0] / self.data_range)
