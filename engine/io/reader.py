"""One entry point for every supported file: content sniffing first, the suffix second.

The first bytes decide the format (a PNG named ``.dcm`` reads as a PNG, with a note); the
suffix only decides what to say when the content is not recognised. Every failure is a
:class:`RadiographReadError` subclass naming the file and a short reason a clinician can read.
The format readers raise typed errors for every failure they know; as a last line, any other
``Exception`` from a decoder library becomes a :class:`CorruptFileError` whose reason starts
with :data:`UNEXPECTED` (and is logged with its traceback), so a caller that catches
:class:`RadiographReadError` never sees a traceback. The fuzzing benchmark
(bench/fuzz_readers.py) counts those separately: they are bugs to give a proper reason.
Torch-free.
"""
from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from cxrscreen.engine.io.dicom import read_dicom, read_dicom_header
from cxrscreen.engine.io.raster import read_raster, read_raster_header
from cxrscreen.engine.io.types import (
    CorruptFileError,
    FileAccessError,
    FileFormat,
    Radiograph,
    RadiographMeta,
    RadiographReadError,
    UnsupportedFileError,
)

logger = logging.getLogger(__name__)

UNEXPECTED = "unexpected reader error"

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp",
)
_SUFFIX_FORMATS: dict[str, FileFormat] = {
    ".dcm": "dicom", ".dicom": "dicom", ".dic": "dicom", ".png": "png", ".jpg": "jpeg",
    ".jpeg": "jpeg", ".jpe": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp",
}
_FORMAT_NAMES: dict[str, str] = {
    "dicom": "DICOM", "png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP",
}
HEAD_SIZE = 132  # DICOM preamble (128) + "DICM"; also covers PNG IHDR and BMP sizes
# Two-letter value representations (PS3.5 6.2): how an explicit-VR bare data set starts.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)


def read_radiograph(path: str | os.PathLike[str]) -> Radiograph:
    """Read any supported file into a :class:`Radiograph`.

    Args:
        path: a DICOM, PNG, JPEG, TIFF or BMP file.

    Returns:
        ``pixels`` (H, W) float32 in [0, 1], higher = brighter as displayed, and metadata.

    Raises:
        FileAccessError: missing file, a folder, no permission.
        CorruptFileError: empty, truncated, or content that is no supported format.
        UnsupportedFileError: a suffix we do not read with unrecognised content, or an image
            type we do not support.
        MissingPixelDataError: a DICOM data set without an image.
        ImageSizeError: implausible claimed size.
    """
    path = Path(path)
    return _typed(path, _read_radiograph, path)


def _read_radiograph(path: Path) -> Radiograph:
    with _open(path) as fp:
        head = _read_head(path, fp)
        fmt, preamble, notes = detect_format(path, head)
        fp.seek(0)
        if fmt == "dicom":
            return read_dicom(path, fp, preamble=preamble, notes=notes)
        return read_raster(path, fp, fmt, head, notes)


def read_header(path: str | os.PathLike[str]) -> RadiographMeta:
    """Read a file's metadata without decoding pixels (the fast path for indexing folders).

    Args:
        path: a DICOM, PNG, JPEG, TIFF or BMP file.

    Returns:
        The metadata (size, identifiers, window presets...).

    Raises:
        The same errors as :func:`read_radiograph`, except those only pixel decoding finds
        (truncated pixel data, missing decoders).
    """
    path = Path(path)
    return _typed(path, _read_header, path)


def _read_header(path: Path) -> RadiographMeta:
    with _open(path) as fp:
        head = _read_head(path, fp)
        fmt, preamble, notes = detect_format(path, head)
        fp.seek(0)
        if fmt == "dicom":
            return read_dicom_header(path, fp, preamble=preamble, notes=notes)
        meta = read_raster_header(path, fp, fmt, head)
    if notes:
        meta = replace(meta, notes=(*notes, *meta.notes))
    return meta


def _typed(path: Path, read: Callable[[Path], Any], *args: Any) -> Any:
    """``read(*args)``, with any untyped failure turned into a :class:`CorruptFileError`."""
    try:
        return read(*args)
    except RadiographReadError:
        raise
    except MemoryError as exc:
        raise CorruptFileError(path, "not enough memory to decode this file") from exc
    except Exception as exc:  # a library failure we did not foresee must not end a worklist
        logger.exception("%s: %s", path, UNEXPECTED)
        raise CorruptFileError(path, f"{UNEXPECTED} ({type(exc).__name__}: "
                                     f"{str(exc)[:160]})") from exc


def detect_format(path: Path, head: bytes) -> tuple[FileFormat, bool, tuple[str, ...]]:
    """Decide a file's format from its first bytes, falling back to errors named by suffix.

    Args:
        path: the file (its suffix names the expected format in errors and notes).
        head: its first :data:`HEAD_SIZE` bytes (fewer for a short file), not empty.

    Returns:
        (format, whether a DICOM file has its preamble, notes).

    Raises:
        CorruptFileError: content unrecognised but the suffix is one we read.
        UnsupportedFileError: content unrecognised and the suffix is not ours.
    """
    fmt = sniff_content(head)
    preamble = fmt == "dicom"
    if fmt is None and looks_like_bare_dataset(head):
        fmt = "dicom"
    suffix = path.suffix.lower()
    expected = _SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        if expected is None:
            shown = suffix or "(no suffix)"
            raise UnsupportedFileError(path, f"not an image file we read ({shown})")
        name = _FORMAT_NAMES[expected]
        if expected == "dicom" and len(head) < HEAD_SIZE:
            raise CorruptFileError(path, f"not a DICOM file (only {len(head)} bytes: "
                                         f"truncated or not DICOM)")
        raise CorruptFileError(path, f"not a {name} file (unrecognised content)")
    notes: tuple[str, ...] = ()
    if expected is not None and expected != fmt:
        notes = (f"content is {_FORMAT_NAMES[fmt]} although the file is named {suffix}",)
    return fmt, preamble, notes


def sniff_content(head: bytes) -> FileFormat | None:
    """Recognise a format from magic bytes (DICOM by "DICM" at byte 128).

    Args:
        head: the file's first bytes.

    Returns:
        The format, or None when no magic matches (a bare DICOM data set returns None: see
        :func:`looks_like_bare_dataset`).
    """
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    return None


def looks_like_bare_dataset(head: bytes) -> bool:
    """Whether ``head`` starts like a DICOM data set written without preamble and "DICM".

    Such files (old ACR-NEMA style, or written by tools that skip the file meta) start with
    an element of group 0x0008 (or 0x0002, the file meta group) in little-endian order, either
    with a two-letter VR (explicit) or a short 32-bit length (implicit). Random bytes pass
    this with a probability of about 1 in 10⁹, and the parsed data set must still contain real
    attributes (checked after reading).

    Args:
        head: the file's first bytes.

    Returns:
        True when pydicom should be asked to read the file with ``force``.
    """
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    if group not in (0x0002, 0x0008) or element > 0x00FF:
        return False
    if head[4:6] in _VRS:
        return True
    (length,) = struct.unpack("<I", head[4:8])  # implicit VR: a 32-bit value length
    return length == 4 if element == 0 else length <= 1024


def _open(path: Path) -> BinaryIO:
    """``open(path, 'rb')`` with typed, readable errors (the caller closes it: ``with``)."""
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller's with
    except FileNotFoundError as exc:
        reason = "file not found (broken link)" if path.is_symlink() else "file not found"
        raise FileAccessError(path, reason) from exc
    except IsADirectoryError as exc:
        raise FileAccessError(path, "is a folder, not a file") from exc
    except PermissionError as exc:
        # Windows reports opening a folder as a permission error.
        reason = "is a folder, not a file" if path.is_dir() else "permission denied"
        raise FileAccessError(path, reason) from exc
    except OSError as exc:
        raise FileAccessError(path, f"cannot open file ({exc.strerror or exc})") from exc


def _read_head(path: Path, fp: BinaryIO) -> bytes:
    """The first :data:`HEAD_SIZE` bytes; an empty file is an error."""
    try:
        head = fp.read(HEAD_SIZE)
    except OSError as exc:
        raise FileAccessError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not head:
        raise CorruptFileError(path, "empty file (0 bytes)")
    return head
