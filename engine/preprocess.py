"""The one preprocessing function shared by training, export checks, `cxrscreen score` and the app.

A detector stores its :class:`PreprocessSpec` in its metadata; every consumer calls
:func:`preprocess` with that spec, so a score computed in the app equals the score computed at
training time for the same file (tested in ``tests/engine/test_preprocess.py`` and in the DDAD
parity tests).

Steps, in order (each a pure numpy function ``apply_<step>``):
1. ``apply_crop``: ``none`` (the papers') or ``field``: crop to the exposed field, removing
   black or white borders, collimation and the empty background beside the body (see
   :func:`field_box`).
2. ``apply_aspect``: make the image square (stretch, centre crop or pad).
3. ``apply_resize``: area-aware bilinear resize to ``size`` x ``size`` (Pillow's antialiased
   bilinear on float32, the filter the DDAD code applies with ``Image.resize(..., BILINEAR)``).
4. ``apply_intensity``: ``none`` (the papers' choice), ``percentile`` (robust 1-99 % stretch)
   or ``equalize`` (rank-based histogram equalisation: invariant to any monotonic change of
   exposure, gamma or window). After ``crop="field"`` both are computed inside the exposed
   field, so the share of border or empty background no longer moves the body's grey levels.
   ``equalize-bands`` equalises, then sets the strength of four detail bands to fixed values
   and equalises again (:func:`normalize_bands`): another system's sharpening (unsharp
   masking) or softening changes a band's strength, which equalisation alone cannot undo.
5. map [0, 1] to ``output_range`` ([-1, 1] in DDAD's code: ``Normalize((0.5,), (0.5,))``).

The exposed field (:func:`field_mask`): a pixel is background when it is near the image's own
black or white end, with thresholds that follow the image's tone curve. After a robust
stretch to [0, 1] (0.5 and 99.5 percentiles, which removes any linear change of window or
contrast), with ``m`` the median, a pixel ``u`` is dark background when ``u < m ** 3`` and
bright background when ``u > 0.98`` (a white border or shutter is saturated). A gamma change
``u -> u ** g`` moves ``m`` to ``m ** g`` and the dark threshold with it, so the same pixels are
dark background under any gamma.
Metadata written before ``crop`` existed loads as ``crop="none"`` and preprocesses exactly as
before; :meth:`PreprocessSpec.to_dict` leaves ``crop`` out while it is ``"none"``.

Torch-free.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

Aspect = Literal["stretch", "center_crop", "pad"]
Intensity = Literal["none", "percentile", "equalize", "equalize-bands"]
Crop = Literal["none", "field"]

_ASPECTS: tuple[str, ...] = get_args(Aspect)
_INTENSITIES: tuple[str, ...] = get_args(Intensity)
# the intensity options whose output is equalised (uniform grey levels: a photometric augmentation changes nothing)
EQUALIZED: tuple[str, ...] = ("equalize", "equalize-bands")
_CROPS: tuple[str, ...] = get_args(Crop)

# The exposed field's definition (changing one changes every detector that uses crop="field": a
# new definition needs a new option value, not new numbers here).
FIELD_WORK_SIDE = 256  # the field is found on a copy at most this many pixels on its long side
FIELD_DARK_POWER = 3.0  # dark background: u < median ** 3 (0.09 at the typical median 0.45)
FIELD_BRIGHT_MARGIN = 0.02  # bright background: u > 0.98 (white borders are saturated; the body rarely is)
FIELD_LINE_SHARE = 0.2  # a row or column is inside the field when >= 20 % of it is field (text is less)
FIELD_RUN = 3  # ... and the field starts with 3 such lines in a row (one blended edge line is not the field)
FIELD_MAX_TRIM = 0.3  # at most 30 % of the height or width is cut from each side
FIELD_PASSES = 2  # the second pass takes its thresholds and line shares from the first box (see field_box)

# intensity="equalize-bands" (normalize_bands). Changing one changes every detector that uses the option: a new
# definition needs a new option value, not new numbers here.
BAND_SIGMAS = (1 / 64, 2 / 64, 4 / 64, 8 / 64)  # Gaussian sigmas as fractions of the side (1, 2, 4, 8 px at 64 px)
# each band's root-mean-square strength after normalisation: the median over the dev protocol's 600 known normals
# (kermany dev split, field crop, 64 px, equalised; bench/band_targets.py; never test images). The same numbers
# serve any input size: the sigmas are fractions of the side.
BAND_TARGETS = (0.0485, 0.0454, 0.0653, 0.0809)
BAND_GAIN_LIMITS = (0.25, 4.0)  # a band is scaled by at most this much (a flat image's detail is not blown up)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a radiograph becomes a model input.

    Attributes:
        size: output side length in pixels (the model input is size x size).
        aspect: how a non-square image is made square.
        intensity: intensity normalisation applied after resizing.
        output_range: (low, high) that [0, 1] is mapped to.
        crop: "none" or "field" (crop to the exposed field first).
    """

    size: int = 64
    aspect: Aspect = "stretch"
    intensity: Intensity = "none"
    output_range: tuple[float, float] = (-1.0, 1.0)
    crop: Crop = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 8 <= self.size <= 1024:
            raise ValueError(f"size must be an int in [8, 1024], got {self.size!r}")
        if self.aspect not in _ASPECTS:
            raise ValueError(f"aspect must be one of {_ASPECTS}, got {self.aspect!r}")
        if self.intensity not in _INTENSITIES:
            raise ValueError(f"intensity must be one of {_INTENSITIES}, got {self.intensity!r}")
        if self.crop not in _CROPS:
            raise ValueError(f"crop must be one of {_CROPS}, got {self.crop!r}")
        low, high = self.output_range
        if not float(low) < float(high):
            raise ValueError(f"output_range must be (low, high) with low < high, got {self.output_range!r}")
        object.__setattr__(self, "output_range", (float(low), float(high)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in detector metadata.

        ``crop`` is left out while it is ``"none"``, so a detector that does not crop keeps the
        metadata that versions without the option read.
        """
        d = asdict(self)
        d["output_range"] = list(self.output_range)
        if self.crop == "none":
            del d["crop"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {"size", "aspect", "intensity", "output_range", "crop"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        if "output_range" in kw:
            kw["output_range"] = tuple(kw["output_range"])
        return cls(**kw)


def _work_copy(pixels: np.ndarray) -> np.ndarray:
    """A float32 copy at most FIELD_WORK_SIDE on its long side (block means), for finding the field."""
    h, w = pixels.shape
    factor = -(-max(h, w) // FIELD_WORK_SIDE)  # ceil
    if factor <= 1:
        return np.asarray(pixels, dtype=np.float32)
    # block means (Pillow's reduce): much faster than a filtered resize, and enough to find a field
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    return np.asarray(img.reduce(factor), dtype=np.float32)


def _quantiles(values: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Quantiles with linear interpolation (``np.quantile``'s default) from one partial sort.

    The same values as ``np.quantile(values, qs)`` (tested), about twice as fast on a 224 x 224
    image (``np.quantile`` does more work than the one partition it needs).
    """
    flat = values.ravel()
    pos = np.asarray(qs, dtype=np.float64) * (flat.size - 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, flat.size - 1)
    part = np.partition(flat, np.unique(np.r_[below, above]))
    low, high = part[below].astype(np.float64), part[above].astype(np.float64)
    return low + (pos - below) * (high - low)


def field_mask(pixels: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Which pixels of an (H, W) image belong to the exposed field (bool, same shape).

    Background is near the image's own black or white end (module docstring): after a robust
    stretch to [0, 1] with median ``m``, ``u < m ** 3`` or ``u > 0.98``. The stretch and ``m``
    come from ``reference`` (default: the image itself). A flat image is all field (nothing
    tells background from body).
    """
    ref = pixels if reference is None else reference
    lo, median, hi = (float(v) for v in _quantiles(ref, (0.005, 0.5, 0.995)))  # Python floats keep float32 math
    if hi - lo < 1e-6:
        return np.ones(pixels.shape, dtype=bool)
    m = float(np.clip((median - lo) / (hi - lo), 0.05, 0.95))  # mostly black or white: keep thresholds sane
    u = (pixels - lo) / (hi - lo)  # unclipped: beyond the ends is background anyway
    return (u >= m ** FIELD_DARK_POWER) & (u <= 1.0 - FIELD_BRIGHT_MARGIN)


def _span(share: np.ndarray) -> tuple[int, int]:
    """Where the field starts and ends along one axis, from each line's share of field pixels.

    The field starts at the first run of ``FIELD_RUN`` lines with share >= ``FIELD_LINE_SHARE``
    (a single line is not enough: resizing blends a white border into the dark background
    beside it into one grey line) and ends after the last such run; each side cut is at most
    ``FIELD_MAX_TRIM`` of the length.
    """
    n = share.size
    if n < FIELD_RUN:
        return 0, n
    runs = np.flatnonzero(np.convolve(share >= FIELD_LINE_SHARE, np.ones(FIELD_RUN), mode="valid") == FIELD_RUN)
    if runs.size == 0:
        return 0, n
    limit = int(FIELD_MAX_TRIM * n)
    return min(int(runs[0]), limit), max(int(runs[-1]) + FIELD_RUN, n - limit)


def field_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """The exposed field's bounding box ``(top, bottom, left, right)`` in an (H, W) image.

    Rows and columns are trimmed from each side while less than ``FIELD_LINE_SHARE`` of them
    lies in :func:`field_mask` (found on a copy of at most ``FIELD_WORK_SIDE`` pixels), so a
    black or white border, collimation or empty background goes, while burnt-in text on it
    (thin strokes, a small share of a line) does not hold the crop open. At most
    ``FIELD_MAX_TRIM`` of each dimension is cut per side.

    Returns:
        (top, bottom, left, right) in pixels of ``pixels``: the field is
        ``pixels[top:bottom, left:right]``.
    """
    h, w = pixels.shape
    small = _work_copy(pixels)
    sh, sw = small.shape
    top, bottom, left, right = 0, sh, 0, sw
    # twice: a wide border moves the median that sets the thresholds and dilutes each line's
    # share; the second pass takes both from the first box, as an image without the border would
    # have them, and may move any side in or out again
    for _ in range(FIELD_PASSES):
        mask = field_mask(small, reference=small[top:bottom, left:right])
        rows = np.count_nonzero(mask[:, left:right], axis=1) / (right - left)
        cols = np.count_nonzero(mask[top:bottom, :], axis=0) / (bottom - top)
        (top, bottom), (left, right) = _span(rows), _span(cols)
    # back to full resolution (to the nearest pixel: rounding outwards would keep a line of border)
    return (int(round(top * h / sh)), int(round(bottom * h / sh)),
            int(round(left * w / sw)), int(round(right * w / sw)))


def apply_crop(pixels: np.ndarray, crop: Crop) -> np.ndarray:
    """Crop an (H, W) image to its exposed field (``field``) or leave it (``none``)."""
    if crop == "none":
        return pixels
    if crop == "field":
        top, bottom, left, right = field_box(pixels)
        return pixels[top:bottom, left:right]
    raise ValueError(f"crop must be one of {_CROPS}, got {crop!r}")


def apply_aspect(pixels: np.ndarray, aspect: Aspect) -> np.ndarray:
    """Make an (H, W) image square.

    ``stretch`` returns the image unchanged (the resize then stretches it, as the public CXR
    anomaly-detection data sets were made); ``center_crop`` keeps the central square;
    ``pad`` pads the short side symmetrically with the image's minimum (background).
    """
    h, w = pixels.shape
    if aspect == "stretch" or h == w:
        return pixels
    if aspect == "center_crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return pixels[top : top + s, left : left + s]
    if aspect == "pad":
        s = max(h, w)
        out = np.full((s, s), float(pixels.min()), dtype=np.float32)
        top, left = (s - h) // 2, (s - w) // 2
        out[top : top + h, left : left + w] = pixels
        return out
    raise ValueError(f"aspect must be one of {_ASPECTS}, got {aspect!r}")


def apply_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W) float image to (size, size), float32.

    Pillow's BILINEAR widens its support when downscaling (area-aware), so a 3000 px radiograph
    and its 224 px copy give nearly the same 64 px input, which matters for resolution shift.
    """
    if pixels.shape == (size, size):
        return np.ascontiguousarray(pixels, dtype=np.float32)
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))  # mode "F"
    return np.asarray(img.resize((size, size), resample=Image.Resampling.BILINEAR), dtype=np.float32)


def apply_intensity(pixels: np.ndarray, intensity: Intensity) -> np.ndarray:
    """Intensity normalisation of an image with values in [0, 1]; returns [0, 1] float32."""
    if intensity == "none":
        return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)
    if intensity == "percentile":
        lo, hi = np.percentile(pixels, [1.0, 99.0])
        if hi - lo < 1e-6:  # a flat image: nothing to stretch
            return np.zeros_like(pixels, dtype=np.float32)
        return np.clip((pixels - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if intensity == "equalize":
        flat = pixels.ravel()
        order = np.argsort(flat, kind="stable")
        sorted_vals = flat[order]
        # average rank for ties, so equal inputs give equal outputs
        _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
        mean_rank = first + (counts - 1) / 2.0
        ranks = np.empty(flat.size, dtype=np.float64)
        ranks[order] = np.repeat(mean_rank, counts)
        return ((ranks + 0.5) / flat.size).reshape(pixels.shape).astype(np.float32)
    if intensity == "equalize-bands":
        return normalize_bands(apply_intensity(pixels, "equalize"))
    raise ValueError(f"intensity must be one of {_INTENSITIES}, got {intensity!r}")


@lru_cache(maxsize=32)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) matrix of a 1-D Gaussian blur with half-sample symmetric edges (``d c b a | a b c d``)."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    idx = np.arange(n)[:, None] + offsets[None, :]
    period = 2 * n
    idx = np.mod(idx, period)
    idx = np.where(idx >= n, period - 1 - idx, idx)  # reflect (works for any radius)
    m = np.zeros((n, n), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(n), offsets.size), idx.ravel()), np.tile(weights, n))
    return m


def _blur(x: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W) image, sigma a fraction of each side."""
    h, w = x.shape
    return _blur_matrix(h, sigma_fraction * h) @ x @ _blur_matrix(w, sigma_fraction * w).T


def _bands(pixels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The four detail bands of an (H, W) image and the coarse rest (their sum is the image).

    Band k is the difference of Gaussian blurs at ``BAND_SIGMAS[k - 1]`` and ``BAND_SIGMAS[k]``
    (band 0: the image minus its finest blur); the rest is the coarsest blur.
    """
    x = np.asarray(pixels, dtype=np.float64)
    levels = [x] + [_blur(x, s) for s in BAND_SIGMAS]
    return [levels[k] - levels[k + 1] for k in range(len(BAND_SIGMAS))], levels[-1]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def band_strengths(pixels: np.ndarray) -> np.ndarray:
    """Root-mean-square strength of the four detail bands of an (H, W) image (float64, shape (4,))."""
    return np.array([_rms(band) for band in _bands(pixels)[0]])


def normalize_bands(pixels: np.ndarray) -> np.ndarray:
    """Set the strength of an equalised image's detail bands to ``BAND_TARGETS``, then equalise again.

    The image is split into four difference-of-Gaussian bands (sigmas ``BAND_SIGMAS`` of the
    side) and the coarse rest; each band is scaled so its root-mean-square strength is its
    target (gain within ``BAND_GAIN_LIMITS``), and the sum is equalised to [0, 1]. Unsharp
    masking, ``u + a (u - G * u)``, multiplies the bands finer than ``G`` by about ``1 + a``;
    this scales them back. One pass, then equalised, is not an exact inverse (the bands overlap and
    the final equalisation reshapes them): on real radiographs it removes about a third of what a
    sharpening or softening changes in the model input (tested; bench/RESULTS.md, "Fixing the
    strength of detail").
    """
    bands, out = _bands(pixels)
    low, high = BAND_GAIN_LIMITS
    for band, target in zip(bands, BAND_TARGETS):
        rms = _rms(band)
        out = out + (float(np.clip(target / rms, low, high)) if rms > 0 else high) * band
    return apply_intensity(out.astype(np.float32), "equalize")


def preprocess(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn a radiograph's display pixels into one model input.

    Args:
        pixels: (H, W) float array in [0, 1], higher = brighter (``Radiograph.pixels``).
        spec: the detector's preprocessing.

    Returns:
        (size, size) float32 in ``spec.output_range``.
    """
    return finish(geometry(pixels, spec), spec)


def geometry(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The first half of :func:`preprocess`: crop, aspect and resize, (size, size) float32 in [0, 1].

    Two specs with the same ``crop``, ``aspect`` and ``size`` share it (scoring computes it once
    for the detector and the acquisition descriptor).
    """
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be a 2-D (H, W) array, got shape {pixels.shape}")
    if min(pixels.shape) < 2:
        raise ValueError(f"pixels must be at least 2 x 2, got shape {pixels.shape}")
    x = apply_crop(np.asarray(pixels, dtype=np.float32), spec.crop)
    x = apply_aspect(x, spec.aspect)
    return apply_resize(x, spec.size)


def finish(resized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The second half of :func:`preprocess`: intensity normalisation and the output range."""
    x = apply_intensity(resized, spec.intensity)
    low, high = spec.output_range
    return (x * (high - low) + low).astype(np.float32, copy=False)


def same_geometry(a: PreprocessSpec, b: PreprocessSpec) -> bool:
    """Whether :func:`geometry` gives the same image for both specs."""
    return (a.crop, a.aspect, a.size) == (b.crop, b.aspect, b.size)


def preprocess_batch(images: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Preprocess several radiographs into an (N, 1, size, size) float32 batch."""
    out = np.empty((len(images), 1, spec.size, spec.size), dtype=np.float32)
    for i, pixels in enumerate(images):
        out[i, 0] = preprocess(pixels, spec)
    return out
