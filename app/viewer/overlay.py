"""The heatmap overlay: from the detector's input frame back to the image frame, colours, contour.

A detector's heatmap lives in its preprocessed frame: ``spec.size`` x ``spec.size`` after
:func:`engine.preprocess.apply_crop` (the exposed field's ``box``, or the whole image),
:func:`engine.preprocess.apply_aspect` (stretch, centre crop or pad) and the resize. Overlaying
it pixel-exactly means inverting the crop and aspect steps: :func:`heatmap_footprint` says where that
square lies in the image (in pixel-edge coordinates), :func:`apply_inverse_aspect` resamples
the heatmap onto any grid covering the image, and :func:`heatmap_to_image_points` maps heatmap
coordinates (pixel centres at integers, as Pillow's resize places them) to image coordinates.

Colours use a fixed scale: :meth:`engine.detector.NormalCalibration.heatmap_level` maps heatmap
values to their rank among the pixels of the detector's held-out normal heatmaps, so a colour
means the same evidence in every image; :func:`overlay_lut` colours ranks from ``floor``
(transparent) to 1 (the strongest normal pixel and beyond, fully coloured).
Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Aspect = Literal["stretch", "center_crop", "pad"]
Box = tuple[int, int, int, int]  # (top, bottom, left, right) of the crop in image pixels


@dataclass(frozen=True)
class Footprint:
    """Where the detector's square input lies in the image frame (pixel-edge coordinates).

    The image covers ``[0, W] x [0, H]`` (x = column, y = row); the heatmap's ``size`` x
    ``size`` pixels cover ``[x, x + width] x [y, y + height]``.
    """

    x: float
    y: float
    width: float
    height: float


def heatmap_footprint(image_shape: tuple[int, int], aspect: Aspect, box: Box | None = None) -> Footprint:
    """The inverse of :func:`engine.preprocess.apply_crop` and ``apply_aspect``, as a rectangle.

    Args:
        image_shape: (H, W) of the image the detector saw.
        aspect: the detector's ``PreprocessSpec.aspect``.
        box: the crop the detector made first, (top, bottom, left, right) (None: no crop).

    Returns:
        stretch: the whole image (or box); center_crop: the central square (same integer
        offsets as the crop); pad: the padded square, which extends past the short side.
    """
    h, w = (int(image_shape[0]), int(image_shape[1]))
    if h < 1 or w < 1:
        raise ValueError(f"image_shape must be positive, got {image_shape}")
    if box is not None:
        top, bottom, left, right = (int(v) for v in box)
        if not (0 <= top < bottom <= h and 0 <= left < right <= w):
            raise ValueError(f"box must be (top, bottom, left, right) inside a {h} x {w} image, got {box}")
        fp = heatmap_footprint((bottom - top, right - left), aspect)
        return Footprint(fp.x + left, fp.y + top, fp.width, fp.height)
    if aspect == "stretch" or h == w:
        return Footprint(0.0, 0.0, float(w), float(h))
    if aspect == "center_crop":
        s = min(h, w)
        return Footprint(float((w - s) // 2), float((h - s) // 2), float(s), float(s))
    if aspect == "pad":
        s = max(h, w)
        return Footprint(-float((s - w) // 2), -float((s - h) // 2), float(s), float(s))
    raise ValueError(f"aspect must be 'stretch', 'center_crop' or 'pad', got {aspect!r}")


def overlay_grid_shape(image_shape: tuple[int, int], max_side: int = 1024) -> tuple[int, int]:
    """A grid covering the image with at most ``max_side`` cells on its longer side.

    The overlay does not need the image's full resolution (heatmaps are 32-256 px); a grid
    covering exactly the same rectangle keeps the alignment exact.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    scale = min(1.0, max_side / max(h, w))
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def apply_inverse_aspect(heatmap: np.ndarray, image_shape: tuple[int, int], aspect: Aspect,
                         grid_shape: tuple[int, int] | None = None, box: Box | None = None) -> np.ndarray:
    """Resample a (S, S) heatmap onto a grid covering the image frame.

    Cell ``(r, c)`` of a ``(gh, gw)`` grid is centred at image coordinates
    ``((c + 0.5) W / gw, (r + 0.5) H / gh)``; it takes the heatmap's bilinear interpolation at
    the matching heatmap coordinate (pixel centres at integers, clamped at the edges of the
    footprint). Cells outside the footprint (outside a centre crop or the exposed field's
    box) are NaN: the detector never saw them.

    Args:
        heatmap: (S, S) float heatmap in the detector's frame.
        image_shape: (H, W) of the image.
        aspect: the detector's aspect step.
        grid_shape: (gh, gw) of the output, default the image's own shape.
        box: the detector's crop (:func:`engine.preprocess.field_box`), None: no crop.

    Returns:
        (gh, gw) float32.
    """
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or hm.shape[0] != hm.shape[1]:
        raise ValueError(f"heatmap must be a square (S, S) array, got shape {hm.shape}")
    h, w = int(image_shape[0]), int(image_shape[1])
    gh, gw = grid_shape if grid_shape is not None else (h, w)
    fp = heatmap_footprint((h, w), aspect, box)
    s = hm.shape[0]
    xs = (np.arange(gw, dtype=np.float64) + 0.5) * (w / gw)
    ys = (np.arange(gh, dtype=np.float64) + 0.5) * (h / gh)
    u = (xs - fp.x) * (s / fp.width) - 0.5  # heatmap column coordinate
    v = (ys - fp.y) * (s / fp.height) - 0.5  # heatmap row coordinate
    inside_x = (xs >= fp.x) & (xs <= fp.x + fp.width)
    inside_y = (ys >= fp.y) & (ys <= fp.y + fp.height)
    c0, cw = _linear_weights(u, s)
    r0, rw = _linear_weights(v, s)
    c1 = np.minimum(c0 + 1, s - 1)
    r1 = np.minimum(r0 + 1, s - 1)
    cols = hm[:, c0] * (1.0 - cw)[None, :] + hm[:, c1] * cw[None, :]  # (S, gw)
    out = cols[r0, :] * (1.0 - rw)[:, None] + cols[r1, :] * rw[:, None]  # (gh, gw)
    out = out.astype(np.float32)
    if not inside_x.all() or not inside_y.all():
        out[~inside_y, :] = np.nan
        out[:, ~inside_x] = np.nan
    return out


def _linear_weights(coord: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the left neighbour and the weight of the right one, clamped to [0, size-1]."""
    c = np.clip(coord, 0.0, size - 1.0)
    i0 = np.floor(c).astype(np.intp)
    i0 = np.minimum(i0, size - 1)
    return i0, (c - i0).astype(np.float32)


def heatmap_to_image_points(points: np.ndarray, image_shape: tuple[int, int], aspect: Aspect,
                            size: int, box: Box | None = None) -> np.ndarray:
    """Map heatmap coordinates to image coordinates.

    Args:
        points: (..., 2) array of (row, col) heatmap coordinates, pixel centres at integers.
        image_shape: (H, W) of the image.
        aspect: the detector's aspect step.
        size: the heatmap side S.
        box: the detector's crop, None: no crop.

    Returns:
        (..., 2) array of (x, y) image coordinates (pixel edges at integers: pixel (0, 0)
        covers [0, 1] x [0, 1]), as pyqtgraph places a row-major ImageItem.
    """
    fp = heatmap_footprint(image_shape, aspect, box)
    p = np.asarray(points, dtype=np.float64)
    x = fp.x + (p[..., 1] + 0.5) * (fp.width / size)
    y = fp.y + (p[..., 0] + 0.5) * (fp.height / size)
    return np.stack([x, y], axis=-1)


# Marching squares: for each corner case (tl=8, tr=4, br=2, bl=1 set when above the level),
# the pairs of crossed edges to join; edges T=0, R=1, B=2, L=3. Saddles (5, 10) depend on
# the cell centre and are handled separately.
_SEGMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((3, 2),), 2: ((2, 1),), 3: ((3, 1),), 4: ((0, 1),), 6: ((0, 2),), 7: ((0, 3),),
    8: ((0, 3),), 9: ((0, 2),), 11: ((0, 1),), 12: ((3, 1),), 13: ((1, 2),), 14: ((3, 2),),
}
_SADDLE: dict[tuple[int, bool], tuple[tuple[int, int], ...]] = {
    # (case, centre above): joining around the corners that the centre does not connect
    (5, True): ((0, 3), (1, 2)), (5, False): ((0, 1), (3, 2)),
    (10, True): ((0, 1), (3, 2)), (10, False): ((0, 3), (1, 2)),
}


def contour_segments(field: np.ndarray, level: float) -> np.ndarray:
    """Iso-line segments of a 2-D field at ``level`` (marching squares, vectorised).

    Args:
        field: (R, C) float array (NaN counts as below the level).
        level: the iso value; a point is inside when its value is > level.

    Returns:
        (N, 2, 2) array: N segments, each two (row, col) points in the field's coordinates
        (sample centres at integers), linearly interpolated along cell edges.
    """
    f = np.nan_to_num(np.asarray(field, dtype=np.float64), nan=-np.inf)
    if f.ndim != 2 or min(f.shape) < 2:
        return np.zeros((0, 2, 2))
    tl, tr, br, bl = f[:-1, :-1], f[:-1, 1:], f[1:, 1:], f[1:, :-1]
    case = ((tl > level) * 8 + (tr > level) * 4 + (br > level) * 2 + (bl > level) * 1).astype(np.int8)
    rows, cols = np.indices(case.shape, dtype=np.float64)

    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (level - a) / (b - a)
        return np.clip(np.nan_to_num(t, nan=0.5, posinf=0.5, neginf=0.5), 0.0, 1.0)

    edges = (
        np.stack([rows, cols + cross(tl, tr)], axis=-1),        # T
        np.stack([rows + cross(tr, br), cols + 1.0], axis=-1),  # R
        np.stack([rows + 1.0, cols + cross(bl, br)], axis=-1),  # B
        np.stack([rows + cross(tl, bl), cols], axis=-1),        # L
    )
    pieces: list[np.ndarray] = []

    def add(mask: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> None:
        if not mask.any():
            return
        for e1, e2 in pairs:
            pieces.append(np.stack([edges[e1][mask], edges[e2][mask]], axis=1))

    for k, pairs in _SEGMENTS.items():
        add(case == k, pairs)
    with np.errstate(invalid="ignore"):
        centre_above = (tl + tr + br + bl) / 4.0 > level
    for (k, above), pairs in _SADDLE.items():
        add((case == k) & (centre_above == above), pairs)
    if not pieces:
        return np.zeros((0, 2, 2))
    return np.concatenate(pieces, axis=0)


def apply_level_codes(levels: np.ndarray) -> np.ndarray:
    """Heatmap levels in [0, 1] to uint8 codes (NaN -> 0, which the overlay LUT keeps clear)."""
    lv = np.nan_to_num(np.asarray(levels, dtype=np.float32), nan=0.0)
    return np.clip(np.rint(lv * 255.0), 0, 255).astype(np.uint8)


def overlay_lut(colormap: np.ndarray, opacity: float, floor: float) -> np.ndarray:
    """The (256, 4) RGBA table colouring level codes (:func:`apply_level_codes`).

    Levels at or below ``floor`` are transparent; above it the colour runs through the map and
    the alpha rises linearly to ``opacity`` at level 1 (the strongest normal pixel).

    Args:
        colormap: (N, 3) or (N, 4) uint8 colours from low to high.
        opacity: alpha at level 1, in [0, 1].
        floor: the level where colour starts, in [0, 1).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity!r}")
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [0, 1), got {floor!r}")
    cmap = np.asarray(colormap)
    if cmap.ndim != 2 or cmap.shape[1] not in (3, 4) or cmap.shape[0] < 2:
        raise ValueError(f"colormap must be an (N, 3) or (N, 4) array with N >= 2, got shape {cmap.shape}")
    level = np.arange(256, dtype=np.float64) / 255.0
    t = np.clip((level - floor) / (1.0 - floor), 0.0, 1.0)
    idx = np.rint(t * (cmap.shape[0] - 1)).astype(np.intp)
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, :3] = cmap[idx, :3]
    lut[:, 3] = np.rint(255.0 * opacity * t).astype(np.uint8)
    lut[level <= floor, 3] = 0
    return lut
