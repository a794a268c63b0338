"""AnatPaste synthetic anomalies for AMAE's stage 1 (Sato et al., "Anatomy-aware self-supervised
learning for anomaly detection in chest radiographs", iScience 2023; github.com/jun-sato/AnatPaste,
``anatpaste.py``). numpy + scikit-image, torch-free.

Official recipe, at the official 256-pixel scale (lengths scale with the image side):
- :func:`lung_mask`: CLAHE (``equalize_adapthist``, clip limit 0.01), Otsu threshold, keep the
  dark (below-threshold, non-zero) pixels, opening (3 x 3), clear the regions touching the
  border (air outside the body), dilation (3 x 3), drop regions under 400 px².
- :func:`anatpaste`: a patch of 2–15 % of the image area, aspect ratio log-uniform in
  [0.3, 1/0.3], cut at a uniform position of the same image; brightness and contrast jitter
  ±10 % (torchvision ``ColorJitter(0.1, 0.1, ...)``; saturation and hue do nothing to gray);
  pasted centred on a uniformly drawn lung pixel through an alpha mask: an ellipse or a
  rectangle (even odds) the size of the patch less a 10 px margin, of opacity U{150..254}/255,
  Gaussian-blurred with radius U{0..14} px, multiplied by the lung mask.

Deviations (README "Methods", AMAE):
- Small regions are removed pixel by pixel; the official code zeroes their bounding box, which
  can also erase part of a neighbouring lung.
- The alpha mask is also limited to the pasted patch's footprint (the official code pastes a
  black canvas where the blurred shape overflows the patch).
- When no lung is found the whole image is the paste region (the official code does the same
  through a random centre and a mask of ones).
- Images are float in [0, 1] (not 8-bit), blurring is ``scipy``-free Gaussian filtering from
  scikit-image, and all randomness comes from one ``numpy.random.Generator``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REFERENCE_SIZE = 256  # the official code's image side; pixel lengths below are at this size


@dataclass(frozen=True)
class AnatPasteSettings:
    """AnatPaste's parameters (the official defaults), lengths in pixels at 256 px.

    Attributes:
        area_ratio: (min, max) patch area as a fraction of the image.
        aspect_ratio: the patch aspect is log-uniform in [aspect_ratio, 1 / aspect_ratio].
        jitter: brightness and contrast factors uniform in [1 - jitter, 1 + jitter].
        blur_radius: Gaussian blur radius drawn from integers [min, max).
        opacity: alpha value drawn from integers [min, max) over 255.
        margin: the alpha shape is the patch box shrunk by this margin on every side.
        min_region_area: lung-mask regions smaller than this are dropped.
    """

    area_ratio: tuple[float, float] = (0.02, 0.15)
    aspect_ratio: float = 0.3
    jitter: float = 0.1
    blur_radius: tuple[int, int] = (0, 15)
    opacity: tuple[int, int] = (150, 255)
    margin: float = 10.0
    min_region_area: float = 400.0

    def __post_init__(self) -> None:
        lo, hi = self.area_ratio
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"area_ratio must satisfy 0 < min <= max < 1, got {self.area_ratio}")
        if not 0.0 < self.aspect_ratio <= 1.0:
            raise ValueError(f"aspect_ratio must be in (0, 1], got {self.aspect_ratio}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not 0 <= self.blur_radius[0] < self.blur_radius[1]:
            raise ValueError(f"blur_radius must be [min, max) with 0 <= min < max, got {self.blur_radius}")
        if not 0 < self.opacity[0] < self.opacity[1] <= 256:
            raise ValueError(f"opacity must be [min, max) within (0, 256], got {self.opacity}")


@dataclass(frozen=True)
class Paste:
    """One synthetic anomaly.

    Attributes:
        image: (H, W) float32 in [0, 1], the augmented image.
        alpha: (H, W) float32 in [0, 1], the blending weight of the pasted patch.
        source_box: (top, left, height, width) of the patch cut from the image.
        centre: (row, col) of the paste.
        area_fraction: patch area / image area.
    """

    image: np.ndarray
    alpha: np.ndarray
    source_box: tuple[int, int, int, int]
    centre: tuple[int, int]
    area_fraction: float


def lung_mask(image: np.ndarray, min_region_area: float = 400.0) -> np.ndarray:
    """Unsupervised lung field of a radiograph (AnatPaste's ``LungSegment``).

    Args:
        image: (H, W) float in [0, 1], lungs dark (as :class:`engine.io.Radiograph` pixels).
        min_region_area: regions smaller than this (px² at 256 px; scaled with the image) are dropped.

    Returns:
        (H, W) bool.
    """
    from skimage.exposure import equalize_adapthist
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import dilation, footprint_rectangle, opening
    from skimage.segmentation import clear_border

    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {img.shape}")
    if float(img.max() - img.min()) == 0.0:
        return np.zeros(img.shape, dtype=bool)
    eq = equalize_adapthist(img, clip_limit=0.01, nbins=256)
    dark = (eq <= threshold_otsu(eq, nbins=256)) & (eq > 0)
    square = footprint_rectangle((3, 3))
    bw = opening(dark, square)
    bw = dilation(clear_border(bw), square)
    labels = label(bw)
    counts = np.bincount(labels.ravel())
    scale = img.shape[0] * img.shape[1] / REFERENCE_SIZE**2
    keep = counts >= min_region_area * scale
    keep[0] = False
    return keep[labels]


def _shape_alpha(shape: tuple[int, int], centre: tuple[int, int], cut_hw: tuple[int, int], margin: float,
                 ellipse: bool, opacity: float, blur: float) -> np.ndarray:
    """The blurred ellipse or rectangle (value ``opacity``) around ``centre``."""
    from skimage.filters import gaussian

    h, w = shape
    (cy, cx), (ch, cw) = centre, cut_hw
    top, bottom = cy - ch // 2 + margin, cy + ch // 2 - margin
    left, right = cx - cw // 2 + margin, cx + cw // 2 - margin
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    if bottom <= top or right <= left:
        inside = np.zeros(shape, dtype=bool)
    elif ellipse:
        ry, rx = (bottom - top) / 2, (right - left) / 2
        inside = ((rows - (top + bottom) / 2) / ry) ** 2 + ((cols - (left + right) / 2) / rx) ** 2 <= 1.0
    else:
        inside = (rows >= top) & (rows <= bottom) & (cols >= left) & (cols <= right)
    alpha = inside.astype(np.float64) * opacity
    if blur > 0:
        alpha = gaussian(alpha, sigma=blur, mode="constant", preserve_range=True)
    return alpha


def anatpaste(image: np.ndarray, rng: np.random.Generator, lungs: np.ndarray | None = None,
              settings: AnatPasteSettings = AnatPasteSettings()) -> Paste:
    """One AnatPaste anomaly on ``image``.

    Args:
        image: (H, W) float in [0, 1].
        rng: the source of every random draw (same state -> same result).
        lungs: the image's :func:`lung_mask` (computed when None; pass it to reuse it).
        settings: the augmentation's parameters.

    Returns:
        The augmented image and how it was made.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {img.shape}")
    h, w = img.shape
    scale = math.sqrt(h * w) / REFERENCE_SIZE
    s = settings
    if lungs is None:
        lungs = lung_mask(img, s.min_region_area)
    if lungs.shape != img.shape:
        raise ValueError(f"lungs mask shape {lungs.shape} differs from the image's {img.shape}")

    area = rng.uniform(*s.area_ratio) * h * w
    aspect = math.exp(rng.uniform(math.log(s.aspect_ratio), math.log(1 / s.aspect_ratio)))
    cut_w = min(w, max(1, int(round(math.sqrt(area * aspect)))))
    cut_h = min(h, max(1, int(round(math.sqrt(area / aspect)))))
    top = int(rng.uniform(0, h - cut_h))
    left = int(rng.uniform(0, w - cut_w))
    patch = img[top : top + cut_h, left : left + cut_w].astype(np.float64)
    # ColorJitter(brightness, contrast): torchvision applies them in a random order
    b, c = (rng.uniform(1 - s.jitter, 1 + s.jitter) for _ in range(2))
    for op in rng.permutation(2):
        if op == 0:
            patch = np.clip(patch * b, 0, 1)
        else:
            patch = np.clip(c * patch + (1 - c) * patch.mean(), 0, 1)

    region = lungs if lungs.any() else np.ones_like(lungs)
    flat = np.flatnonzero(region)
    idx = int(flat[rng.integers(len(flat))])
    cy, cx = divmod(idx, w)
    blur = float(rng.integers(*s.blur_radius)) * scale
    opacity = float(rng.integers(*s.opacity)) / 255.0
    ellipse = bool(rng.random() < 0.5)

    canvas = np.zeros((h, w), dtype=np.float64)
    footprint = np.zeros((h, w), dtype=bool)
    py, px = cy - cut_h // 2, cx - cut_w // 2  # top-left of the pasted patch (may lie outside)
    r0, r1 = max(py, 0), min(py + cut_h, h)
    c0, c1 = max(px, 0), min(px + cut_w, w)
    if r1 > r0 and c1 > c0:
        canvas[r0:r1, c0:c1] = patch[r0 - py : r1 - py, c0 - px : c1 - px]
        footprint[r0:r1, c0:c1] = True
    alpha = _shape_alpha((h, w), (cy, cx), (cut_h, cut_w), s.margin * scale, ellipse, opacity, blur)
    alpha = alpha * region * footprint
    out = (1 - alpha) * img + alpha * canvas
    return Paste(out.astype(np.float32), alpha.astype(np.float32), (top, left, cut_h, cut_w), (cy, cx),
                 cut_h * cut_w / (h * w))
