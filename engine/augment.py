"""Train-time acquisition augmentation: what another hospital's radiographs change.

Applied on the fly to preprocessed batches (N, C, S, S) in the preprocessing's output range, so
the cached training tensor stays as it is. Each image independently gets, each with probability
``p``:
- geometry: zoom 0.88–1.12, shift ±6 %, rotation ±5° (collimation, field of view, positioning),
  outside the image filled with black as on a detector edge; with ``framing=True`` (DDAD's
  ``augment="acquisition-framing"``) magnification up to 1.45 and shift ±10 %: a tighter,
  off-centre field whose edges cut the lung apices or bases, as a collimated or off-centre
  patient gives and as the field crop cannot undo; with ``aspect=A > 1`` (DDAD's
  ``augment="acquisition-aspect"``) also one axis stretched by a factor log-uniform in [1, A]
  (rows or columns, each image's draw): an original of another width-to-height ratio resized
  to the same square, which in the Kermany source differs between normal and pneumonia images
  (the 16 full-size originals: 1.12–1.39 against 1.25–1.73), so a detector can learn the ratio;
- processing (with ``processing=True``, DDAD's ``augment="acquisition-processing"``): the
  image's local contrast raised or lowered, ``u + a (u − G_σ * u)`` with a Gaussian of σ 1–8 % of
  the image and ``a`` in [−0.6, 1.0]: the unsharp masking and dynamic-range compression that
  radiography systems apply in their own amounts (a hazier, lower-contrast batch, which the
  equalisation cannot undo, not being a change of grey levels alone);
- exposure: gamma 0.7–1.4 and contrast/brightness ±10 % (skipped when the preprocessing
  equalises intensities, which already removes any monotonic exposure change);
- resolution: a Gaussian blur, sigma 0–0.9 px at the model's resolution (lower-resolution systems);
- noise: additive Gaussian noise, sigma 0–0.02 of the range (low dose).
All randomness comes from the given generator, so a resumed run replays the same augmentations.
Not part of the papers' recipes: an option (``augment="acquisition"``), reported separately.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


ASPECT_STRETCH = 1.35
"""``augment="acquisition-aspect"``'s largest stretch of one axis: the ratio of the mean
width-to-height ratios of the 16 full-size Kermany originals, pneumonia against normal (1.51 / 1.24 =
1.22), with room for the spread within each (1.12–1.73)."""


PROCESSING_SIGMA = (0.01, 0.08)
"""``processing``'s Gaussian σ, as a fraction of the image side."""
PROCESSING_AMOUNT = (-0.6, 1.0)
"""``processing``'s local-contrast change ``a``: below 0 softer (hazier), above 0 sharper."""


class AcquisitionAugment:
    """Random acquisition changes for a batch.

    Args:
        output_range: (low, high) of the preprocessed images (e.g. (-1, 1)).
        photometric: also change exposure (False when intensities are equalised anyway).
        p: probability of each kind of change per image.
        framing: the wider geometry (magnification 0.88–1.45, shift ±10 %) instead of 0.88–1.12, ±6 %.
        aspect: the largest stretch of one axis against the other (1.0: none); with the geometry.
        processing: also change the local contrast (see the module docstring).
    """

    def __init__(self, output_range: tuple[float, float], photometric: bool = True, p: float = 0.5,
                 framing: bool = False, aspect: float = 1.0, processing: bool = False) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if not aspect >= 1.0:
            raise ValueError(f"aspect must be >= 1, got {aspect!r}")
        self.aspect = float(aspect)
        self.processing = processing
        self.low, self.high = float(output_range[0]), float(output_range[1])
        self.photometric = photometric
        self.p = p
        self.zoom = (0.88, 1.45) if framing else (0.88, 1.12)
        self.shift = 0.2 if framing else 0.12  # in affine_grid's [-1, 1] coordinates: half that of the width

    def _uniform(self, n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> Tensor:
        return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)

    def _mask(self, n: int, g: torch.Generator, device: torch.device) -> Tensor:
        return (torch.rand(n, generator=g) < self.p).to(device)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        n, dev = x.shape[0], x.device
        u = (x - self.low) / (self.high - self.low)  # [0, 1], black = 0
        # geometry: inverse affine map from output to input coordinates, black outside
        on = self._mask(n, g, dev)
        zoom = torch.where(on, self._uniform(n, *self.zoom, g, dev), torch.ones(n, device=dev))
        angle = torch.where(on, self._uniform(n, -5.0, 5.0, g, dev), torch.zeros(n, device=dev)) * math.pi / 180
        tx = torch.where(on, self._uniform(n, -self.shift, self.shift, g, dev), torch.zeros(n, device=dev))
        ty = torch.where(on, self._uniform(n, -self.shift, self.shift, g, dev), torch.zeros(n, device=dev))
        sx = sy = torch.ones(n, device=dev)
        if self.aspect > 1.0:  # drawn only then: the other modes replay their augmentations unchanged
            log_a = self._uniform(n, -math.log(self.aspect), math.log(self.aspect), g, dev)
            sy = torch.where(on, log_a.clamp(min=0).exp(), sy)  # rows stretched: a wider original
            sx = torch.where(on, (-log_a).clamp(min=0).exp(), sx)  # columns stretched: a narrower one
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos / sx, -sin / sy, tx], 1), torch.stack([sin / sx, cos / sy, ty], 1)], 1)
        grid = F.affine_grid(theta, list(u.shape), align_corners=False)
        u = torch.where(on[:, None, None, None], F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros",
                                                             align_corners=False), u)
        if self.processing:  # drawn only then: the other modes replay their augmentations unchanged
            on = self._mask(n, g, dev)[:, None, None, None]
            sigma = self._uniform(n, *PROCESSING_SIGMA, g, dev) * u.shape[-1]
            amount = self._uniform(n, *PROCESSING_AMOUNT, g, dev)[:, None, None, None]
            u = torch.where(on, (u + amount * (u - _gaussian_blur(u, sigma, radius=_radius(u)))).clamp(0, 1), u)
        if self.photometric:
            on = self._mask(n, g, dev)[:, None, None, None]
            gamma = self._uniform(n, math.log(0.7), math.log(1.4), g, dev).exp()[:, None, None, None]
            contrast = self._uniform(n, 0.9, 1.1, g, dev)[:, None, None, None]
            bright = self._uniform(n, -0.1, 0.1, g, dev)[:, None, None, None]
            v = ((u.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
            u = torch.where(on, v, u)
        on = self._mask(n, g, dev)[:, None, None, None]
        sigma = self._uniform(n, 0.3, 0.9, g, dev)
        u = torch.where(on, _gaussian_blur(u, sigma), u)
        on = self._mask(n, g, dev)[:, None, None, None]
        noise = torch.randn(u.shape, generator=g).to(dev) * self._uniform(n, 0.0, 0.02, g, dev)[:, None, None, None]
        u = torch.where(on, (u + noise).clamp(0, 1), u)
        return u * (self.high - self.low) + self.low


def _radius(u: Tensor) -> int:
    """Kernel radius for the processing blur: 3 σ at the largest σ, within the image."""
    return min(math.ceil(3 * PROCESSING_SIGMA[1] * u.shape[-1]), min(u.shape[-2:]) - 1)


def _gaussian_blur(u: Tensor, sigma: Tensor, radius: int = 2) -> Tensor:
    """Per-image separable Gaussian blur (sigma per image, kernel radius ``radius``)."""
    n, c, h, w = u.shape
    r = torch.arange(-radius, radius + 1, device=u.device, dtype=u.dtype)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (n, 2 radius + 1)
    x = u.reshape(1, n * c, h, w)
    kc = k.repeat_interleave(c, 0)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kc[:, None, None, :], groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kc[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)
