"""Display steps for a radiograph: pure numpy functions, in the DICOM grayscale pipeline's order.

PS3.4 N.2: modality values -> VOI window (:func:`apply_window`) -> polarity
(:func:`apply_invert`) -> 8-bit output (:func:`apply_uint8`). The viewer runs the same steps
through pyqtgraph's fast integer path: the values are kept as uint16 codes
(:func:`encode_uint16`), the window becomes the ImageItem's levels (:func:`window_levels`) and
polarity / the SIGMOID curve a lookup table (:func:`gray_lut`); ``tests/app/test_display.py``
checks both paths give the same pixels.

What a window applies to (:class:`DisplayImage.values`): the modality values for DICOM (so the
header's presets, in modality units, apply as they are), the stored values for other formats
(0-255 for 8-bit, 0-65535 for 16-bit files). The default view is always exactly the reader's
rendering (``Radiograph.pixels``): a window when one reproduces it, else the rendering itself
(a VOI LUT sequence, for instance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
_FUNCTIONS: tuple[str, ...] = get_args(VoiFunction)
# SIGMOID is drawn through a LUT spanning centre ± SIGMOID_SPAN widths: at the ends the curve
# is within 1e-5 of 0 and 1, below half an 8-bit step.
SIGMOID_SPAN = 3.0
LUT_SIZE = 4096
# A window reproduces the reader's rendering when it matches within this (in [0, 1] units).
_MATCH_TOLERANCE = 0.75 / 255.0
_SAMPLE_TARGET = 65536


@dataclass(frozen=True)
class Window:
    """A VOI window in the units of :attr:`DisplayImage.values`.

    Attributes:
        center: window centre.
        width: window width (>= 1 for LINEAR, > 0 otherwise).
        function: the DICOM VOI LUT function.
        label: what it is ("header: LUNG", "auto", "full range", "manual"...).
    """

    center: float
    width: float
    function: VoiFunction = "LINEAR"
    label: str = ""

    def __post_init__(self) -> None:
        if self.function not in _FUNCTIONS:
            raise ValueError(f"window function must be one of {_FUNCTIONS}, got {self.function!r}")
        if not np.isfinite(self.center) or not np.isfinite(self.width):
            raise ValueError(f"window centre and width must be finite, got {self.center!r}, {self.width!r}")
        minimum = 1.0 if self.function == "LINEAR" else 0.0
        if not (self.width >= minimum if minimum else self.width > 0):
            raise ValueError(f"{self.function} window width must be "
                             f"{'>= 1' if minimum else '> 0'}, got {self.width!r}")


@dataclass(frozen=True)
class EncodedImage:
    """Values stored as uint16 codes: ``value = offset + code * step`` (exact for integer
    values spanning at most 65536 levels, else within half a step).

    Attributes:
        codes: (H, W) uint16, row-major.
        offset: the value of code 0.
        step: the value of one code (> 0).
    """

    codes: np.ndarray
    offset: float
    step: float

    def to_code(self, value: float) -> float:
        """The (fractional) code of a value."""
        return (value - self.offset) / self.step

    def value_at(self, row: int, col: int) -> float:
        """The value of one pixel."""
        return self.offset + float(self.codes[row, col]) * self.step

    def decode(self) -> np.ndarray:
        """All values as float32 (H, W)."""
        return (self.codes.astype(np.float32) * np.float32(self.step) + np.float32(self.offset)).astype(np.float32)


@dataclass(frozen=True)
class DisplayImage:
    """One radiograph prepared for display.

    Attributes:
        values: what windows apply to (modality values, or stored raster values).
        rendering: the reader's own rendering as codes of [0, 1] (0..65535) when no window
            reproduces it (e.g. a VOI LUT sequence); None when ``default_window`` does.
        inverted: True when higher values display darker (MONOCHROME1 polarity).
        default_window: the window reproducing the reader's rendering, or None (use
            ``rendering``).
        presets: windows from the file header, in order.
        value_range: (min, max) of the values.
        unit: the values' unit, for the user ("modality units", "8-bit value"...).
    """

    values: EncodedImage
    rendering: EncodedImage | None
    inverted: bool
    default_window: Window | None
    presets: tuple[Window, ...]
    value_range: tuple[float, float]
    unit: str

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        h, w = self.values.codes.shape
        return int(h), int(w)


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Apply a VOI window (PS3.3 C.11.2.1.2) to values; float32 in [0, 1].

    LINEAR: ``((x - (c - 0.5)) / (w - 1) + 0.5)`` clipped; LINEAR_EXACT: ``(x - c) / w + 0.5``
    clipped; SIGMOID: ``1 / (1 + exp(-4 (x - c) / w))``.

    Args:
        values: (H, W) values in the window's units.
        window: the window.

    Returns:
        float32 array of the same shape.
    """
    x = np.asarray(values, dtype=np.float32)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-4.0 * (x - np.float32(c)) / np.float32(w)))).astype(np.float32)
    lo, hi = window_levels(window)
    out = (x - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def apply_invert(arr: np.ndarray) -> np.ndarray:
    """Polarity inversion of a [0, 1] image: ``1 - arr`` (a new array)."""
    return (1.0 - np.asarray(arr, dtype=np.float32)).astype(np.float32)


def apply_uint8(arr: np.ndarray) -> np.ndarray:
    """[0, 1] float to uint8 by rounding (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def window_levels(window: Window) -> tuple[float, float]:
    """The (low, high) values a window maps to 0 and 1, as pyqtgraph ImageItem levels.

    For LINEAR and LINEAR_EXACT the window is exactly ``clip((x - low) / (high - low), 0, 1)``.
    For SIGMOID the levels span centre ± :data:`SIGMOID_SPAN` widths and :func:`gray_lut`
    carries the curve.
    """
    c, w = float(window.center), float(window.width)
    if window.function == "LINEAR":
        if w == 1.0:  # a threshold at c - 0.5 (PS3.3): a very steep ramp
            return c - 0.5 - 1e-6, c - 0.5 + 1e-6
        half = (w - 1.0) / 2.0
        return c - 0.5 - half, c - 0.5 + half
    if window.function == "LINEAR_EXACT":
        return c - w / 2.0, c + w / 2.0
    return c - SIGMOID_SPAN * w, c + SIGMOID_SPAN * w


def gray_lut(function: VoiFunction, invert: bool, size: int = LUT_SIZE) -> np.ndarray:
    """The gray lookup table that follows :func:`window_levels`: (size,) uint8.

    Entry ``i`` is the output for the level fraction ``(i + 0.5) / size`` (pyqtgraph maps
    ``low..high`` onto the entries and takes the floor).

    Args:
        function: the window's VOI function (SIGMOID bends the table).
        invert: reverse the table (polarity).
        size: number of entries.
    """
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    if function == "SIGMOID":
        x = (t - 0.5) * 2.0 * SIGMOID_SPAN  # in widths from the centre
        y = 1.0 / (1.0 + np.exp(-4.0 * x))
    else:
        y = t
    if invert:
        y = 1.0 - y
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


def encode_uint16(values: np.ndarray) -> EncodedImage:
    """Store values as uint16 codes for pyqtgraph's fast LUT path.

    Integer-valued images spanning at most 65536 levels (every 8- to 16-bit radiograph) are
    stored exactly; anything else is quantised to 65536 levels over its range.

    Args:
        values: (H, W) finite float or integer values.
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"values must be a 2-D (H, W) array, got shape {v.shape}")
    vmin, vmax = float(v.min()), float(v.max())
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise ValueError("values must be finite to be displayed")
    span = vmax - vmin
    if span <= 65535 and _is_integral(v):
        # exact: integers below 2**24 are exact in float32
        return EncodedImage(codes=np.subtract(v, vmin, dtype=np.float64 if v.dtype.kind in "iu" else np.float32).astype(np.uint16),
                            offset=vmin, step=1.0)
    step = span / 65535.0 if span > 0 else 1.0
    codes = np.rint((v.astype(np.float32) - np.float32(vmin)) / np.float32(step))
    return EncodedImage(codes=np.clip(codes, 0, 65535).astype(np.uint16), offset=vmin, step=step)


def auto_window(image: EncodedImage, low_percent: float = 0.5, high_percent: float = 99.5) -> Window:
    """A window from the image histogram: the ``low``-``high`` percentile range.

    Pixels at exactly the minimum or maximum code are left out first: they are usually
    padding, collimation or saturation, not anatomy. Exact (a histogram of the codes).

    Args:
        image: the encoded values.
        low_percent: lower percentile, in [0, 100).
        high_percent: upper percentile, in (low_percent, 100].
    """
    if not 0.0 <= low_percent < high_percent <= 100.0:
        raise ValueError(f"need 0 <= low_percent < high_percent <= 100, got {low_percent}, {high_percent}")
    hist = np.bincount(image.codes.ravel(), minlength=65536).astype(np.int64)
    nonzero = np.flatnonzero(hist)
    if nonzero.size > 2:  # drop the extreme codes (padding / saturation)
        hist[nonzero[0]] = 0
        hist[nonzero[-1]] = 0
    cum = np.cumsum(hist)
    total = int(cum[-1])
    if total == 0:
        return full_range_window(image, label="auto")
    # the first code reaching each fraction of the pixels (at least one pixel for the low end)
    lo_code = int(np.searchsorted(cum, max(total * low_percent / 100.0, 1.0), side="left"))
    hi_code = int(np.searchsorted(cum, total * high_percent / 100.0, side="left"))
    lo = image.offset + lo_code * image.step
    hi = image.offset + hi_code * image.step
    return _window_between(lo, hi, image.step, "auto")


def full_range_window(image: EncodedImage, label: str = "full range") -> Window:
    """The window from the smallest to the largest value."""
    codes = image.codes
    lo = image.offset + float(codes.min()) * image.step
    hi = image.offset + float(codes.max()) * image.step
    return _window_between(lo, hi, image.step, label)


def _window_between(lo: float, hi: float, step: float, label: str) -> Window:
    """The window mapping lo to black and hi to white (LINEAR when the units allow it)."""
    if step >= 1.0:  # integer units: a LINEAR window, as DICOM viewers show them
        width = max(hi - lo + 1.0, 2.0)
        return Window(center=lo + width / 2.0, width=width, function="LINEAR", label=label)
    width = max(hi - lo, step)
    return Window(center=(lo + hi) / 2.0, width=width, function="LINEAR_EXACT", label=label)


def apply_thumbnail(pixels: np.ndarray, max_side: int = 64) -> np.ndarray:
    """A small uint8 copy of a [0, 1] rendering, by area averaging (no aliasing).

    Args:
        pixels: (H, W) float in [0, 1].
        max_side: the longer side of the result.

    Returns:
        (h, w) uint8 with ``max(h, w) == min(max_side, max(H, W))``, aspect kept.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    h, w = pixels.shape
    factor = max(1, int(np.ceil(max(h, w) / max_side)))
    hh, ww = (h // factor) * factor, (w // factor) * factor
    if hh == 0 or ww == 0:
        small = np.asarray(pixels, dtype=np.float32)
    else:
        small = np.asarray(pixels[:hh, :ww], dtype=np.float32).reshape(hh // factor, factor, ww // factor, factor).mean(axis=(1, 3))
    return apply_uint8(small)


def build_display_image(pixels: np.ndarray, modality_values: np.ndarray | None,
                        presets: tuple[Window, ...] = (), bits_stored: int | None = None,
                        photometric: str | None = None) -> DisplayImage:
    """Prepare a decoded radiograph for display.

    Args:
        pixels: the reader's rendering, (H, W) float32 in [0, 1], higher = brighter.
        modality_values: DICOM modality values (H, W), or None for other formats.
        presets: the header's windows (modality units).
        bits_stored: bits per sample of a non-DICOM file (8, 16...), for its value units.
        photometric: the photometric interpretation, used for polarity only when the image
            is too flat to tell it from the data.

    Returns:
        The display image; its default view reproduces ``pixels``.
    """
    if modality_values is not None:
        values_raw = np.asarray(modality_values, dtype=np.float32)
        unit = "modality units"
        inverted = _infer_inverted(values_raw, pixels, photometric == "MONOCHROME1")
    else:
        full = _full_scale(bits_stored)
        values_raw = np.asarray(pixels, dtype=np.float32) * np.float32(full)
        rounded = np.rint(values_raw)
        if np.allclose(_sample(values_raw), _sample(rounded), atol=1e-3):
            values_raw = rounded
        unit = f"{bits_stored}-bit value" if bits_stored in (8, 10, 12, 14, 16) else "value (0-255 scale)"
        inverted = False
        presets = ()
    values = encode_uint16(values_raw)
    value_range = (values.offset + float(values.codes.min()) * values.step,
                   values.offset + float(values.codes.max()) * values.step)
    candidates = list(presets)
    if modality_values is None:
        full = _full_scale(bits_stored)
        candidates.append(Window(center=full / 2.0 + 0.5, width=full + 1.0, function="LINEAR", label="file"))
    candidates.append(full_range_window(values, label="file (min–max)"))
    default = _first_reproducing(values_raw, pixels, candidates, inverted)
    rendering = None
    if default is None:
        rendering = EncodedImage(codes=np.rint(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16),
                                 offset=0.0, step=1.0 / 65535.0)
    return DisplayImage(values=values, rendering=rendering, inverted=inverted, default_window=default,
                        presets=tuple(presets), value_range=value_range, unit=unit)


def _full_scale(bits_stored: int | None) -> float:
    """The largest stored value of a non-DICOM file (its reader divided by it); 255 otherwise."""
    return float(2 ** bits_stored - 1) if bits_stored in (8, 10, 12, 14, 16) else 255.0


def _is_integral(v: np.ndarray) -> bool:
    """Whether every value is an integer (checked on a subsample first: cheap rejection)."""
    if v.dtype.kind in "iu":
        return True
    if not np.all(np.mod(_sample(v), 1.0) == 0):
        return False
    return bool(np.all(np.mod(v, 1.0) == 0))


def _sample(arr: np.ndarray) -> np.ndarray:
    """A strided subsample of about :data:`_SAMPLE_TARGET` pixels (cheap checks on big images)."""
    flat = np.asarray(arr).ravel()
    stride = max(1, flat.size // _SAMPLE_TARGET)
    return flat[::stride]


def _infer_inverted(values: np.ndarray, pixels: np.ndarray, fallback: bool) -> bool:
    """Whether the reader's rendering decreases with the values (MONOCHROME1 or INVERSE).

    Read from the data (the sign of their correlation), so it holds whatever the reader
    decided; ``fallback`` when the image is too flat to tell.
    """
    v = _sample(values).astype(np.float64)
    p = _sample(pixels).astype(np.float64)
    v = v - v.mean()
    p = p - p.mean()
    c = float(np.dot(v, p))
    scale = float(np.sqrt(np.dot(v, v) * np.dot(p, p)))
    if scale == 0.0 or abs(c) < 1e-6 * scale:
        return fallback
    return c < 0


def _first_reproducing(values: np.ndarray, pixels: np.ndarray, candidates: list[Window],
                       inverted: bool) -> Window | None:
    """The first window whose rendering equals the reader's (on a subsample), or None."""
    v = _sample(values)
    p = _sample(pixels).astype(np.float32)
    for window in candidates:
        y = apply_window(v, window)
        if inverted:
            y = apply_invert(y)
        if float(np.max(np.abs(y - p))) <= _MATCH_TOLERANCE:
            return window
    return None
