"""Pulmonary vascular markings: branching trees from each hilum, tapering to the periphery.

The trees are grown in anatomical coordinates (:mod:`engine.synth.grid`) from the seed alone,
then splatted onto a square canvas and blurred (vessels are soft, round structures in
projection) and sampled at each pixel's anatomical position. The canvas resolution follows
the output size (a 64 px image does not pay for a 192 px canvas), but the trees and their
widths in anatomical units do not, so the same seed gives the same vessels at every size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxrscreen.engine.synth.filters import bilinear_sample, gaussian_filter

if TYPE_CHECKING:
    from cxrscreen.engine.synth.anatomy import Anatomy

EXTENT = 1.2  # the canvas covers [-EXTENT, EXTENT] in x and y
_LEVELS = 5
_POINTS = 8  # splat points per segment
_THICK_SIGMA = 0.019  # blur of the large (central) vessels, anatomical units
_THIN_SIGMA = 0.01


@dataclass(frozen=True)
class VesselTree:
    """Both lungs' vessel segments.

    Attributes:
        thick: (N, 5) x0, y0, x1, y1, width of the first two generations.
        thin: (M, 5) the same for the later generations.
    """

    thick: np.ndarray
    thin: np.ndarray


def _grow(rng: np.random.Generator, start: tuple[float, float], side: float, n_roots: int) -> list[np.ndarray]:
    """Segments of one lung's tree, level by level: (N, 5) arrays of x0, y0, x1, y1, width."""
    # roots fan out over the lung: up (apex), lateral, and down (the larger lower lobe)
    base = np.linspace(-0.5 * np.pi, 0.55 * np.pi, n_roots) + rng.normal(0.0, 0.08, n_roots)
    theta = np.where(side > 0, base, np.pi - base)  # mirrored for the patient's right lung
    # upper- and lower-lobe branches must reach further than the lateral ones
    length = (0.15 + 0.04 * rng.random(n_roots)) * (1.0 + 0.4 * np.abs(np.sin(base)))
    # the hilum is an extended structure: roots start around it, not from one point
    x0 = start[0] + 0.04 * np.cos(theta) + rng.normal(0.0, 0.012, n_roots)
    y0 = start[1] + 0.06 * np.sin(theta) + rng.normal(0.0, 0.012, n_roots)
    width = np.ones(n_roots)
    levels = []
    for _ in range(_LEVELS):
        x1 = x0 + length * np.cos(theta)
        y1 = y0 + length * np.sin(theta)
        levels.append(np.stack([x0, y0, x1, y1, width], axis=1))
        # each branch splits in two, diverging, shorter and thinner
        n = len(theta)
        spread = 0.25 + 0.3 * rng.random(n)
        bias = rng.normal(0.0, 0.12, n)
        theta = np.concatenate([theta - spread + bias, theta + spread + bias])
        length = np.concatenate([length, length]) * (0.62 + 0.15 * rng.random(2 * n))
        x0, y0 = np.concatenate([x1, x1]), np.concatenate([y1, y1])
        width = np.concatenate([width, width]) * 0.68
    return levels


def grow_trees(anat: Anatomy, rng: np.random.Generator) -> VesselTree:
    """Grow both lungs' vessel trees from their hila (a fixed number of draws)."""
    thick: list[np.ndarray] = []
    thin: list[np.ndarray] = []
    for side, sgn in ((anat.right, -1.0), (anat.left, 1.0)):
        levels = _grow(rng, (sgn * side.hilum[0], side.hilum[1]), sgn, 9)
        thick.extend(levels[:2])
        thin.extend(levels[2:])
    return VesselTree(np.concatenate(thick), np.concatenate(thin))


def _splat(segments: np.ndarray, n: int) -> np.ndarray:
    """Bilinear splat of points along segments onto an (n, n) canvas, weighted by width per
    length, so a vessel's density does not depend on the canvas resolution."""
    cell = 2.0 * EXTENT / n
    t = (np.arange(_POINTS) + 0.5) / _POINTS
    px = segments[:, None, 0] + t[None, :] * (segments[:, None, 2] - segments[:, None, 0])
    py = segments[:, None, 1] + t[None, :] * (segments[:, None, 3] - segments[:, None, 1])
    seg_len = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    w = np.broadcast_to((segments[:, 4] * seg_len / _POINTS / cell)[:, None], px.shape).ravel()
    cx = (px.ravel() + EXTENT) / cell - 0.5
    cy = (py.ravel() + EXTENT) / cell - 0.5
    ix, iy = np.floor(cx).astype(np.int64), np.floor(cy).astype(np.int64)
    fx, fy = cx - ix, cy - iy
    canvas = np.zeros(n * n, dtype=np.float64)
    for ox, oy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        jx, jy = ix + ox, iy + oy
        ok = (jx >= 0) & (jx < n) & (jy >= 0) & (jy < n)
        canvas += np.bincount((jy * n + jx)[ok], weights=(w * wt)[ok], minlength=n * n)
    return canvas.reshape(n, n)


def rasterise(tree: VesselTree, n: int) -> np.ndarray:
    """Vessel density on an (n, n) canvas over [-EXTENT, EXTENT]² (row = y, column = x)."""
    cell = 2.0 * EXTENT / n
    big = gaussian_filter(_splat(tree.thick, n), _THICK_SIGMA / cell)
    small = gaussian_filter(_splat(tree.thin, n), _THIN_SIGMA / cell)
    # a line's blurred peak is proportional to the cell size: undo that, so the density is
    # the one of a 192-cell canvas whatever n is
    return ((0.22 * big + 0.15 * small) * ((2.0 * EXTENT / 192) / cell)).astype(np.float32)


def canvas_size(shape: tuple[int, int]) -> int:
    """Canvas resolution for an output image: about one cell per 1.3 pixels, 48 to 192."""
    return int(np.clip(round(0.75 * max(shape)), 48, 192))


def sample_canvas(canvas: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a canvas at anatomical coordinates (0 outside the canvas)."""
    scale = canvas.shape[0] / (2.0 * EXTENT)
    rows = (y + EXTENT) * scale - 0.5
    cols = (x + EXTENT) * scale - 0.5
    return bilinear_sample(canvas, rows, cols).astype(np.float32)
