"""The normal frontal (PA) chest: anatomy parameters and the projected density they give.

Everything is drawn as a projected attenuation ("density") map in anatomical coordinates
(:mod:`engine.synth.grid`). Each structure is an analytic function of ``(x, y)``, so the same
seed gives the same chest at any image size, and rotation, zoom and shift are only a change
of coordinates.

Density units: 1.0 is the full soft-tissue thickness of the mid chest. Air outside the body is
0, aerated lung ~0.35, the heart ~1.0; bone adds 0.1-0.35. :mod:`engine.synth.imaging` turns
density into display brightness (bones and heart bright, lungs dark).

Public functions:
    sample_anatomy(rng, variation) -> Anatomy
    sample_pose(rng, variation) -> Pose
    lung_field(anat, x, y) -> soft lung mask in [0, 1]
    heart_field(anat, x, y) -> soft cardiac silhouette in [0, 1]
    chest_density(anat, x, y, vessels) -> ChestLayers
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrscreen.engine.synth import bones
from cxrscreen.engine.synth.grid import Box, Pose, local, smoothstep

_FAR = 10.0  # "unbounded" edge of a box


@dataclass(frozen=True)
class Side:
    """One hemithorax, in lateral coordinate ``u`` (distance from the midline, >= 0).

    Attributes:
        apex_y: height of the lung apex.
        apex_u: lateral position of the apex.
        apex_curve: curvature of the apical outline (larger = more pointed apex).
        lateral_u: lateral lung border at the level of the dome (the widest point).
        lateral_curve: how much the lateral border bends inwards going up.
        dome_y: height of the top of the diaphragmatic dome.
        dome_u: lateral position of the top of the dome.
        dome_curve: curvature of the dome laterally (larger = deeper costophrenic angle).
        medial_u: mediastinal border above the heart.
        heart_u: the cardiac border at its widest (right atrium / left ventricle).
        heart_y: height of the cardiac border's widest point.
        hilum: (u, y) of the hilum, where the vessel tree starts.
    """

    apex_y: float
    apex_u: float
    apex_curve: float
    lateral_u: float
    lateral_curve: float
    dome_y: float
    dome_u: float
    dome_curve: float
    medial_u: float
    heart_u: float
    heart_y: float
    hilum: tuple[float, float]


@dataclass(frozen=True)
class Anatomy:
    """One synthetic patient's chest, in anatomical coordinates (see the module docstring).

    Attributes:
        right: the patient's right hemithorax (image left, x < 0).
        left: the patient's left hemithorax (image right, x > 0).
        body_half_width: half-width of the thorax (skin to skin) at mid-lung height.
        shoulder_y: height of the shoulders (top of the trunk lateral to the neck).
        neck_half_width: half-width of the neck.
        arm_x: distance of the humeri from the midline.
        habitus: soft-tissue attenuation factor (thin < 1 < large patient).
        air: how much density the aerated lungs remove (inspiration, emphysema-like darkness).
        heart_top: height where the cardiac silhouette starts to bulge from the mediastinum.
        knob_y: height of the aortic knob (a bulge of the left mediastinal border).
        knob_size: how far the aortic knob bulges.
        spine_x: horizontal position of the spine (midline).
        trachea_x: horizontal position of the trachea.
        carina_y: height of the carina.
        clavicle_y: height of the clavicles' medial (sternal) ends.
        clavicle_tilt: how much the clavicles rise laterally.
        rib_y0: height of the first posterior rib at the spine.
        rib_spacing: vertical distance between consecutive posterior ribs at the top.
        rib_growth: relative increase of the rib spacing per rib, going down.
        rib_curve: how much the posterior ribs droop towards the lateral chest wall.
        rib_width: fraction of the rib spacing that is bone.
        rib_jitter: (amplitude, phase, phase) of the irregularity of the rib spacing.
        gastric_bubble: radius of the stomach's air bubble under the left dome (0 = none).
        breast: density of breast shadows over the lower zones (0 = none).
        vertebra_height: height of one vertebra (body + disc).
    """

    right: Side
    left: Side
    body_half_width: float
    shoulder_y: float
    neck_half_width: float
    arm_x: float
    habitus: float
    air: float
    heart_top: float
    knob_y: float
    knob_size: float
    spine_x: float
    trachea_x: float
    carina_y: float
    clavicle_y: float
    clavicle_tilt: float
    rib_y0: float
    rib_spacing: float
    rib_growth: float
    rib_curve: float
    rib_width: float
    rib_jitter: tuple[float, float, float]
    gastric_bubble: float
    breast: float
    vertebra_height: float


def _jitter(rng: np.random.Generator, mean: float, sd: float, variation: float, lo: float, hi: float) -> float:
    """One normally distributed parameter, its spread scaled by ``variation``, clipped."""
    return float(np.clip(mean + variation * sd * rng.standard_normal(), lo, hi))


def sample_anatomy(rng: np.random.Generator, variation: float = 1.0) -> Anatomy:
    """Draw one patient's chest.

    Args:
        rng: source of randomness; always consumes the same number of draws, so later draws
            do not depend on ``variation``.
        variation: 0 gives the average chest, 1 a realistic adult population spread.

    Returns:
        The anatomy.
    """
    v = variation

    def j(mean: float, sd: float, lo: float = -np.inf, hi: float = np.inf) -> float:
        return _jitter(rng, mean, sd, v, lo, hi)

    # shared factors make the two sides (and the body) vary together, as real chests do
    width = j(1.0, 0.06, 0.85, 1.15)
    depth = j(0.0, 0.05, -0.12, 0.12)  # inspiration: lower domes, taller lungs
    top = j(0.0, 0.04, -0.1, 0.1)
    cardiac = j(1.0, 0.1, 0.8, 1.35)  # heart size (cardiothoracic ratio ~0.45 at 1)
    heart_top = j(-0.08, 0.04) + 0.5 * top
    sides = []
    for left in (False, True):
        dome_y = j(0.36 if left else 0.30, 0.04) + depth
        sides.append(
            Side(
                apex_y=j(-0.80, 0.03) + top,
                apex_u=j(0.30, 0.02) * width,
                apex_curve=j(2.2, 0.3, 1.5, 3.0),
                lateral_u=j(0.72, 0.025) * width,
                lateral_curve=j(0.35, 0.07, 0.2, 0.5),
                dome_y=dome_y,
                dome_u=j(0.40 if left else 0.36, 0.03) * width,
                dome_curve=j(1.25, 0.25, 0.7, 2.0),
                medial_u=j(0.12 if left else 0.11, 0.01, 0.08, 0.15),
                heart_u=(j(0.37, 0.03) if left else j(0.2, 0.02)) * cardiac * width,
                heart_y=dome_y - j(0.08 if left else 0.1, 0.03),
                hilum=(j(0.2, 0.015), j(-0.12 if left else -0.05, 0.025)),
            )
        )
    body = j(0.92, 0.08, 0.75, 1.1) * width
    body = max(body, sides[0].lateral_u + 0.12, sides[1].lateral_u + 0.12)
    return Anatomy(
        right=sides[0],
        left=sides[1],
        body_half_width=body,
        shoulder_y=j(-0.80, 0.04) + top,
        neck_half_width=j(0.2, 0.02, 0.14, 0.26),
        arm_x=body + j(0.16, 0.04, 0.06, 0.3),
        habitus=j(1.0, 0.08, 0.8, 1.25),
        air=j(0.7, 0.05, 0.55, 0.82),
        heart_top=heart_top,
        knob_y=j(-0.36, 0.03) + top,
        knob_size=j(0.06, 0.015, 0.02, 0.1),
        spine_x=j(0.0, 0.01),
        trachea_x=j(-0.01, 0.01),
        carina_y=j(-0.30, 0.03) + top,
        clavicle_y=j(-0.64, 0.04) + top,
        clavicle_tilt=j(0.16, 0.05, 0.04, 0.3),
        rib_y0=j(-0.86, 0.025) + top,
        rib_spacing=j(0.118, 0.008, 0.095, 0.14),
        rib_growth=j(0.035, 0.01, 0.0, 0.07),
        rib_curve=j(0.55, 0.08, 0.3, 0.8),
        rib_width=j(0.47, 0.04, 0.35, 0.58),
        rib_jitter=(j(0.1, 0.03, 0.0, 0.16), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        gastric_bubble=max(0.0, j(0.04, 0.03, 0.0, 0.08)),
        breast=float(rng.random() < 0.35 * min(v, 1.0)) * j(0.1, 0.03, 0.04, 0.16),
        vertebra_height=j(0.105, 0.008, 0.085, 0.125),
    )


def sample_pose(rng: np.random.Generator, variation: float = 1.0) -> Pose:
    """Draw one positioning: a few degrees of rotation, some zoom and off-centring."""

    def j(mean: float, sd: float, lo: float, hi: float) -> float:
        return _jitter(rng, mean, sd, variation, lo, hi)

    return Pose(
        angle=float(np.deg2rad(j(0.0, 2.0, -6.0, 6.0))),
        scale=j(1.0, 0.05, 0.85, 1.15),
        shift=(j(0.0, 0.03, -0.1, 0.1), j(0.0, 0.05, -0.15, 0.15)),
    )


def _medial_border(anat: Anatomy, side: Side, y: np.ndarray, left: bool) -> np.ndarray:
    """The lung's medial border: the mediastinum above, the cardiac silhouette below.

    The heart bulges out below ``heart_top`` (on the left, below the aortic knob) to its
    widest point at ``heart_y``, then curves back a little to the cardiophrenic angle.
    """
    top = anat.knob_y + 0.14 if left else anat.heart_top
    upper = max(side.heart_y - top, 0.05)
    s = np.clip((y - top) * (1.0 / upper), 0.0, 1.0)
    below = np.clip((y - side.heart_y) * (1.0 / 0.45), 0.0, 1.0)
    # left: the pulmonary trunk runs nearly straight down, then the ventricle bulges out
    # (a quarter ellipse); right: the atrial border bulges in its middle
    if left:
        late = np.clip((s - 0.25) * (1.0 / 0.75), 0.0, 1.0)
        rise = 0.12 * s + 0.88 * np.sqrt(1.0 - (1.0 - late) ** 2)
    else:
        rise = s * s * (3.0 - 2.0 * s)
    bulge = np.where(y < side.heart_y, rise, np.sqrt(1.0 - below * below))
    border = side.medial_u + (side.heart_u - side.medial_u) * bulge
    if left:
        border += anat.knob_size * np.exp(-(((y - anat.knob_y) * (1.0 / 0.06)) ** 2))
    return border


def lateral_border(side: Side, y: np.ndarray) -> np.ndarray:
    """The lung's lateral border: widest at the dome, bending inwards towards the apex."""
    above = np.maximum(side.dome_y - 0.1 - y, 0.0)
    return side.lateral_u - side.lateral_curve * above * above * above


def _lung_box(side: Side, sign: float) -> Box:
    """A box holding one lung (``sign`` -1 for the patient's right)."""
    u0, u1 = side.medial_u - 0.01, side.lateral_u + 0.02
    deepest = side.dome_curve * max(side.lateral_u - side.dome_u, side.dome_u - side.medial_u) ** 2
    y0, y1 = side.apex_y - 0.03, side.dome_y + deepest + 0.02
    return (u0, u1, y0, y1) if sign > 0 else (-u1, -u0, y0, y1)


def _side_lung(anat: Anatomy, side: Side, left: bool, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft inside-ness of one lung and its depth (thicker in the centre), stacked (2, ...).

    Each border is a signed distance-like term (positive inside); the outline is their
    intersection. Edges are crisp at the dome, heart and chest wall (surfaces seen
    tangentially) and more gradual at the apex.
    """
    u = x if left else -x
    du = u - side.apex_u
    apex = side.apex_y + side.apex_curve * du * du
    d_apex = (y - apex) / np.sqrt(1.0 + (2.0 * side.apex_curve * du) ** 2)
    d_lat = lateral_border(side, y) - u
    dd = u - side.dome_u
    curve = np.where(dd > 0, side.dome_curve, 0.5 * side.dome_curve)
    d_dome = (side.dome_y + curve * dd * dd - y) / np.sqrt(1.0 + (2.0 * curve * dd) ** 2)
    d_med = u - _medial_border(anat, side, y, left)
    inside = smoothstep(-0.01, 0.03, d_apex) * smoothstep(-0.004, 0.012, d_lat)
    inside *= smoothstep(-0.004, 0.008, d_dome) * smoothstep(-0.004, 0.01, d_med)
    depth = np.minimum(np.minimum(d_apex * 3.0, d_lat * 5.0), np.minimum(d_dome * 5.0, d_med * 4.0))
    return np.stack([inside, np.clip(depth, 0.0, 1.0)])


def _lungs(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside-ness, inside-ness x depth) of both lungs."""
    out = np.zeros((2, *np.shape(x)), dtype=np.float32)
    for side, left in ((anat.right, False), (anat.left, True)):
        box = _lung_box(side, 1.0 if left else -1.0)
        inside, depth = local(lambda x, y, s=side, l=left: _side_lung(anat, s, l, x, y), x, y, box)
        out[0] += inside
        out[1] += inside * depth
    return out[0], out[1]


def lung_field(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft lung mask (1 = aerated lung seen in projection, 0 outside; heart excluded).

    Args:
        anat: the anatomy.
        x, y: anatomical coordinates: a grid from :func:`engine.synth.grid.pose_grid` or
            points of any shape.

    Returns:
        float32 array shaped like ``x``, in [0, 1].
    """
    return _lungs(anat, x, y)[0]


def heart_field(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft cardiac silhouette: between the two cardiac borders, from the top of the heart
    down to the diaphragm (the spine in that band counts as heart: it overlaps it)."""

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        right = _medial_border(anat, anat.right, y, False) + x
        left = _medial_border(anat, anat.left, y, True) - x
        bottom = np.where(x < 0, anat.right.dome_y, anat.left.dome_y) + 0.05 - y
        inside = np.minimum(np.minimum(right, left), np.minimum(y - anat.heart_top, bottom))
        return smoothstep(-0.005, 0.01, inside)

    box = (-anat.right.heart_u - 0.02, anat.left.heart_u + anat.knob_size + 0.02, anat.heart_top - 0.01,
           max(anat.right.dome_y, anat.left.dome_y) + 0.07)
    return local(draw, x, y, box)


def _trunk_half_width(anat: Anatomy, y: np.ndarray) -> np.ndarray:
    """Skin-to-skin half-width of the trunk: widest at the axillae, narrower at the waist."""
    return anat.body_half_width * (1.0 - 0.04 * (y - 0.05) ** 2 - 0.03 * smoothstep(0.4, 1.2, y))


def _body(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft-tissue thickness of the trunk, neck and arms (1 = mid-chest thickness)."""
    u = np.abs(x)
    half = _trunk_half_width(anat, y)
    trunk = np.sqrt(np.clip(1.0 - (u / half) ** 2, 0.0, None)) ** 0.7
    # the top of the shoulders slopes down from the neck (trapezius) to the acromion
    s = np.clip((u - anat.neck_half_width) / (anat.arm_x - anat.neck_half_width), 0.0, 1.0)
    top = anat.shoulder_y - 0.35 + 0.4 * s**1.3
    trunk *= smoothstep(top - 0.01, top + 0.06, y)
    neck = 0.7 * np.clip(1.0 - (x / anat.neck_half_width) ** 2, 0.0, None) ** 0.7
    # arms hang beside the trunk: soft-tissue cylinders around the humeri
    head_y = anat.shoulder_y + 0.1
    arm = np.sqrt(np.clip(1.0 - ((u - anat.arm_x - 0.3 * (y - head_y)) / 0.2) ** 2, 0.0, None))
    arm *= 0.6 * smoothstep(head_y - 0.2, head_y - 0.05, y)
    return np.maximum(np.maximum(trunk, neck), arm) * anat.habitus


def _hila(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Density of the hila (pulmonary arteries and main bronchi walls)."""

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for side, sgn in ((anat.right, -1.0), (anat.left, 1.0)):
            r2 = ((x - sgn * side.hilum[0]) * (1.0 / 0.06)) ** 2 + ((y - side.hilum[1]) * (1.0 / 0.09)) ** 2
            out += np.exp(-r2)
        return 0.1 * out

    return local(draw, x, y, (-0.45, 0.45, -0.45, 0.3))


def _airways(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Air (removed density) of the trachea down to the carina and the two main bronchi."""

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        tx, cy = anat.trachea_x, anat.carina_y
        trachea = smoothstep(0.03, 0.02, np.abs(x - tx)) * smoothstep(cy + 0.02, cy - 0.02, y)
        bronchi = np.zeros_like(x)
        for side, sgn in ((anat.right, -1.0), (anat.left, 1.0)):
            vx, vy = sgn * (side.hilum[0] - 0.06) - tx, side.hilum[1] + 0.02 - cy
            t = np.clip(((x - tx) * vx + (y - cy) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
            d = np.hypot(x - tx - t * vx, y - cy - t * vy)
            bronchi = np.maximum(bronchi, smoothstep(0.018, 0.01, d) * (1.0 - 0.7 * t))
        return 0.22 * trachea + 0.08 * bronchi

    return local(draw, x, y, (-0.3, 0.3, -_FAR, 0.1))


def _gastric_bubble(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Air (removed density) of the stomach bubble under the left dome, with a fluid level."""
    r = anat.gastric_bubble
    if r <= 0:
        return np.zeros_like(x)
    cx, cy = anat.left.dome_u - 0.02, anat.left.dome_y + 0.07 + r

    def draw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dist = np.sqrt(((x - cx) / (1.6 * r)) ** 2 + ((y - cy) / r) ** 2)
        return 0.2 * smoothstep(1.0, 0.85, dist) * smoothstep(cy + 0.2 * r, cy + 0.1 * r, y)

    return local(draw, x, y, (cx - 1.7 * r, cx + 1.7 * r, cy - 1.1 * r, cy + 0.3 * r))


def _breasts(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Breast shadows over the lower zones: fading upwards, with a crisp inferolateral fold."""
    if anat.breast <= 0:
        return np.zeros_like(x)
    out = np.zeros_like(x)
    for side, sgn in ((anat.right, -1.0), (anat.left, 1.0)):
        cx, cy = sgn * side.lateral_u * 0.65, side.dome_y - 0.1

        def draw(x: np.ndarray, y: np.ndarray, cx: float = cx, cy: float = cy) -> np.ndarray:
            r = np.sqrt(((x - cx) * (1.0 / 0.4)) ** 2 + ((y - cy) * (1.0 / 0.28)) ** 2)
            return np.sqrt(np.clip(1.0 - r * r, 0.0, None)) * smoothstep(cy - 0.3, cy, y)

        out += local(draw, x, y, (cx - 0.41, cx + 0.41, cy - 0.3, cy + 0.29))
    return anat.breast * out


def _recesses(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Air of the posterior costophrenic recesses: lung behind the domes, which projects just
    below each dome's top edge (relative units, scaled by the caller)."""
    out = np.zeros_like(x)
    for side, sgn in ((anat.right, -1.0), (anat.left, 1.0)):

        def draw(x: np.ndarray, y: np.ndarray, side: Side = side, sgn: float = sgn) -> np.ndarray:
            u = sgn * x
            below = y - (side.dome_y + side.dome_curve * (u - side.dome_u) ** 2)
            inside = smoothstep(side.medial_u, side.medial_u + 0.1, u) * smoothstep(side.lateral_u, side.lateral_u - 0.1, u)
            return inside * smoothstep(0.0, 0.01, below) * np.exp(-np.maximum(below, 0.0) * (1.0 / 0.07))

        u0, u1 = side.medial_u, side.lateral_u
        out += local(draw, x, y, (-u1, -u0, side.dome_y - 0.01, _FAR) if sgn < 0 else (u0, u1, side.dome_y - 0.01, _FAR))
    return out


@dataclass(frozen=True)
class ChestLayers:
    """The normal chest on a pixel grid.

    Attributes:
        density: (H, W) float32 projected density, >= 0.
        lung: (H, W) float32 soft lung field in [0, 1] (heart excluded).
        heart: (H, W) float32 soft cardiac silhouette in [0, 1].
    """

    density: np.ndarray
    lung: np.ndarray
    heart: np.ndarray


def lungs_box(anat: Anatomy) -> Box:
    """A box holding both lungs (where vessels and lesions can be)."""
    r, l = _lung_box(anat.right, -1.0), _lung_box(anat.left, 1.0)
    return (r[0], l[1], min(r[2], l[2]), max(r[3], l[3]))


def chest_density(anat: Anatomy, x: np.ndarray, y: np.ndarray, vessels: np.ndarray) -> ChestLayers:
    """Projected density of a normal chest.

    Args:
        anat: the anatomy.
        x, y: (H, W) anatomical coordinates from :func:`engine.synth.grid.pose_grid`.
        vessels: (H, W) pulmonary vessel density sampled on this grid, >= 0.

    Returns:
        The density with the lung and heart fields.
    """
    lung, depth = _lungs(anat, x, y)
    heart = heart_field(anat, x, y)
    # aeration: darkest in the mid and upper zones, less at the bases (soft tissue overlap)
    zonal = 1.0 - 0.18 * smoothstep(-0.2, 0.5, y) - 0.15 * smoothstep(-0.55, -0.85, y)
    air = anat.air * (0.45 * lung + 0.55 * depth) * zonal
    # the retrocardiac lung still holds some air, fading towards the diaphragm
    dome = np.where(x < 0, anat.right.dome_y, anat.left.dome_y)
    retro = smoothstep(anat.heart_top, anat.heart_top + 0.2, y) * smoothstep(dome + 0.05, dome - 0.1, y)
    retro *= smoothstep(0.06, 0.15, np.abs(x - anat.spine_x))
    air += 0.1 * anat.air * (heart * retro + _recesses(anat, x, y))

    body = _body(anat, x, y)
    inside_body = smoothstep(0.0, 0.05, body)
    wall = (lateral_border(anat.right, y) + lateral_border(anat.left, y)) * 0.5 + 0.05
    # rib contrast is lower over the dense mediastinum and abdomen (scatter, fewer photons)
    bone = bones.ribs(anat, x, y, wall) * (0.25 + 0.75 * lung)
    bone += bones.spine(anat, x, y) + bones.clavicles(anat, x, y) + bones.humeri(anat, x, y)
    density = body * (1.0 - air)
    density += (_hila(anat, x, y) * (0.4 + 0.6 * lung) + bone + _breasts(anat, x, y)) * inside_body
    density -= (_airways(anat, x, y) + _gastric_bubble(anat, x, y)) * inside_body
    density += vessels * lung
    np.maximum(density, 0.0, out=density)
    return ChestLayers(density.astype(np.float32, copy=False), lung, heart)
