"""Plausible radiograph sizes, checked from the header before any pixel is decoded.

A chest radiograph is a few hundred to about 4300 pixels a side; the bounds leave a wide margin
while rejecting thumbnails/icons (< 16 px). The pixel budget refuses decompression bombs: a few
kilobytes of PNG or JPEG 2000 can claim 16384² pixels (268 million, about 1 GiB as the float32
image, twice that with the DICOM modality values), which would exhaust a reading station's
memory. :data:`MAX_PIXELS` (50 megapixels, e.g. 7071², over twice the largest detector panels)
is checked before decoding, and it is lower than Pillow's own decompression-bomb limit.
"""
from __future__ import annotations

from pathlib import Path

from cxrscreen.engine.io.types import ImageSizeError

MIN_SIDE = 16
MAX_SIDE = 16384
MAX_PIXELS = 50_000_000


def check_size(path: Path, rows: int, columns: int) -> None:
    """Raise :class:`ImageSizeError` unless both sides are within [MIN_SIDE, MAX_SIDE] and the
    image fits the pixel budget.

    Args:
        path: the file (named in the error).
        rows: image height in pixels, as claimed by the header.
        columns: image width in pixels, as claimed by the header.

    Raises:
        ImageSizeError: naming the claimed size and the allowed range or budget.
    """
    if rows < MIN_SIDE or columns < MIN_SIDE:
        raise ImageSizeError(path, f"image too small: {columns}×{rows} pixels "
                                   f"(a radiograph needs at least {MIN_SIDE} a side)")
    if rows > MAX_SIDE or columns > MAX_SIDE:
        raise ImageSizeError(path, f"implausible image size: {columns}×{rows} pixels "
                                   f"(at most {MAX_SIDE} a side)")
    if rows * columns > MAX_PIXELS:
        raise ImageSizeError(path, f"image too large: {columns}×{rows} = "
                                   f"{rows * columns / 1e6:.1f} megapixels is over the "
                                   f"{MAX_PIXELS / 1e6:g} megapixel limit (decompression bomb?)")
