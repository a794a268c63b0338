"""Pure numpy display steps for radiographs, in the DICOM order (PS3.4 N.2, grayscale pipeline).

Each step is ``apply_<step>(arr, ...) -> arr`` as in pydicom's ``pixels/processing.py``, but
float32 throughout and with at most one new full-size array per step, so the reader stays
within a few percent of the raw decoder's time:

1. :func:`apply_modality_lut`: stored values -> modality values (Rescale Slope/Intercept, a
   negative slope included, or a Modality LUT Sequence).
2. :func:`apply_window` (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID), :func:`apply_voi_lut`
   (VOI LUT Sequence) or :func:`apply_min_max` when the file has neither: modality values ->
   [0, 1].
3. :func:`apply_inversion`: MONOCHROME1 / Presentation LUT Shape INVERSE, ``1 - x``.

:func:`apply_luma` turns RGB into gray with the ITU-R 601-2 weights Pillow's ``convert('L')``
uses. Torch-free.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]

_VOI_FUNCTIONS: tuple[str, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def apply_modality_lut(
    arr: np.ndarray,
    slope: float = 1.0,
    intercept: float = 0.0,
    lut: np.ndarray | None = None,
    lut_first: int = 0,
) -> np.ndarray:
    """Map stored values to modality values (PS3.3 C.11.1).

    Args:
        arr: stored pixel values, any integer or float dtype, any shape.
        slope: Rescale Slope; may be negative (the stored scale then runs the other way).
        intercept: Rescale Intercept.
        lut: Modality LUT Data (1-D); when given, ``slope``/``intercept`` are ignored.
        lut_first: the first stored value mapped by ``lut`` (LUT Descriptor, second value);
            values below it take ``lut[0]``, values past the end take ``lut[-1]``.

    Returns:
        float32 array of the same shape (always a new array).

    Raises:
        ValueError: if ``slope`` is zero or not finite, or ``lut`` is empty.
    """
    if lut is not None:
        lut = np.asarray(lut)
        if lut.ndim != 1 or lut.size == 0:
            raise ValueError(f"modality LUT must be a non-empty 1-D array, got shape {lut.shape}")
        index = _lut_index(arr, lut_first, lut.size)
        return lut.astype(np.float32, copy=False)[index]
    if slope == 0 or not np.isfinite(slope) or not np.isfinite(intercept):
        raise ValueError(f"rescale slope must be finite and non-zero, got slope={slope}, "
                         f"intercept={intercept}")
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def window_coefficients(
    center: float, width: float, function: VoiFunction = "LINEAR"
) -> tuple[float, float]:
    """Return ``(a, b)`` such that a LINEAR or LINEAR_EXACT window is ``clip(a * x + b, 0, 1)``.

    PS3.3 C.11.2.1.2.1 (LINEAR): ``y = ((x - (c - 0.5)) / (w - 1) + 0.5)`` clipped, for
    ``w >= 1``; C.11.2.1.3.2 (LINEAR_EXACT): ``y = (x - c) / w + 0.5`` clipped, for ``w > 0``.
    LINEAR with ``w == 1`` is a threshold at ``c - 0.5``; it is approximated by a very steep
    ramp (slope 1e6), exact for integer modality values.

    Args:
        center: Window Center.
        width: Window Width.
        function: "LINEAR" or "LINEAR_EXACT".

    Returns:
        The slope ``a`` and offset ``b`` (Python floats).

    Raises:
        ValueError: if the width is out of range for the function, or the function is SIGMOID
            or unknown.
    """
    if function == "LINEAR":
        if not width >= 1:
            raise ValueError(f"LINEAR window width must be >= 1, got {width}")
        a = 1e6 if width == 1 else 1.0 / (width - 1.0)
        return a, 0.5 - (center - 0.5) * a
    if function == "LINEAR_EXACT":
        if not width > 0:
            raise ValueError(f"LINEAR_EXACT window width must be > 0, got {width}")
        return 1.0 / width, 0.5 - center / width
    raise ValueError(f"no linear coefficients for VOI LUT function {function!r}; "
                     f"expected 'LINEAR' or 'LINEAR_EXACT'")


def apply_linear(arr: np.ndarray, a: float, b: float) -> np.ndarray:
    """Return ``clip(a * arr + b, 0, 1)`` as a new float32 array (two passes, no float64).

    Args:
        arr: float32 modality values.
        a: slope.
        b: offset.

    Returns:
        float32 array in [0, 1], same shape.
    """
    out = np.multiply(arr, np.float32(a), dtype=np.float32)
    out += np.float32(b)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def apply_window(
    arr: np.ndarray,
    center: float,
    width: float,
    function: VoiFunction = "LINEAR",
    invert: bool = False,
) -> np.ndarray:
    """Apply a VOI window (PS3.3 C.11.2.1.2), output in [0, 1].

    Args:
        arr: float32 modality values.
        center: Window Center, in modality units.
        width: Window Width, in modality units.
        function: VOILUTFunction: "LINEAR" (the default when absent), "LINEAR_EXACT" or
            "SIGMOID" (``1 / (1 + exp(-4 (x - c) / w))``, C.11.2.1.3.1).
        invert: also apply ``1 - y`` (MONOCHROME1); folded into the linear map so it is free.

    Returns:
        float32 array in [0, 1], same shape (a new array).

    Raises:
        ValueError: if ``function`` is not one of the three, or ``width`` is out of range.
    """
    if function not in _VOI_FUNCTIONS:
        raise ValueError(f"unknown VOI LUT function {function!r}; expected one of {_VOI_FUNCTIONS}")
    if function == "SIGMOID":
        if not width > 0:
            raise ValueError(f"SIGMOID window width must be > 0, got {width}")
        # y = 1 / (1 + exp(-4 (x - c) / w)); inverted: 1 - y = 1 / (1 + exp(+4 (x - c) / w)).
        sign = 1.0 if invert else -1.0
        out = np.multiply(arr, np.float32(sign * 4.0 / width), dtype=np.float32)
        out -= np.float32(sign * 4.0 * center / width)
        np.exp(out, out=out)
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
        return out
    a, b = window_coefficients(center, width, function)
    if invert:
        a, b = -a, 1.0 - b
    return apply_linear(arr, a, b)


def apply_voi_lut(
    arr: np.ndarray, lut: np.ndarray, lut_first: int, bits: int, invert: bool = False
) -> np.ndarray:
    """Apply a VOI LUT Sequence item (PS3.3 C.11.2.1.1), output in [0, 1].

    Args:
        arr: modality values (float32 or integer).
        lut: LUT Data (1-D, unsigned).
        lut_first: first input value mapped (LUT Descriptor, second value).
        bits: bits per LUT entry (LUT Descriptor, third value); output is divided by
            ``2**bits - 1``. When the data exceed that range (a common encoder mistake), the
            data's own maximum is used instead.
        invert: also apply ``1 - y`` (MONOCHROME1), folded into the table.

    Returns:
        float32 array in [0, 1], same shape.

    Raises:
        ValueError: if ``lut`` is empty or ``bits`` is not in 1..16.
    """
    lut = np.asarray(lut)
    if lut.ndim != 1 or lut.size == 0:
        raise ValueError(f"VOI LUT must be a non-empty 1-D array, got shape {lut.shape}")
    if not 1 <= bits <= 16:
        raise ValueError(f"VOI LUT bits per entry must be in 1..16, got {bits}")
    top = max(float(2**bits - 1), float(lut.max()))
    table = lut.astype(np.float32) / np.float32(top)
    if invert:
        table = np.float32(1.0) - table
    return table[_lut_index(arr, lut_first, lut.size)]


def apply_min_max(
    arr: np.ndarray, invert: bool = False, low: float | None = None, high: float | None = None
) -> np.ndarray:
    """Stretch ``arr`` linearly so its minimum is 0 and its maximum 1 (float32, new array).

    Used when a DICOM file has no window and no VOI LUT. Computed as ``(x - low) / (high -
    low)`` (``(high - x) / ...`` inverted) in float32, so the extremes map to exactly 0 and 1
    and no clipping pass is needed. A constant image becomes all 0 (all 1 when inverted).

    Args:
        arr: modality values.
        invert: map the maximum to 0 instead (MONOCHROME1).
        low: ``arr.min()`` when the caller already knows it exactly (it must be a value of
            ``arr`` in float32), else None.
        high: ``arr.max()``, likewise.

    Returns:
        float32 array in [0, 1], same shape.
    """
    lo = np.float32(arr.min() if low is None else low)
    hi = np.float32(arr.max() if high is None else high)
    if not hi > lo:
        return np.full(arr.shape, 1.0 if invert else 0.0, dtype=np.float32)
    # The same float32 subtraction as the element-wise one, so x == hi gives exactly 1.
    span = np.float32(hi - lo)
    if invert:
        out = np.subtract(hi, arr, dtype=np.float32)
    else:
        out = np.subtract(arr, lo, dtype=np.float32)
    out /= span
    return out


def apply_inversion(arr: np.ndarray) -> np.ndarray:
    """Return ``1 - arr`` in place (MONOCHROME1 or Presentation LUT Shape INVERSE).

    Args:
        arr: float32 values in [0, 1]; modified in place.

    Returns:
        ``arr`` itself.
    """
    np.subtract(np.float32(1.0), arr, out=arr)
    return arr


def apply_luma(rgb: np.ndarray) -> np.ndarray:
    """Convert (..., 3) RGB to gray with ITU-R 601-2 luma, ``L = (299 R + 587 G + 114 B) / 1000``.

    uint8 input is rounded exactly as Pillow's ``Image.convert('L')`` does (fixed point,
    ``(R*19595 + G*38470 + B*7471 + 0x8000) >> 16``) and stays uint8, so a DICOM RGB image and
    the same pixels saved as PNG read identically. Other dtypes give float32 without rounding.

    Args:
        rgb: array whose last axis is R, G, B (extra channels such as alpha are ignored).

    Returns:
        uint8 (for uint8 input) or float32 array without the last axis.

    Raises:
        ValueError: if the last axis has fewer than 3 channels.
    """
    if rgb.ndim < 1 or rgb.shape[-1] < 3:
        raise ValueError(f"RGB input needs a last axis of at least 3 channels, got shape "
                         f"{rgb.shape}")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if rgb.dtype == np.uint8:
        acc = r.astype(np.uint32) * 19595
        acc += g.astype(np.uint32) * 38470
        acc += b.astype(np.uint32) * 7471
        acc += 0x8000
        acc >>= 16
        return acc.astype(np.uint8)
    out = r.astype(np.float32) * np.float32(0.299)
    out += g.astype(np.float32) * np.float32(0.587)
    out += b.astype(np.float32) * np.float32(0.114)
    return out


def _lut_index(arr: np.ndarray, first: int, size: int) -> np.ndarray:
    """Indices into a LUT of ``size`` entries starting at input value ``first`` (clamped)."""
    if np.issubdtype(arr.dtype, np.integer):
        index = arr.astype(np.int64) - first
    else:
        index = np.rint(arr).astype(np.int64) - first
    np.clip(index, 0, size - 1, out=index)
    return index
