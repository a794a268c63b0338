"""Pixel grids in anatomical coordinates, and evaluating a field only where it is non-zero.

Anatomical coordinates: ``y`` runs from -1 (top of the field) to +1 (bottom), ``x`` is in the
same unit (half the image height) and negative on the image's left, which is the patient's
right (the radiological convention). A :class:`Pose` maps pixels to these coordinates.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x0, x1, y0, y1 in anatomical coordinates


@dataclass(frozen=True)
class Pose:
    """Patient positioning and collimation: where the anatomy lies in the image.

    Attributes:
        angle: in-plane rotation in radians (positive: counter-clockwise in the image).
        scale: magnification (> 1 shows less of the body, larger).
        shift: (dx, dy) of the field of view's centre, in anatomical units.
    """

    angle: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (at ``edge0``) to 1 (at ``edge1``); edge0 > edge1 steps down."""
    t = x - edge0
    t *= 1.0 / (edge1 - edge0)
    np.clip(t, 0.0, 1.0, out=t)
    out = t * t
    t *= -2.0
    t += 3.0
    out *= t
    return out


def pose_grid(shape: tuple[int, int], pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical coordinates of every pixel centre.

    Args:
        shape: (H, W) of the image.
        pose: positioning.

    Returns:
        x, y: (H, W) float32 arrays, affine in (row, column).
    """
    h, w = shape
    half = h / 2.0
    cols = ((np.arange(w, dtype=np.float32) + 0.5) - w / 2.0) / half
    rows = ((np.arange(h, dtype=np.float32) + 0.5) - h / 2.0) / half
    c, s = np.cos(pose.angle) / pose.scale, np.sin(pose.angle) / pose.scale
    # rotate the image grid by -angle so the anatomy appears rotated by +angle
    x = (c * cols[None, :] - s * rows[:, None] + pose.shift[0]).astype(np.float32)
    y = (s * cols[None, :] + c * rows[:, None] + pose.shift[1]).astype(np.float32)
    return x, y


def _window(x: np.ndarray, y: np.ndarray, box: Box) -> tuple[slice, slice] | None:
    """Pixel rows and columns of an affine grid that cover ``box`` (None: the box is outside).

    Returns ``(slice(None), slice(None))`` when the grid is not affine (then nothing is cut).
    """
    h, w = x.shape
    ox, oy = float(x[0, 0]), float(y[0, 0])
    xc, yc = (float(x[0, -1]) - ox) / (w - 1), (float(y[0, -1]) - oy) / (w - 1)
    xr, yr = (float(x[-1, 0]) - ox) / (h - 1), (float(y[-1, 0]) - oy) / (h - 1)
    corner_x = ox + xc * (w - 1) + xr * (h - 1)
    corner_y = oy + yc * (w - 1) + yr * (h - 1)
    if abs(corner_x - float(x[-1, -1])) > 1e-3 or abs(corner_y - float(y[-1, -1])) > 1e-3:
        return slice(None), slice(None)
    det = xc * yr - xr * yc
    x0, x1, y0, y1 = box
    bx = np.array([x0, x1, x0, x1]) - ox
    by = np.array([y0, y0, y1, y1]) - oy
    cols = (yr * bx - xr * by) / det
    rows = (-yc * bx + xc * by) / det
    r0, r1 = max(int(np.floor(rows.min())) - 1, 0), min(int(np.ceil(rows.max())) + 2, h)
    c0, c1 = max(int(np.floor(cols.min())) - 1, 0), min(int(np.ceil(cols.max())) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def local(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, box: Box) -> np.ndarray:
    """Evaluate a field that is zero outside ``box`` only on the pixels that cover the box.

    Args:
        fn: the field, ``fn(x, y) -> array`` shaped ``x.shape`` or ``(k, *x.shape)`` (k
            fields at once).
        x, y: an (H, W) grid from :func:`pose_grid` (cut to the box), or points of any shape
            (evaluated everywhere).
        box: (x0, x1, y0, y1) outside which ``fn`` is zero.

    Returns:
        float32 array shaped like ``fn``'s result on the whole grid.
    """
    if x.ndim != 2 or min(x.shape) < 8:
        return np.asarray(fn(x, y), dtype=np.float32)
    win = _window(x, y, box)
    if win is None:
        probe = np.asarray(fn(x[:1, :1], y[:1, :1]))
        return np.zeros(probe.shape[:-2] + x.shape, dtype=np.float32)
    part = np.asarray(fn(x[win], y[win]), dtype=np.float32)
    out = np.zeros(part.shape[:-2] + x.shape, dtype=np.float32)
    out[(..., *win)] = part
    return out
