"""Bone density of the synthetic chest: ribs, clavicles, spine and humeri.

Each function maps anatomical coordinates (see :mod:`engine.synth.grid`) to added density;
bones are drawn as hollow tubes (bright cortex, dimmer marrow), as they project on a film.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxrscreen.engine.synth.grid import local, smoothstep

if TYPE_CHECKING:
    from cxrscreen.engine.synth.anatomy import Anatomy

_FAR = 10.0  # "unbounded" edge of a box


def tube(z: np.ndarray) -> np.ndarray:
    """Projected thickness of a hollow bone across its width (cortex bright, marrow dim).

    Args:
        z: position across the bone, -1 and 1 at its edges; 0 is returned outside.
    """
    z2 = z * z
    outer = np.sqrt(np.clip(1.0 - z2, 0.0, None))
    inner = np.sqrt(np.clip(0.64 - z2, 0.0, None))
    return outer - 0.75 * inner


def ribs(anat: Anatomy, x: np.ndarray, y: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """Posterior and anterior rib arcs of both sides, inside the cage's lateral ``wall``
    (an array like ``x``: the cage's half-width at each pixel's height).

    All posterior ribs share one shape, so their centre lines are level sets of a single
    "rib phase" field: its integer part is the rib number, its fraction the position across
    the rib. That draws 2 x 10 posterior and 2 x 7 anterior ribs in a few array operations.
    """
    u = np.abs(x - anat.spine_x)
    side = anat.left
    apex = side.apex_y + side.apex_curve * (u - side.apex_u) ** 2 - 0.1
    cage = smoothstep(wall + 0.03, wall - 0.02, u) * smoothstep(apex, apex + 0.05, y)
    g = anat.rib_growth
    amp, ph1, ph2 = anat.rib_jitter

    def rib_number(t: np.ndarray) -> np.ndarray:
        # irregular spacing (still monotonic in t), then rib k's centre lies at t = k (1 + g k)
        t = t + amp * np.sin(1.3 * t + ph1) + 0.6 * amp * np.sin(2.9 * t + ph2)
        return np.where(t > 0, (np.sqrt(1.0 + 4.0 * g * np.maximum(t, 0.0)) - 1.0) / (2.0 * g + 1e-9), t)

    def profile(k: np.ndarray, width: float, count: int) -> np.ndarray:
        frac = k - np.floor(k)
        z = np.clip((frac - 0.5 * width) / (0.5 * width), -1.0, 1.0)
        return np.where((frac < width) & (k >= 0) & (k < count), tube(z), 0.0)

    # posterior: from the spine nearly level, then drooping to the lateral chest wall; upper
    # ribs are more curved (the first rib circles the apex)
    rel = u / np.maximum(wall, 0.2)
    # rising from the spine to the rib angle (~0.3 of the way), then arching down laterally
    droop = anat.rib_curve * (1.8 * (rel - 0.3) ** 2 - 0.162) * (1.0 + 0.5 * np.clip(-y - 0.4, 0.0, None))
    t_post = (y - anat.rib_y0 - droop) / anat.rib_spacing
    # best seen medially; laterally the rib turns away from the beam and blurs into the wall
    post = profile(rib_number(t_post), anat.rib_width, 10) * smoothstep(0.05, 0.1, u)
    post *= 1.0 - 0.35 * smoothstep(0.55, 0.95, rel)
    # anterior: from the lateral end of the same rib, down and medially; they fade medially
    # where the (invisible) costal cartilage takes over
    lateral = wall - u
    t_ant = (y - anat.rib_y0 - 0.75 * anat.rib_curve - 0.6 * lateral - 0.3 * lateral * lateral) / anat.rib_spacing
    ant = profile(rib_number(t_ant), 0.7 * anat.rib_width, 7) * smoothstep(0.15, 0.32, u)
    return (0.18 * post + 0.05 * ant) * cage


def clavicles(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Both clavicles: gently S-shaped, rising laterally, with a bulbous sternal end."""
    end_u = anat.arm_x - 0.1

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = np.abs(x - anat.spine_x)
        s = np.clip((u - 0.05) / (end_u - 0.05), 0.0, 1.0)
        centre = anat.clavicle_y - anat.clavicle_tilt * s + 0.025 * np.sin(2.0 * np.pi * s)
        half = 0.045 + 0.015 * smoothstep(0.25, 0.0, s) + 0.01 * smoothstep(0.8, 1.0, s)
        z = (y - centre) / half
        ends = smoothstep(0.04, 0.07, u) * smoothstep(end_u + 0.03, end_u - 0.02, u)
        return 0.3 * tube(np.clip(z, -1.0, 1.0)) * smoothstep(1.0, 0.95, np.abs(z)) * ends

    top = anat.clavicle_y - anat.clavicle_tilt - 0.12
    return local(draw, x, y, (-_FAR, _FAR, top, anat.clavicle_y + 0.12))


def spine(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vertebral column: bodies with disc spaces, pedicles and spinous processes."""

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx = x - anat.spine_x
        half = 0.055 + 0.02 * smoothstep(-1.0, 1.0, y)  # vertebrae grow going down
        column = tube(np.clip(dx / half, -1.0, 1.0)) * smoothstep(1.02, 0.95, np.abs(dx / half))
        phase = (y - anat.rib_y0) / anat.vertebra_height
        frac = phase - np.floor(phase)
        disc = smoothstep(0.0, 0.12, frac) * smoothstep(1.0, 0.85, frac)  # 0 at the disc space
        ped_y = (frac - 0.35) / 0.16
        ped = np.zeros_like(x)
        for sgn in (-1.0, 1.0):
            ped_x = (dx - sgn * 0.75 * half) / (0.22 * half)
            r = np.sqrt(ped_x * ped_x + ped_y * ped_y)
            ped += smoothstep(1.2, 0.9, r) * smoothstep(0.3, 0.8, r)  # a cortical ring
        spinous = smoothstep(1.0, 0.5, np.abs(dx) / (0.12 * half) + np.abs(frac - 0.6) / 0.25)
        return 0.09 * column * (0.5 + 0.5 * disc) + 0.03 * ped + 0.02 * spinous

    return local(draw, x, y, (anat.spine_x - 0.1, anat.spine_x + 0.1, -_FAR, _FAR))


def humeri(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Humeral heads (spheres) and upper shafts, at the top corners of the field."""
    head_y = anat.shoulder_y + 0.1

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = np.abs(x)
        r = np.sqrt((u - anat.arm_x + 0.02) ** 2 + (y - head_y) ** 2) / 0.13
        head = np.sqrt(np.clip(1.0 - r * r, 0.0, None)) * (0.7 + 0.3 * smoothstep(0.7, 1.0, r))
        shaft_z = (u - anat.arm_x - 0.3 * (y - head_y)) / 0.07
        shaft = tube(np.clip(shaft_z, -1.0, 1.0)) * smoothstep(1.0, 0.97, np.abs(shaft_z))
        return 0.35 * np.maximum(head, shaft * smoothstep(head_y, head_y + 0.1, y))

    inner = anat.arm_x - 0.2
    top = head_y - 0.15
    return local(draw, x, y, (-_FAR, -inner, top, _FAR)) + local(draw, x, y, (inner, _FAR, top, _FAR))
