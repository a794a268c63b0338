"""Synthetic lung lesions: nodules, consolidation and effusion-like opacity, each with a mask.

A lesion is *sampled* once in anatomical coordinates (:func:`sample_lesion`: positions found by
rejection sampling against the analytic lung field, so the same seed puts it in the same place
at every image size) and *rendered* on a pixel grid (:func:`render_lesion`) as extra density
(brighter, as opacities are) plus a boolean mask that lies inside the lung field.

``strength`` scales the added density linearly: 1.0 is clearly visible at 64 px, 0.3 is
subtle, 0 adds nothing (the mask still says where the lesion would be).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from cxrscreen.engine.synth.anatomy import Anatomy, Side, lung_field
from cxrscreen.engine.synth.grid import smoothstep

LesionKind = Literal["nodule", "consolidation", "effusion"]
LESION_KINDS: tuple[str, ...] = get_args(LesionKind)

# peak added density at strength 1 (a posterior rib adds ~0.16, the lung is ~0.45 below soft tissue)
_NODULE_DENSITY = 0.35
_CONSOLIDATION_DENSITY = 0.3
_EFFUSION_DENSITY = 0.35


@dataclass(frozen=True)
class Wave:
    """A smooth random field: a sum of a few plane waves, in anatomical coordinates.

    Attributes:
        freqs: (K, 2) spatial frequencies (radians per unit) along x and y.
        phases: (K,) phases.
        amps: (K,) amplitudes.
    """

    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, n: int, freq: float) -> Wave:
        """``n`` waves with random directions around spatial frequency ``freq``."""
        angle = rng.uniform(0.0, 2.0 * np.pi, n)
        mag = freq * rng.uniform(0.6, 1.6, n)
        freqs = np.stack([mag * np.cos(angle), mag * np.sin(angle)], axis=1)
        return cls(freqs, rng.uniform(0.0, 2.0 * np.pi, n), rng.uniform(0.5, 1.0, n) / np.sqrt(n))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for (fx, fy), ph, a in zip(self.freqs, self.phases, self.amps):
            out += a * np.cos(fx * x + fy * y + ph)
        return out


@dataclass(frozen=True)
class Nodule:
    """Round opacities. ``centers``: (N, 2) x, y; ``radii``: (N,); ``lobulation``: edge waviness."""

    centers: np.ndarray
    radii: np.ndarray
    lobulation: np.ndarray  # (N, 2): amplitude and phase of a 3-lobed edge


@dataclass(frozen=True)
class Consolidation:
    """A fluffy airspace opacity in one lung zone, with an irregular border."""

    center: tuple[float, float]
    axes: tuple[float, float]
    angle: float
    texture: Wave


@dataclass(frozen=True)
class Effusion:
    """Pleural fluid at one lung base: a meniscus rising laterally over a dependent opacity.

    Attributes:
        side: -1 for the patient's right (image left), +1 for the left.
        level: height of the fluid's upper border at the medial side.
        meniscus: how much higher the border climbs at the lateral chest wall.
    """

    side: float
    level: float
    meniscus: float


LesionSpec = Nodule | Consolidation | Effusion


def _inside_lung(anat: Anatomy, px: np.ndarray, py: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    return lung_field(anat, px.astype(np.float32), py.astype(np.float32)) > threshold


def _draw_point(anat: Anatomy, rng: np.random.Generator, radius: float, y_range: tuple[float, float] = (-0.85, 0.55)) -> tuple[float, float]:
    """A point whose disc of ``radius`` lies inside the lung field (rejection sampling)."""
    ring = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False)
    for _ in range(500):
        cx = rng.uniform(-0.8, 0.8)
        cy = rng.uniform(*y_range)
        px = np.concatenate([[cx], cx + radius * np.cos(ring)])
        py = np.concatenate([[cy], cy + radius * np.sin(ring)])
        if _inside_lung(anat, px, py).all():
            return float(cx), float(cy)
    raise RuntimeError(f"no place for a lesion of radius {radius:.3f} in this lung field after 500 tries")


def sample_lesion(kind: LesionKind, anat: Anatomy, rng: np.random.Generator) -> LesionSpec:
    """Draw one lesion of ``kind`` for this anatomy.

    Raises:
        ValueError: ``kind`` is not one of :data:`LESION_KINDS`.
    """
    if kind == "nodule":
        n = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
        radii = rng.uniform(0.055, 0.095, n)
        centers = np.array([_draw_point(anat, rng, float(r) * 1.1) for r in radii])
        lob = np.stack([rng.uniform(0.0, 0.12, n), rng.uniform(0.0, 2 * np.pi, n)], axis=1)
        return Nodule(centers, radii, lob)
    if kind == "consolidation":
        axes = (float(rng.uniform(0.14, 0.24)), float(rng.uniform(0.12, 0.2)))
        center = _draw_point(anat, rng, 0.06, (-0.6, 0.35))
        return Consolidation(center, axes, float(rng.uniform(0, np.pi)), Wave.sample(rng, 6, 14.0))
    if kind == "effusion":
        sign = -1.0 if rng.random() < 0.55 else 1.0
        side = anat.right if sign < 0 else anat.left
        height = float(rng.uniform(0.08, 0.3))
        return Effusion(sign, side.dome_y - height, float(rng.uniform(0.1, 0.25)))
    raise ValueError(f"lesion must be one of {LESION_KINDS}, got {kind!r}")


def render_lesion(
    spec: LesionSpec, anat: Anatomy, x: np.ndarray, y: np.ndarray, lung: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Added density and mask of a lesion on a pixel grid.

    Args:
        spec: from :func:`sample_lesion`.
        anat: the anatomy it was sampled for.
        x, y: (H, W) anatomical coordinates of the pixels.
        lung: (H, W) soft lung field on the same grid.
        strength: density scale (>= 0).

    Returns:
        density: (H, W) float32 >= 0 to add to the chest's density.
        mask: (H, W) bool, inside ``lung > 0.5``.
    """
    in_lung = lung > 0.5
    if isinstance(spec, Nodule):
        dens = np.zeros_like(x)
        mask = np.zeros(x.shape, dtype=bool)
        for (cx, cy), r, (lob_a, lob_p) in zip(spec.centers, spec.radii, spec.lobulation):
            dx, dy = x - cx, y - cy
            edge = r * (1.0 + lob_a * np.sin(3.0 * np.arctan2(dy, dx) + lob_p))
            rel = np.sqrt(dx * dx + dy * dy) / edge
            # a sphere's projected thickness, with a slightly soft margin
            dens += np.sqrt(np.clip(1.0 - rel * rel, 0.0, None)) * smoothstep(1.0, 0.9, rel) + 0.15 * smoothstep(1.15, 0.95, rel)
            mask |= rel < 1.0
        dens = _NODULE_DENSITY * strength * np.clip(dens, 0.0, 1.3) * lung
    elif isinstance(spec, Consolidation):
        cx, cy = spec.center
        c, s = np.cos(spec.angle), np.sin(spec.angle)
        dx, dy = x - cx, y - cy
        xr = (c * dx + s * dy) / spec.axes[0]
        yr = (-s * dx + c * dy) / spec.axes[1]
        g = 1.0 - np.sqrt(xr * xr + yr * yr) + 0.45 * spec.texture(x, y)
        # patchy, ill-defined airspace filling: confluent in the middle, fluffy at the margin
        patchy = 0.75 + 0.35 * spec.texture(2.3 * y + 0.3, 2.3 * x - 0.2)
        fluffy = smoothstep(0.0, 0.4, g) * np.clip(patchy, 0.3, 1.2)
        dens = _CONSOLIDATION_DENSITY * strength * fluffy * lung
        mask = g > 0.1
    elif isinstance(spec, Effusion):
        side: Side = anat.right if spec.side < 0 else anat.left
        u = spec.side * x
        start = side.dome_u - 0.2
        rel = np.clip((u - start) / max(side.lateral_u - start, 0.1), 0.0, 1.2)
        # the meniscus: nearly level medially, climbing steeply along the lateral chest wall
        border = spec.level - spec.meniscus * (1.0 - np.sqrt(np.clip(1.0 - rel * rel, 0.0, None)))
        fluid = smoothstep(0.0, 0.18, y - border)
        hemithorax = u > 0.02
        dens = _EFFUSION_DENSITY * strength * fluid * lung * hemithorax
        mask = (y - border > 0.03) & hemithorax
    else:
        raise TypeError(f"unknown lesion spec {type(spec).__name__}")
    return dens.astype(np.float32), mask & in_lung
