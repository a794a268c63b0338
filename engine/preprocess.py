"""The one preprocessing function shared by training, export checks, `cxrscreen score` and the app.

A detector stores its :class:`PreprocessSpec` in its metadata; every consumer calls
:func:`preprocess` with that spec, so a score computed in the app equals the score computed at
training time for the same file (tested in ``tests/engine/test_preprocess.py`` and in the DDAD
parity tests).

Steps, in order (each a pure numpy function ``apply_<step>``):
1. ``apply_aspect``: make the image square (stretch, centre crop or pad).
2. ``apply_resize``: area-aware bilinear resize to ``size`` x ``size`` (Pillow's antialiased
   bilinear on float32, the filter the DDAD code applies with ``Image.resize(..., BILINEAR)``).
3. ``apply_intensity``: ``none`` (the papers' choice), ``percentile`` (robust 1-99 % stretch)
   or ``equalize`` (rank-based histogram equalisation: invariant to any monotonic change of
   exposure, gamma or window).
4. map [0, 1] to ``output_range`` ([-1, 1] in DDAD's code: ``Normalize((0.5,), (0.5,))``).

Torch-free.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

Aspect = Literal["stretch", "center_crop", "pad"]
Intensity = Literal["none", "percentile", "equalize"]

_ASPECTS: tuple[str, ...] = get_args(Aspect)
_INTENSITIES: tuple[str, ...] = get_args(Intensity)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a radiograph becomes a model input.

    Attributes:
        size: output side length in pixels (the model input is size x size).
        aspect: how a non-square image is made square.
        intensity: intensity normalisation applied after resizing.
        output_range: (low, high) that [0, 1] is mapped to.
    """

    size: int = 64
    aspect: Aspect = "stretch"
    intensity: Intensity = "none"
    output_range: tuple[float, float] = (-1.0, 1.0)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 8 <= self.size <= 1024:
            raise ValueError(f"size must be an int in [8, 1024], got {self.size!r}")
        if self.aspect not in _ASPECTS:
            raise ValueError(f"aspect must be one of {_ASPECTS}, got {self.aspect!r}")
        if self.intensity not in _INTENSITIES:
            raise ValueError(f"intensity must be one of {_INTENSITIES}, got {self.intensity!r}")
        low, high = self.output_range
        if not float(low) < float(high):
            raise ValueError(f"output_range must be (low, high) with low < high, got {self.output_range!r}")
        object.__setattr__(self, "output_range", (float(low), float(high)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in detector metadata."""
        d = asdict(self)
        d["output_range"] = list(self.output_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {"size", "aspect", "intensity", "output_range"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        if "output_range" in kw:
            kw["output_range"] = tuple(kw["output_range"])
        return cls(**kw)


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
    raise ValueError(f"intensity must be one of {_INTENSITIES}, got {intensity!r}")


def preprocess(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Turn a radiograph's display pixels into one model input.

    Args:
        pixels: (H, W) float array in [0, 1], higher = brighter (``Radiograph.pixels``).
        spec: the detector's preprocessing.

    Returns:
        (size, size) float32 in ``spec.output_range``.
    """
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be a 2-D (H, W) array, got shape {pixels.shape}")
    if min(pixels.shape) < 2:
        raise ValueError(f"pixels must be at least 2 x 2, got shape {pixels.shape}")
    x = apply_aspect(np.asarray(pixels, dtype=np.float32), spec.aspect)
    x = apply_resize(x, spec.size)
    x = apply_intensity(x, spec.intensity)
    low, high = spec.output_range
    return (x * (high - low) + low).astype(np.float32, copy=False)


def preprocess_batch(images: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Preprocess several radiographs into an (N, 1, size, size) float32 batch."""
    out = np.empty((len(images), 1, spec.size, spec.size), dtype=np.float32)
    for i, pixels in enumerate(images):
        out[i, 0] = preprocess(pixels, spec)
    return out
