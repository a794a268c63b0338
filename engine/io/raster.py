"""PNG, JPEG and BMP radiographs through Pillow; TIFF through tifffile (Pillow as fallback).

Gray conversion of 8-bit colour is Pillow's own ``convert('L')`` (ITU-R 601-2 luma,
299/587/114 per mille), so RGB files with gray content (the 224² Kermany JPEGs) read exactly
as the DDAD code reads them. 8-bit values map to ``v / 255`` and 16-bit values to
``v / 65535`` (float32, exact division); floating-point samples already in [0, 1] are kept,
anything else is stretched min–max (and the notes say so).

TIFF goes through tifffile because Pillow silently drops 16-bit RGB to 8 bits and ignores
MinIsWhite on 16-bit files; tifffile needs the optional ``imagecodecs`` for LZW and JPEG
compression, so those fall back to Pillow (8-bit there, where Pillow is right).

The size is checked from the header before decoding: PNG and BMP sizes straight from the
bytes already read, the others from the lazy header parse, against the sides and the pixel
budget of :mod:`engine.io.limits` (decompression bombs). Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) stays in force too and is reported as an
:class:`ImageSizeError`. Floating-point samples that are not finite (NaN, infinity) are refused:
a NaN image would score as "not flagged". Torch-free.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrscreen.engine.io.limits import check_size
from cxrscreen.engine.io.processing import apply_inversion, apply_luma
from cxrscreen.engine.io.types import (
    CorruptFileError,
    FileFormat,
    ImageSizeError,
    Radiograph,
    RadiographMeta,
    UnsupportedFileError,
)

_PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
# Errors Pillow and tifffile raise on damaged data (Pillow raises TypeError("Missing
# dimensions") when a TIFF's ImageWidth/ImageLength is damaged, at decode time).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                  IndexError, KeyError, TypeError, OverflowError)
_GRAY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_COLOUR = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
_PALETTE = ("P", "PA")
_MODE_PHOTOMETRIC: dict[str, str] = {
    "1": "MONOCHROME2", "L": "MONOCHROME2", "LA": "MONOCHROME2", "La": "MONOCHROME2",
    "I;16": "MONOCHROME2", "I;16L": "MONOCHROME2", "I;16B": "MONOCHROME2",
    "I;16N": "MONOCHROME2", "I": "MONOCHROME2", "F": "MONOCHROME2",
    "P": "PALETTE COLOR", "PA": "PALETTE COLOR", "RGB": "RGB", "RGBA": "RGB", "RGBa": "RGB",
    "RGBX": "RGB", "CMYK": "CMYK", "YCbCr": "YBR_FULL",
}
_NOTE_LUMA = "colour converted to gray (ITU-R 601-2 luma)"
_NOTE_ALPHA = "alpha channel ignored"
_NOTE_PALETTE = "palette image converted to gray"
# What reading each Pillow mode does, announced in the notes before decoding.
_MODE_NOTES: dict[str, tuple[str, ...]] = {
    "RGB": (_NOTE_LUMA,), "RGBX": (_NOTE_LUMA,), "CMYK": (_NOTE_LUMA,), "YCbCr": (_NOTE_LUMA,),
    "RGBA": (_NOTE_LUMA, _NOTE_ALPHA), "RGBa": (_NOTE_LUMA, _NOTE_ALPHA),
    "P": (_NOTE_PALETTE,), "PA": (_NOTE_PALETTE, _NOTE_ALPHA),
    "LA": (_NOTE_ALPHA,), "La": (_NOTE_ALPHA,),
}
# Modes Pillow's convert('L') turns into gray (1-bit, gray + alpha, colour, palette).
_TO_L = frozenset(("1", "LA", "La", *_COLOUR, *_PALETTE))
_FULL_8 = np.float32(255)


def read_raster_header(path: Path, fp: BinaryIO, fmt: FileFormat, head: bytes) -> RadiographMeta:
    """Read size and pixel layout of a raster file without decoding its pixels.

    Args:
        path: the file (named in errors).
        fp: the open file, positioned at 0.
        fmt: the format found by content sniffing ("png", "jpeg", "tiff" or "bmp").
        head: the first bytes of the file (PNG and BMP sizes are read from them).

    Returns:
        The metadata (raster files carry no patient or study identifiers).

    Raises:
        ImageSizeError: implausible size.
        CorruptFileError: the header cannot be parsed.
    """
    _check_size_from_head(path, fmt, head)
    if fmt == "tiff":
        return _tiff_header(path, fp)
    with _pillow_open(path, fp, fmt) as im:
        return _pillow_meta(path, fmt, im, ())


def read_raster(
    path: Path, fp: BinaryIO, fmt: FileFormat, head: bytes, notes: tuple[str, ...] = ()
) -> Radiograph:
    """Decode a raster file into a :class:`Radiograph` (gray float32 in [0, 1]).

    Args:
        path: the file (named in errors).
        fp: the open file, positioned at 0.
        fmt: the format found by content sniffing.
        head: the first bytes of the file.
        notes: notes from the caller (e.g. a suffix that does not match the content).

    Returns:
        The radiograph; ``modality_values`` is None.

    Raises:
        ImageSizeError: implausible size.
        CorruptFileError: truncated or undecodable data.
        UnsupportedFileError: a pixel mode without a gray meaning (e.g. HSV).
    """
    _check_size_from_head(path, fmt, head)
    if fmt == "tiff":
        radiograph = _read_tiff(path, fp)
        if radiograph is not None:
            return _add_notes(radiograph, notes, first=True)
        fp.seek(0)
    # Kept lean (no context-manager layers, one metadata object): for a 224² JPEG the whole
    # read is ~0.2 ms, so every microsecond here is visible in the overhead budget.
    with _pillow_open(path, fp, fmt) as im:
        meta = _pillow_meta(path, fmt, im, (*notes, *_MODE_NOTES.get(im.mode, ())))
        if fmt == "jpeg" and im.mode == "RGB":
            # libjpeg decodes straight to luma, skipping the colour conversion: the same
            # ITU-R 601 weights as convert('L'), bit-identical on gray-content images (tested)
            # and about a quarter faster on the 224 px Kermany files
            im.draft("L", im.size)
        try:
            pixels, note = _pillow_gray(path, im)
        except _DECODE_ERRORS as exc:
            raise _decode_error(path, fmt, exc) from exc
    if note:
        meta = replace(meta, notes=(*meta.notes, note))
    return Radiograph(pixels=pixels, meta=meta)


def scale_to_unit(arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Map samples to float32 [0, 1]: ``v/255`` (uint8), ``v/65535`` (uint16), else min–max.

    Args:
        arr: gray samples of any numeric dtype.

    Returns:
        The float32 array and a note when a min–max stretch was needed (else None).
    """
    if arr.dtype == np.uint8:
        return np.divide(arr, np.float32(255), dtype=np.float32), None
    if arr.dtype == np.uint16:
        return np.divide(arr, np.float32(65535), dtype=np.float32), None
    lo, hi = float(arr.min()), float(arr.max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return arr.astype(np.float32), None
    if np.issubdtype(arr.dtype, np.integer) and lo >= 0 and hi <= 65535:
        return np.divide(arr, np.float32(65535), dtype=np.float32), None
    if np.issubdtype(arr.dtype, np.floating):
        # halved in float64: (hi - lo) of extreme float32/64 samples would overflow, and a
        # float32 product can round just past 1
        half = arr.astype(np.float64) / 2 - lo / 2
        out = (half / (hi / 2 - lo / 2) if hi > lo else half).astype(np.float32)
        np.clip(out, 0.0, 1.0, out=out)
        return out, f"{arr.dtype} samples stretched min–max"
    out = np.subtract(arr, np.float32(lo), dtype=np.float32)
    if hi > lo:
        out *= np.float32(1.0 / (hi - lo))
        np.clip(out, 0.0, 1.0, out=out)  # float32 rounding can land just past 1
    return out, f"{arr.dtype} samples stretched min–max"


def _to_unit(path: Path, arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """:func:`scale_to_unit` after refusing empty and non-finite samples."""
    if arr.size == 0:
        raise CorruptFileError(path, f"decoded to an empty image (shape {arr.shape})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise CorruptFileError(path, f"{arr.dtype} samples are not finite (NaN or infinity)")
    return scale_to_unit(arr)


def _check_size_from_head(path: Path, fmt: FileFormat, head: bytes) -> None:
    """Check PNG (IHDR) and BMP (DIB header) sizes from raw bytes, before any decoder runs."""
    if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        columns, rows = struct.unpack(">II", head[16:24])
        check_size(path, rows, columns)
    elif fmt == "bmp" and len(head) >= 26:
        columns, rows = struct.unpack("<ii", head[18:26])
        check_size(path, abs(rows), abs(columns))  # a negative height means top-down rows


def _pillow_open(path: Path, fp: BinaryIO, fmt: FileFormat) -> Image.Image:
    """Pillow's lazy open (header only) with typed errors and the size checks.

    Returns:
        The opened image; the caller closes it (``with``).
    """
    try:
        im = Image.open(fp, formats=[_PIL_FORMATS[fmt]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageSizeError(path, f"implausible image size ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise CorruptFileError(path, f"not a readable {fmt.upper()} file (damaged header)") from exc
    except _DECODE_ERRORS as exc:
        raise _decode_error(path, fmt, exc) from exc
    columns, rows = im.size
    limit = Image.MAX_IMAGE_PIXELS
    try:
        check_size(path, rows, columns)
        if limit is not None and rows * columns > limit:
            raise ImageSizeError(path, f"implausible image size: {columns}×{rows} pixels is "
                                       f"over Pillow's decompression-bomb limit ({limit})")
    except ImageSizeError:
        im.close()
        raise
    return im


def _pillow_meta(
    path: Path, fmt: FileFormat, im: Image.Image, notes: tuple[str, ...]
) -> RadiographMeta:
    """Metadata from an opened, not yet decoded, Pillow image."""
    columns, rows = im.size
    mode = im.mode
    bits = 16 if mode in _GRAY_16 else 1 if mode == "1" else 32 if mode in ("I", "F") else 8
    frames = 1
    if fmt != "jpeg":  # JPEG has a single frame; the lookup costs an exception there
        try:  # counting frames parses every directory of a TIFF: a damaged one fails here
            frames = int(getattr(im, "n_frames", 1) or 1)
        except _DECODE_ERRORS as exc:
            raise _decode_error(path, fmt, exc) from exc
    if frames > 1:
        notes = (*notes, f"multi-frame: first of {frames} frames shown")
    return RadiographMeta(
        path=path, format=fmt, rows=rows, columns=columns, bits_stored=bits,
        photometric=_MODE_PHOTOMETRIC.get(mode, mode), samples_per_pixel=len(im.getbands()),
        number_of_frames=frames, notes=notes,
    )


def _pillow_gray(path: Path, im: Image.Image) -> tuple[np.ndarray, str | None]:
    """Decode ``im`` to (H, W) float32 in [0, 1]; return it and a note if it was stretched.

    What the conversion does per mode is announced beforehand by :data:`_MODE_NOTES`.
    """
    mode = im.mode
    if mode == "L":
        return np.divide(np.asarray(im), _FULL_8, dtype=np.float32), None
    if mode in _GRAY_16 or mode in ("I", "F"):
        return _to_unit(path, np.asarray(im))
    if mode in _TO_L:
        return np.divide(np.asarray(im.convert("L")), _FULL_8, dtype=np.float32), None
    raise UnsupportedFileError(path, f"unsupported pixel mode {mode!r} (no gray meaning)")


def _tiff_header(path: Path, fp: BinaryIO) -> RadiographMeta:
    """TIFF metadata from tifffile's IFD parse (no pixel decode)."""
    import tifffile

    try:
        with tifffile.TiffFile(fp) as tif:
            return _tiff_meta(path, tif)
    except ImageSizeError:
        raise
    except Exception as exc:  # tifffile raises many types on damaged IFDs
        raise CorruptFileError(path, f"corrupt TIFF header ({exc})") from exc


def _tiff_meta(path: Path, tif: object) -> RadiographMeta:
    """Metadata (and the size check) for the first page of an open ``tifffile.TiffFile``."""
    page = tif.pages.first  # type: ignore[attr-defined]
    rows, columns = int(page.imagelength), int(page.imagewidth)
    check_size(path, rows, columns)
    samples = int(page.samplesperpixel)
    if not 1 <= samples <= 4:
        raise UnsupportedFileError(path, f"TIFF with {samples} samples per pixel "
                                         f"(allowed: 1 to 4)")
    frames = len(tif.pages)  # type: ignore[attr-defined]
    notes = (f"multi-frame: first of {frames} frames shown",) if frames > 1 else ()
    photometric = {0: "MONOCHROME1", 1: "MONOCHROME2", 2: "RGB", 3: "PALETTE COLOR"}.get(
        int(page.photometric), page.photometric.name)
    return RadiographMeta(
        path=path, format="tiff", rows=rows, columns=columns,
        bits_stored=int(page.bitspersample), photometric=photometric,
        samples_per_pixel=int(page.samplesperpixel), number_of_frames=frames, notes=notes,
    )


def _read_tiff(path: Path, fp: BinaryIO) -> Radiograph | None:
    """Decode the first TIFF page with tifffile; None when it needs the absent imagecodecs."""
    import tifffile

    try:
        with tifffile.TiffFile(fp) as tif:
            meta = _tiff_meta(path, tif)
            page = tif.pages.first
            if int(page.photometric) not in (0, 1, 2):
                return None  # palette and exotic colour spaces: Pillow converts them
            arr = page.asarray()
    except ImageSizeError:
        raise
    except ValueError as exc:
        if "imagecodecs" in str(exc):
            return None
        raise CorruptFileError(path, f"corrupt TIFF data ({exc})") from exc
    except Exception as exc:  # tifffile raises many types on damaged data
        raise CorruptFileError(path, f"corrupt TIFF data ({exc})") from exc
    notes: tuple[str, ...] = ()
    if arr.shape[:2] != (meta.rows, meta.columns) and arr.shape[1:] != (meta.rows, meta.columns):
        raise CorruptFileError(path, f"TIFF page decoded to shape {arr.shape}, expected "
                                     f"{meta.rows}×{meta.columns}")
    if arr.ndim == 3:  # (H, W, samples) for contiguous, (samples, H, W) for planar
        rgb = arr if arr.shape[-1] == page.samplesperpixel else np.moveaxis(arr, 0, -1)
        if rgb.shape[-1] not in (3, 4):
            raise UnsupportedFileError(path, f"TIFF with {rgb.shape[-1]} samples per pixel "
                                             f"(gray, RGB or RGBA read)")
        if rgb.dtype.kind == "f" and not np.isfinite(rgb).all():
            raise CorruptFileError(path, f"{rgb.dtype} samples are not finite (NaN or infinity)")
        notes = (_NOTE_LUMA,) if rgb.shape[-1] == 3 else (_NOTE_LUMA, "alpha channel ignored")
        arr = apply_luma(rgb)  # uint8 stays uint8 (Pillow-exact); others give float32
        if rgb.dtype == np.uint16:
            arr /= np.float32(65535)
    pixels, note = _to_unit(path, arr)
    if note:
        notes = (*notes, note)
    if meta.photometric == "MONOCHROME1":
        apply_inversion(pixels)
        notes = (*notes, "MinIsWhite: inverted")
    return Radiograph(pixels=pixels, meta=replace(meta, notes=(*meta.notes, *notes)))


def _add_notes(radiograph: Radiograph, notes: tuple[str, ...], first: bool) -> Radiograph:
    """``radiograph`` with ``notes`` added before (``first``) or after its own."""
    if not notes:
        return radiograph
    own = radiograph.meta.notes
    radiograph.meta = replace(radiograph.meta, notes=(*notes, *own) if first else (*own, *notes))
    return radiograph


def _decode_error(path: Path, fmt: FileFormat, exc: BaseException) -> CorruptFileError:
    """A readable reason for a decoder failure."""
    text = str(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return CorruptFileError(path, f"truncated {fmt.upper()} data")
    return CorruptFileError(path, f"corrupt {fmt.upper()} data ({text or type(exc).__name__})")
