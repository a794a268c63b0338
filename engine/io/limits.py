"""Plausible radiograph sizes, checked from the header before any pixel is decoded.

A chest radiograph is a few hundred to about 4300 pixels a side; the bounds leave a wide margin
while rejecting thumbnails/icons (< 16 px) and claimed sizes that would exhaust memory
(16384² float32 is already 1 GiB).
"""
from __future__ import annotations

from pathlib import Path

from engine.io.types import ImageSizeError

MIN_SIDE = 16
MAX_SIDE = 16384


def check_size(path: Path, rows: int, columns: int) -> None:
    """Raise :class:`ImageSizeError` unless both sides are within [MIN_SIDE, MAX_SIDE].

    Args:
        path: the file (named in the error).
        rows: image height in pixels, as claimed by the header.
        columns: image width in pixels, as claimed by the header.

    Raises:
        ImageSizeError: naming the claimed size and the allowed range.
    """
    if rows < MIN_SIDE or columns < MIN_SIDE:
        raise ImageSizeError(path, f"image too small: {columns}×{rows} pixels "
                                   f"(a radiograph needs at least {MIN_SIDE} a side)")
    if rows > MAX_SIDE or columns > MAX_SIDE:
        raise ImageSizeError(path, f"implausible image size: {columns}×{rows} pixels "
                                   f"(at most {MAX_SIDE} a side)")
