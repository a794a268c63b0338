"""MedMix synthetic lesions and MSACL's views (imports torch). The method: ``engine.methods.msacl``.

MedMix (Tian et al. 2023, §3.1): class A_n holds n pasted "lesions", n = 0..3. The paper does
not give their sizes or strengths; these are the choices (README "Methods", MSACL):

- a lesion is a box of side U[``side_min``, ``side_max``] × the image side (each side drawn
  apart, so the aspect varies), cut at a uniform position of *another* normal image of the
  batch (the image itself when the batch has one);
- it is changed by colour jitter (contrast × U[0.7, 1.3] about its mean, brightness
  + U[−0.15, 0.15] of the [0, 1] range), a non-linear intensity transform (gamma
  exp(U[log 0.5, log 2])) and Gaussian noise (σ ~ U[0.01, 0.05] of the range), clipped to it;
- it is pasted centred on a uniformly drawn lung pixel (AnatPaste's unsupervised lung mask,
  :func:`engine.methods.amae.anatpaste.lung_mask`; the whole image when no lung is found)
  through a soft ellipse inscribed in the box (opacity 1 inside 70 % of its radius, falling
  linearly to 0 at the edge), times the lung mask: nothing changes outside the lungs.

Views: every MedMix output gets two weak augmentations (:func:`weak_views`): a small zoom
(scale U[0.85, 1]), rotation (U[−5°, 5°]) and shift inside the zoomed margin, contrast
× U[0.9, 1.1] and brightness + U[−0.05, 0.05] (in [0, 1] units). No flip: the heart is on the
left. Relative patch positions (:func:`position_pairs`) follow CCD's
``colon_local/lag_loader.py`` ``generate_coords_position``.

All randomness comes from one ``torch.Generator`` (checkpointed with the run), so a resumed run
draws exactly what an uninterrupted one would. Images are (N, 1, S, S) in ``value_range``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# CCD colon_local/lag_loader.py: position class -> (row, column) direction of the second patch
POSITION_OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class MedMixSettings:
    """MedMix's lesion parameters (fractions of the image side, intensities in [0, 1] units)."""

    side_min: float = 0.08
    side_max: float = 0.2
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.15
    gamma: tuple[float, float] = (0.5, 2.0)
    noise: tuple[float, float] = (0.01, 0.05)
    in_lungs: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.side_min <= self.side_max < 1.0:
            raise ValueError(f"lesion sides must satisfy 0 < min <= max < 1, got ({self.side_min}, {self.side_max})")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=generator))


def lung_masks(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """AnatPaste's lung mask of every image (N, 1, S, S) -> (N, S, S) bool (computed once per run)."""
    from cxrscreen.engine.methods.amae.anatpaste import lung_mask

    low, high = value_range
    unit = (np.asarray(images, dtype=np.float64)[:, 0] - low) / (high - low)
    return np.stack([lung_mask(u) for u in unit]) if len(unit) else np.zeros((0, *unit.shape[1:]), bool)


def lesion_alpha(size: int, centre: tuple[int, int], box: tuple[int, int]) -> Tensor:
    """A soft ellipse inscribed in the box (h, w) centred at ``centre``: (S, S) in [0, 1], 1 at the centre."""
    rows = torch.arange(size, dtype=torch.float32).reshape(-1, 1)
    cols = torch.arange(size, dtype=torch.float32).reshape(1, -1)
    h, w = box
    r = torch.sqrt(((rows - centre[0]) / (h / 2)) ** 2 + ((cols - centre[1]) / (w / 2)) ** 2)
    return ((1.0 - r) / 0.3).clamp(0.0, 1.0)


def medmix(image: Tensor, n: int, donors: Tensor, mask: Tensor | None, generator: torch.Generator,
           settings: MedMixSettings = MedMixSettings(), value_range: tuple[float, float] = (-1.0, 1.0)
           ) -> tuple[Tensor, list[Tensor]]:
    """``image`` (1, S, S) with ``n`` pasted lesions cut from ``donors`` (M, 1, S, S).

    Args:
        mask: (S, S) bool lung mask, or None / all False for the whole image.

    Returns:
        (the image (1, S, S), the n lesions' opacity maps (S, S) each, zero outside the mask).
    """
    if n < 0:
        raise ValueError(f"the number of lesions must be >= 0, got {n}")
    if len(donors) == 0:
        raise ValueError("medmix needs at least one donor image")
    low, high = value_range
    size = image.shape[-1]
    region = mask if mask is not None and settings.in_lungs and bool(mask.any()) else torch.ones(size, size, dtype=torch.bool)
    inside = region.nonzero()
    out = (image[0] - low) / (high - low)
    alphas = []
    for _ in range(n):
        h = max(2, round(size * _uniform(generator, settings.side_min, settings.side_max)))
        w = max(2, round(size * _uniform(generator, settings.side_min, settings.side_max)))
        donor = (donors[_randint(generator, len(donors))][0] - low) / (high - low)
        top, left = _randint(generator, size - h + 1), _randint(generator, size - w + 1)
        patch = donor[top : top + h, left : left + w]
        mean = patch.mean()
        patch = (patch - mean) * _uniform(generator, *settings.contrast) + mean
        patch = patch + _uniform(generator, -settings.brightness, settings.brightness)
        gamma = math.exp(_uniform(generator, math.log(settings.gamma[0]), math.log(settings.gamma[1])))
        patch = patch.clamp(0.0, 1.0) ** gamma
        sigma = _uniform(generator, *settings.noise)
        patch = (patch + sigma * torch.randn(patch.shape, generator=generator)).clamp(0.0, 1.0)
        row, col = (int(v) for v in inside[_randint(generator, len(inside))])
        # the patch placed with its centre on (row, col); the part outside the image is cut off
        canvas = torch.zeros(size, size)
        r0, c0 = row - h // 2, col - w // 2
        rs, cs = slice(max(r0, 0), min(r0 + h, size)), slice(max(c0, 0), min(c0 + w, size))
        canvas[rs, cs] = patch[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0]
        footprint = torch.zeros(size, size)
        footprint[rs, cs] = 1.0
        alpha = lesion_alpha(size, (row, col), (h, w)) * footprint * region
        out = (1.0 - alpha) * out + alpha * canvas
        alphas.append(alpha)
    return (out * (high - low) + low).unsqueeze(0), alphas


def medmix_batch(images: Tensor, masks: Tensor | None, generator: torch.Generator, settings: MedMixSettings,
                 value_range: tuple[float, float], classes: int = 4) -> tuple[Tensor, Tensor]:
    """Every image (B, 1, S, S) as classes A0..A{classes-1}: ((B·classes, 1, S, S), labels (B·classes,)).

    Image i's class-n version is row ``i * classes + n``; donors are the batch's other images.
    """
    out, labels = [], []
    for i in range(len(images)):
        donors = torch.cat([images[:i], images[i + 1 :]]) if len(images) > 1 else images
        for n in range(classes):
            mixed, _ = medmix(images[i], n, donors, masks[i] if masks is not None else None, generator, settings,
                              value_range)
            out.append(mixed)
            labels.append(n)
    return torch.stack(out), torch.tensor(labels, dtype=torch.long)


def weak_views(images: Tensor, generator: torch.Generator, value_range: tuple[float, float]) -> Tensor:
    """One weak augmentation of every image (N, 1, S, S) (see the module docstring); no flip."""
    n = len(images)
    low, high = value_range
    scale = 0.85 + 0.15 * torch.rand(n, generator=generator)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(5.0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1.0 - scale).unsqueeze(1)
    contrast = 0.9 + 0.2 * torch.rand(n, generator=generator)
    brightness = (torch.rand(n, generator=generator) * 2 - 1) * 0.05
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    unit = (warped - low) / (high - low)
    mean = unit.mean(dim=(1, 2, 3), keepdim=True)
    unit = ((unit - mean) * contrast.reshape(-1, 1, 1, 1) + mean + brightness.reshape(-1, 1, 1, 1)).clamp(0.0, 1.0)
    return unit * (high - low) + low


def position_pairs(images: Tensor, patch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """One pair of neighbouring K x K patches per image (CCD's ``generate_coords_position``).

    The first patch is uniform in the image; the second lies in direction ``pos`` ∈ 0..7, offset by
    U{0..K/4 − 1} + 3K/4 pixels along each moving axis, clipped into the image.

    Returns:
        (first (N, 1, K, K), second (N, 1, K, K), pos (N,) long).
    """
    n, _, height, width = images.shape
    if not 1 <= patch <= min(height, width):
        raise ValueError(f"patch side must be in [1, {min(height, width)}], got {patch}")
    jitter, base = max(1, patch // 4), 3 * patch // 4
    firsts, seconds, positions = [], [], []
    for i in range(n):
        r1, c1 = _randint(generator, height - patch + 1), _randint(generator, width - patch + 1)
        pos = _randint(generator, len(POSITION_OFFSETS))
        dr, dc = POSITION_OFFSETS[pos]
        r2 = min(max(r1 + dr * (_randint(generator, jitter) + base), 0), height - patch)
        c2 = min(max(c1 + dc * (_randint(generator, jitter) + base), 0), width - patch)
        firsts.append(images[i, :, r1 : r1 + patch, c1 : c1 + patch])
        seconds.append(images[i, :, r2 : r2 + patch, c2 : c2 + patch])
        positions.append(pos)
    return torch.stack(firsts), torch.stack(seconds), torch.tensor(positions, dtype=torch.long)
