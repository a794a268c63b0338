"""The two image filters the synthetic chests need, in numpy (the base install has no SciPy).

- :func:`gaussian_filter` is ``scipy.ndimage.gaussian_filter(image, sigma, truncate=...)``
  (mode "reflect": d c b a | a b c d | d c b a): the same kernel, the same border, each axis
  summed in float64 and stored in the image's dtype as SciPy does, so results agree to the
  last bits of float32.
- :func:`bilinear_sample` is ``scipy.ndimage.map_coordinates(image, [rows, cols], order=1,
  mode="constant", cval=0.0)``: a point outside the pixel centres' extent [0, n - 1] is 0.

tests/engine/synth/test_synth_filters.py compares both with SciPy where it is installed.
"""
from __future__ import annotations

import numpy as np


def gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    """SciPy's 1-D Gaussian weights: radius ``int(truncate * sigma + 0.5)``, summing to 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    return phi / phi.sum()


def gaussian_filter(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur of a 2-D float image, mirrored at the border (SciPy's mode "reflect").

    Args:
        image: (H, W) float array.
        sigma: standard deviation in pixels, > 0.
        truncate: the kernel's radius in standard deviations.

    Returns:
        The blurred image, same shape and dtype.

    Raises:
        ValueError: ``image`` is not a 2-D float array or ``sigma`` is not positive.
    """
    image = np.asarray(image)
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"gaussian_filter needs a 2-D float image, got shape {image.shape} dtype {image.dtype}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    weights = gaussian_kernel(sigma, truncate)
    radius = len(weights) // 2
    out = image
    for _ in range(2):  # along the rows, then (transposed) along the columns
        n = out.shape[0]
        # numpy's "symmetric" is SciPy's "reflect"; numpy mirrors again when radius > n
        padded = np.pad(out.astype(np.float64), [(radius, radius), (0, 0)], mode="symmetric")
        acc = weights[radius] * padded[radius:radius + n]
        for k in range(1, radius + 1):  # the kernel is symmetric: one product per pair
            acc += weights[radius + k] * (padded[radius - k:radius - k + n] + padded[radius + k:radius + k + n])
        out = np.ascontiguousarray(acc.astype(image.dtype, copy=False).T)
    return out


def bilinear_sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D image at fractional pixel positions, 0 outside [0, n - 1].

    Args:
        image: (H, W) float array.
        rows: row positions, any shape.
        cols: column positions, the shape of ``rows``.

    Returns:
        float64 samples, the shape of ``rows``.

    Raises:
        ValueError: ``image`` is not 2-D or ``rows`` and ``cols`` differ in shape.
    """
    image = np.asarray(image, dtype=np.float64)
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    if image.ndim != 2 or rows.shape != cols.shape:
        raise ValueError(f"bilinear_sample needs a 2-D image and positions of one shape, got {image.shape}, "
                         f"{rows.shape} and {cols.shape}")
    h, w = image.shape
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    r = np.where(inside, rows, 0.0)
    c = np.where(inside, cols, 0.0)
    r0 = np.minimum(np.floor(r).astype(np.intp), max(h - 2, 0))
    c0 = np.minimum(np.floor(c).astype(np.intp), max(w - 2, 0))
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = r - r0, c - c0
    top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
    bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
    return np.where(inside, top * (1 - fr) + bottom * fr, 0.0)
