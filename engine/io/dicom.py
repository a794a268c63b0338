"""DICOM radiographs through pydicom 3: header, first-frame decode and the grayscale pipeline.

Display pipeline (PS3.4 N.2), each step a pure function in :mod:`engine.io.processing`:

1. Modality LUT: Rescale Slope/Intercept (a negative slope included) or Modality LUT
   Sequence -> ``modality_values`` (kept, so a viewer can apply any other preset).
2. VOI: the VOI LUT Sequence when present (preferred, as pydicom does: it is the
   manufacturer's display curve), else the first Window Center/Width with VOILUTFunction
   (all windows are kept as presets), else a min–max of the modality values (for FOR
   PROCESSING images the notes say the display is not a diagnostic rendering).
3. Polarity: MONOCHROME1, or Presentation LUT Shape INVERSE, inverts once. In image IODs
   (PS3.3 C.8.11.3, DX Image Module) INVERSE *shall* be used with MONOCHROME1 and IDENTITY
   with MONOCHROME2: INVERSE restates the MONOCHROME1 inversion, so MONOCHROME1 + INVERSE is
   a single inversion, not a double one. INVERSE on MONOCHROME2 (non-conformant but seen)
   inverts; IDENTITY on MONOCHROME1 is overruled by MONOCHROME1 (with a note).

Colour (RGB/YBR, palette) is converted to gray with ITU-R 601-2 luma and scaled by its bit
depth. Multi-frame files show their first frame (and say so). Compressed pixel data is decoded
by :mod:`engine.io.decoders` (Pillow for JPEG Baseline, pylibjpeg for JPEG 2000 and RLE, GDCM
in a pool of decoding processes for JPEG Extended/Lossless and JPEG-LS), so that no decoder
failure can end the process.

Every failure is a typed :class:`RadiographReadError`: pydicom converts elements lazily and
raises ``NotImplementedError``/``ValueError``/``TypeError`` on the first access to a malformed
one (an unknown VR, a non-numeric value); those are turned into a :class:`CorruptFileError`
that names the element. Modality values that are not finite (an infinite RescaleSlope, or
one so large that the product overflows) are refused, never shown as a NaN image.
Torch-free.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxrscreen.engine.io.decoders import decode_first_frame
from cxrscreen.engine.io.limits import check_size
from cxrscreen.engine.io.processing import (
    apply_luma,
    apply_min_max,
    apply_modality_lut,
    apply_voi_lut,
    apply_window,
)
from cxrscreen.engine.io.types import (
    CorruptFileError,
    MissingPixelDataError,
    Radiograph,
    RadiographMeta,
    RadiographReadError,
    UnsupportedFileError,
    WindowPreset,
)

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420",
           "YBR_PARTIAL_422")
_PALETTE = "PALETTE COLOR"
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# Attributes of which at least one must be present for a preamble-less file to count as a
# real data set (rather than bytes that happened to parse).
_DATASET_EVIDENCE = ("SOPClassUID", "Rows", "PixelData", "Modality", "StudyInstanceUID",
                     "PatientID")
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Pixel module attributes (type 1) without which no decoder can interpret the pixel data.
_PIXEL_MODULE = ("BitsAllocated", "BitsStored", "PixelRepresentation")
_PIXEL_DATA = 0x7FE00010
# (7FE0,0010) Pixel Data tag bytes, little and big endian.
_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
# What pydicom (and numpy on its values) raise on a malformed element, lazily, at first access.
_ELEMENT_ERRORS = (NotImplementedError, TypeError, ValueError, KeyError, IndexError,
                   AttributeError, OverflowError, UnicodeError, LookupError, BytesLengthException)
_ALLOCATED = (1, 8, 16, 32, 64)
# The header-only path skips (does not read) values longer than this.
HEADER_DEFER_BYTES = 64 * 1024
# Uncompressed pixel data that stores fewer than SamplesPerPixel values per pixel: 4:2:2
# subsampled YCbCr keeps two luma and one of each chroma value for every two pixels.
_BYTES_PER_PIXEL_FACTOR = {"YBR_FULL_422": (2, 3)}


def read_dicom_header(
    path: Path, fp: BinaryIO, *, preamble: bool, notes: tuple[str, ...] = ()
) -> RadiographMeta:
    """Read a DICOM header (no pixel data is read or decoded).

    Args:
        path: the file (named in errors).
        fp: the open file, positioned at 0.
        preamble: whether the file has the 128-byte preamble and "DICM"; a bare data set is
            read with ``force`` and must contain real attributes.
        notes: notes from the caller.

    Returns:
        The metadata.

    Raises:
        CorruptFileError: truncated or malformed header, or not a DICOM data set.
        MissingPixelDataError: a data set that is not an image (e.g. a Structured Report).
        UnsupportedFileError: an image type we do not read (e.g. a colour space).
        ImageSizeError: implausible Rows/Columns.
    """
    ds = _read_dataset(path, fp, preamble=preamble, stop_before_pixels=True)
    with _malformed_elements(path, ds):
        return dicom_meta(path, ds, notes=notes if preamble else (*notes, "read without DICOM preamble"))


def read_dicom(
    path: Path, fp: BinaryIO, *, preamble: bool, notes: tuple[str, ...] = ()
) -> Radiograph:
    """Read a DICOM file and render its first frame for display.

    Args:
        path: the file (named in errors).
        fp: the open file, positioned at 0.
        preamble: see :func:`read_dicom_header`.
        notes: notes from the caller.

    Returns:
        The radiograph: ``pixels`` float32 [0, 1] higher = brighter, and (for monochrome)
        ``modality_values`` float32 after the modality LUT.

    Raises:
        CorruptFileError: truncated or malformed header or pixel data.
        MissingPixelDataError: no Pixel Data.
        UnsupportedFileError: no installed decoder for the transfer syntax, or an
            unsupported photometric interpretation.
        ImageSizeError: implausible Rows/Columns.
    """
    ds = _read_dataset(path, fp, preamble=preamble, stop_before_pixels=False)
    with _malformed_elements(path, ds):
        return _read_pixels(path, fp, ds, notes if preamble else (*notes, "read without DICOM preamble"))


def _read_pixels(path: Path, fp: BinaryIO, ds: Dataset, notes: tuple[str, ...]) -> Radiograph:
    """Metadata, first-frame decode and display pipeline of a parsed data set."""
    meta = dicom_meta(path, ds, notes=notes)
    if "PixelData" not in ds:
        fp.seek(0)
        data = fp.read()
        if any(tag in data for tag in _PIXEL_DATA_TAGS):
            # pydicom drops an encapsulated Pixel Data element that the file cuts short.
            raise CorruptFileError(path, "truncated pixel data (the file ends inside the image)")
        raise MissingPixelDataError(
            path, f"no pixel data: {_sop_description(ds)} (the file may be truncated)")
    if not ds.PixelData:  # an element of length 0 reads as None
        raise MissingPixelDataError(path, "empty pixel data (Pixel Data element of length 0)")
    stored = _decode_first_frame(path, ds, meta)
    return _render(path, ds, meta, stored)


@contextmanager
def _malformed_elements(path: Path, ds: Dataset) -> Iterator[None]:
    """Turn pydicom's lazy element-conversion errors into a :class:`CorruptFileError`.

    The error names the first element that cannot be converted (found only on this error path,
    so a good file pays nothing).
    """
    try:
        yield
    except RadiographReadError:
        raise
    except _ELEMENT_ERRORS as exc:
        raise CorruptFileError(path, f"malformed DICOM header{_bad_element(ds)} "
                                     f"({_short(exc)})") from exc


def _bad_element(ds: Dataset) -> str:
    """" in element (gggg,eeee) Keyword" for the first element pydicom cannot convert, or ""."""
    datasets = [ds]
    if getattr(ds, "file_meta", None) is not None:
        datasets.insert(0, ds.file_meta)
    while datasets:
        data = datasets.pop(0)
        for tag in list(data.keys()):
            try:
                elem = data[tag]
                if elem.VR == "SQ":
                    datasets.extend(elem.value)
            except Exception:  # noqa: BLE001 - finding which element fails is the point
                return f" in element {_tag_name(tag)}"
    return ""


def _tag_name(tag: Any) -> str:
    """A tag as "(0028,1050) WindowCenter" (keyword omitted for private tags)."""
    from pydicom.datadict import keyword_for_tag
    from pydicom.tag import Tag

    tag = Tag(tag)
    keyword = keyword_for_tag(tag)
    return f"({tag.group:04X},{tag.element:04X}){' ' + keyword if keyword else ''}"


def dicom_meta(path: Path, ds: Dataset, notes: tuple[str, ...] = ()) -> RadiographMeta:
    """Build :class:`RadiographMeta` from a data set, checking it is a plausible image.

    Args:
        path: the file.
        ds: the data set (pixel data may be absent).
        notes: notes to start with.

    Returns:
        The metadata.

    Raises:
        MissingPixelDataError: not an image (no Rows/Columns, or a non-image SOP class).
        UnsupportedFileError: unsupported photometric interpretation.
        ImageSizeError: implausible Rows/Columns.
    """
    sop = str(ds.get("SOPClassUID", "") or "")
    rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if sop.startswith(_SR_PREFIX) or rows is None or columns is None:
        sop = sop or str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        if "Image Storage" in (UID(sop).name if sop else "") and "PixelData" not in ds:
            # An image SOP class must have Rows/Columns: the header was cut short (at an
            # element boundary, so no element is visibly incomplete).
            raise CorruptFileError(path, f"incomplete DICOM header: {UID(sop).name} without "
                                         f"Rows/Columns (truncated file?)")
        raise MissingPixelDataError(path, f"no pixel data: {_sop_description(ds)}")
    check_size(path, rows, columns)
    missing = [keyword for keyword in _PIXEL_MODULE if keyword not in ds]
    if missing:
        raise CorruptFileError(path, f"incomplete DICOM header: {', '.join(missing)} missing "
                                     f"(truncated file?)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = _int(ds.get("SamplesPerPixel")) or 1
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        notes = (*notes, f"PhotometricInterpretation missing: assumed {photometric}")
    if photometric not in (*_MONOCHROME, *_COLOUR, _PALETTE):
        raise UnsupportedFileError(path, f"unsupported photometric interpretation {photometric!r}")
    frames = _int(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        notes = (*notes, f"multi-frame: first of {frames} frames shown")
    presets, preset_notes = _window_presets(ds)
    spacing, source, spacing_notes = _spacing(ds)
    intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
    ts = _transfer_syntax(ds)
    return RadiographMeta(
        path=path,
        format="dicom",
        rows=rows,
        columns=columns,
        bits_stored=_int(ds.get("BitsStored")),
        photometric=photometric,
        samples_per_pixel=samples,
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
        pixel_spacing_mm=spacing,
        spacing_source=source,
        window_presets=presets,
        presentation_intent=intent if intent in ("FOR PRESENTATION", "FOR PROCESSING") else None,
        number_of_frames=frames,
        transfer_syntax=str(ts) if ts else None,
        notes=(*notes, *preset_notes, *spacing_notes),
    )


def _read_dataset(path: Path, fp: BinaryIO, *, preamble: bool, stop_before_pixels: bool) -> Dataset:
    """``pydicom.dcmread`` with typed errors; ``force`` only for a sniffed bare data set.

    pydicom is lenient with cut files: a value cut short is kept short, and a cut inside
    encapsulated pixel data loses the whole data set (with a warning). Both are detected here
    and reported as truncation, never as "no pixel data".

    The header-only path reads nothing it does not need: it stops before Pixel Data, and values
    over :data:`HEADER_DEFER_BYTES` (private blobs, embedded overlays or icons, LUT data
    outside sequences) are skipped, not read; their length is still checked against the file.
    """
    defer = HEADER_DEFER_BYTES if stop_before_pixels else None
    try:
        ds = pydicom.dcmread(fp, force=not preamble, stop_before_pixels=stop_before_pixels,
                             defer_size=defer)
    except InvalidDicomError as exc:
        raise CorruptFileError(path, "not a DICOM file (unrecognised content)") from exc
    except Exception as exc:  # pydicom raises many types on cut or malformed elements
        raise CorruptFileError(path, "malformed or truncated DICOM header") from exc
    if not preamble and not any(keyword in ds for keyword in _DATASET_EVIDENCE):
        raise CorruptFileError(path, "not a DICOM file (unrecognised content)")
    if len(ds) == 0:
        if not stop_before_pixels and _header_is_complete(fp, preamble):
            raise CorruptFileError(path, "truncated pixel data (the file ends inside the image)")
        raise CorruptFileError(path, "truncated DICOM file (no data set after the file header)")
    if defer and fp.tell() > _file_size(fp):
        # a skipped value runs past the end of the file (pydicom seeks over it without reading)
        raise CorruptFileError(path, "truncated DICOM file (ends inside the header)")
    with _malformed_elements(path, ds):  # get_item may convert Pixel Data (VR lookup)
        short = _short_last_element(ds)
    if short is not None and short != _PIXEL_DATA:
        raise CorruptFileError(path, "truncated DICOM file (ends inside the header)")
    if not ds.file_meta.get("TransferSyntaxUID"):
        # Bare data set: pydicom found the encoding from the first element.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _header_is_complete(fp: BinaryIO, preamble: bool) -> bool:
    """Whether the header alone (up to Pixel Data) reads completely (error path only)."""
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, force=not preamble, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any failure means "not complete"
        return False
    return len(ds) > 0 and _short_last_element(ds) is None


def _file_size(fp: BinaryIO) -> int:
    """The open file's size in bytes."""
    position = fp.tell()
    size = fp.seek(0, 2)
    fp.seek(position)
    return size


def _short_last_element(ds: Dataset) -> int | None:
    """The tag of the last element if it holds fewer bytes than its length says, else None.

    pydicom reads a value cut short by the end of the file without complaint; the raw
    (not yet converted) element still carries both the declared length and the bytes read.
    """
    tag = max(ds.keys())
    last = ds.get_item(tag)
    if not isinstance(last, RawDataElement) or last.value is None:
        return None
    if last.length != _UNDEFINED_LENGTH and len(last.value) < last.length:
        return int(tag)
    return None


def _decode_first_frame(path: Path, ds: Dataset, meta: RadiographMeta) -> np.ndarray:
    """Decode only the first frame; check the pixel module and the data length first."""
    _check_pixel_module(path, ds, meta)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    if not ts.is_compressed:
        need = _frame_bytes(ds, meta)
        have = len(ds.PixelData)
        if have < need:
            raise CorruptFileError(path, f"truncated pixel data ({have} of {need} bytes)")
    stored = decode_first_frame(path, ds)
    if stored.size == 0 or stored.shape[:2] != (meta.rows, meta.columns):
        raise CorruptFileError(path, f"{ts.name} pixel data decoded to shape {stored.shape}, "
                                     f"expected {meta.rows}×{meta.columns}")
    return stored


def _check_pixel_module(path: Path, ds: Dataset, meta: RadiographMeta) -> None:
    """BitsAllocated, BitsStored and SamplesPerPixel within what DICOM allows."""
    allocated = _int(ds.get("BitsAllocated"))
    stored = _int(ds.get("BitsStored"))
    if allocated not in _ALLOCATED:
        raise CorruptFileError(path, f"BitsAllocated {ds.get('BitsAllocated')!r} is not one of "
                                     f"{', '.join(map(str, _ALLOCATED))}")
    if stored is None or not 1 <= stored <= allocated:
        raise CorruptFileError(path, f"BitsStored {ds.get('BitsStored')!r} is not within "
                                     f"1..{allocated} (BitsAllocated)")
    if meta.samples_per_pixel not in (1, 3):
        raise CorruptFileError(path, f"SamplesPerPixel {meta.samples_per_pixel} (allowed: 1 or 3)")


def _render(path: Path, ds: Dataset, meta: RadiographMeta, stored: np.ndarray) -> Radiograph:
    """Apply the display pipeline to the decoded first frame."""
    photometric = meta.photometric or "MONOCHROME2"
    if photometric in _COLOUR or photometric == _PALETTE or stored.ndim == 3:
        return _render_colour(path, ds, meta, stored)
    notes: list[str] = []
    invert = _inversion(ds, photometric, notes)
    modality, lo, hi = _modality(path, ds, stored, notes)
    with np.errstate(over="ignore", invalid="ignore"):  # extreme windows: checked just below
        pixels, voi_step = _display(ds, meta, modality, lo, hi, invert, notes)
    # A window or LUT can still turn finite values into NaN (inf - inf in the coefficients).
    _check_finite(path, pixels, f"{voi_step} display step")
    meta = replace(meta, notes=(*meta.notes, *notes), inverted=invert, voi=voi_step)
    return Radiograph(pixels=pixels, meta=meta, modality_values=modality)


def _display(ds: Dataset, meta: RadiographMeta, modality: np.ndarray, lo: Any, hi: Any,
             invert: bool, notes: list[str]) -> tuple[np.ndarray, Literal["voi-lut", "window", "min-max"]]:
    """The VOI step: the VOI LUT sequence, else the first window, else min–max."""
    voi = _voi_lut(ds, notes)
    if voi is not None:
        lut, first, bits = voi
        pixels = apply_voi_lut(modality, lut, first, bits, invert=invert)
        notes.append("VOI LUT sequence applied")
        voi_step = "voi-lut"
    elif meta.window_presets:
        p = meta.window_presets[0]
        pixels = apply_window(modality, p.center, p.width, p.function, invert=invert)
        which = f" (first of {len(meta.window_presets)})" if len(meta.window_presets) > 1 else ""
        notes.append(f"window {_fmt(p.center)}/{_fmt(p.width)} {p.function} applied{which}")
        voi_step = "window"
    else:
        pixels = apply_min_max(modality, invert=invert, low=lo, high=hi)
        voi_step = "min-max"
        if meta.presentation_intent == "FOR PROCESSING":
            notes.append("FOR PROCESSING image without a window: min–max of the raw values "
                         "shown (not a diagnostic rendering)")
        else:
            notes.append("no window in file: min–max of the modality values shown")
    return pixels, voi_step


def _render_colour(path: Path, ds: Dataset, meta: RadiographMeta, stored: np.ndarray) -> Radiograph:
    """RGB/YBR (already RGB from pydicom) or palette colour -> luma scaled by bit depth."""
    notes: tuple[str, ...] = ()
    if meta.photometric == _PALETTE:
        try:
            rgb = apply_color_lut(stored, ds)
        except Exception as exc:  # malformed palette descriptors
            raise CorruptFileError(path, f"unusable colour palette ({_short(exc)})") from exc
        notes = ("palette colour converted to gray (ITU-R 601-2 luma)",)
        full = 255.0 if rgb.dtype == np.uint8 else 65535.0
    else:
        rgb = stored
        notes = ("colour converted to gray (ITU-R 601-2 luma)",)
        full = float(2 ** (meta.bits_stored or rgb.dtype.itemsize * 8) - 1)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise CorruptFileError(path, f"colour image decoded to shape {rgb.shape}, expected (H, W, 3)")
    values = apply_luma(rgb).astype(np.float32)
    pixels = np.divide(values, np.float32(full), dtype=np.float32)  # exact v / 255 for 8 bits
    np.clip(pixels, 0.0, 1.0, out=pixels)
    meta = replace(meta, notes=(*meta.notes, *notes))
    return Radiograph(pixels=pixels, meta=meta, modality_values=values)


def _inversion(ds: Dataset, photometric: str, notes: list[str]) -> bool:
    """Whether to invert once: MONOCHROME1, or INVERSE on MONOCHROME2 (never twice)."""
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    if photometric == "MONOCHROME1":
        if shape == "IDENTITY":
            notes.append("PresentationLUTShape IDENTITY contradicts MONOCHROME1: "
                         "MONOCHROME1 honoured (inverted)")
        else:
            notes.append("MONOCHROME1: inverted for display")
        return True
    if shape == "INVERSE":
        notes.append("PresentationLUTShape INVERSE: inverted for display")
        return True
    return False


def _check_finite(path: Path, values: np.ndarray, source: str) -> None:
    """Refuse NaN or infinite modality values (a NaN image would score as 'not flagged')."""
    if not np.isfinite(values).all():
        raise CorruptFileError(path, f"pixel values are not finite after the {source} "
                                     f"(NaN or overflow)")


def _modality(path: Path, ds: Dataset, stored: np.ndarray, notes: list[str]) -> tuple[np.ndarray, Any, Any]:
    """Modality LUT; also the exact modality min and max when they are cheap, else None."""
    seq = ds.get("ModalityLUTSequence")
    if seq:
        lut = _lut_data(ds, seq[0])
        if lut is not None:
            data, first, _bits = lut
            notes.append("modality LUT sequence applied")
            return apply_modality_lut(stored, lut=data, lut_first=first), None, None
        notes.append("malformed modality LUT sequence ignored")
    slope = _float(ds.get("RescaleSlope"), 1.0)
    intercept = _float(ds.get("RescaleIntercept"), 0.0)
    for name, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept)):
        if not math.isfinite(value):
            raise CorruptFileError(path, f"{name} {_fmt(value)} is not a finite number")
    if slope == 0.0:
        notes.append("RescaleSlope 0 ignored (treated as 1)")
        slope = 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        modality = apply_modality_lut(stored, slope, intercept)
    if slope != 1.0 or intercept != 0.0:
        notes.append(f"rescale slope {_fmt(slope)}, intercept {_fmt(intercept)} applied")
        _check_finite(path, modality, f"rescale slope {_fmt(slope)}, intercept {_fmt(intercept)}")
        return modality, None, None
    if stored.dtype.itemsize > 2 or not np.issubdtype(stored.dtype, np.integer):
        _check_finite(path, modality, "stored values")
        return modality, None, None
    # Identity on 8/16-bit integers: the modality values are the stored values exactly, and
    # their min/max is cheaper to find than the float copy's.
    return modality, stored.min(), stored.max()


def _voi_lut(ds: Dataset, notes: list[str]) -> tuple[np.ndarray, int, int] | None:
    """(LUT data, first mapped value, bits per entry) of the first VOI LUT item, if usable."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    lut = _lut_data(ds, seq[0])
    if lut is None:
        notes.append("malformed VOI LUT sequence ignored")
    return lut


def _lut_data(ds: Dataset, item: Dataset) -> tuple[np.ndarray, int, int] | None:
    """Parse LUT Descriptor + LUT Data (US or OW) of a LUT item; None when malformed."""
    descriptor = _items(item.get("LUTDescriptor"))
    if "LUTData" not in item or len(descriptor) != 3:
        return None  # also a single-valued descriptor (pydicom gives an int, not a list)
    try:
        entries, first, bits = (int(v) for v in descriptor)
    except (TypeError, ValueError):
        return None  # non-numeric descriptor values
    entries = entries or 65536  # 0 means 2**16 entries (PS3.3 C.11.1.1.1)
    value = item["LUTData"].value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        little = ds.original_encoding[1] is not False
        data = np.frombuffer(value, dtype="<u2" if little else ">u2",
                             count=len(value) // 2)
    else:
        try:
            data = np.asarray(_items(value), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            return None
    if data.ndim != 1 or data.size < entries or not 1 <= bits <= 16:
        return None
    return data[:entries].astype(np.uint16), first, bits


def _window_presets(ds: Dataset) -> tuple[tuple[WindowPreset, ...], tuple[str, ...]]:
    """All Window Center/Width pairs as presets; unusable ones are skipped with a note."""
    centers = _floats(ds.get("WindowCenter"))
    widths = _floats(ds.get("WindowWidth"))
    if not centers or not widths:
        return (), ()
    notes: list[str] = []
    if len(centers) != len(widths):
        notes.append(f"{len(centers)} window centers but {len(widths)} widths: "
                     f"first {min(len(centers), len(widths))} pairs kept")
    names = [str(n) for n in _items(ds.get("WindowCenterWidthExplanation"))]
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        notes.append(f"unknown VOILUTFunction {function!r}: LINEAR used")
        function = "LINEAR"
    presets = []
    for i, (c, w) in enumerate(zip(centers, widths)):
        minimum_ok = w >= 1 if function == "LINEAR" else w > 0
        if not (math.isfinite(c) and math.isfinite(w) and minimum_ok):
            notes.append(f"window {i + 1} ignored: center {_fmt(c)}, width {_fmt(w)}")
            continue
        name = names[i] if i < len(names) else ""
        presets.append(WindowPreset(center=c, width=w, name=name, function=function))  # type: ignore[arg-type]
    return tuple(presets), tuple(notes)


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, Any, tuple[str, ...]]:
    """PixelSpacing, else ImagerPixelSpacing (row, column mm); zero/invalid values dropped."""
    notes: list[str] = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds.get(keyword))
        if not values:
            continue
        if len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values):
            return (values[0], values[1]), keyword, tuple(notes)
        notes.append(f"{keyword} {'/'.join(_fmt(v) for v in values)} ignored (not two "
                     f"positive values)")
    return None, None, tuple(notes)


def _frame_bytes(ds: Dataset, meta: RadiographMeta) -> int:
    """Bytes of one uncompressed frame."""
    allocated = _int(ds.get("BitsAllocated")) or 8
    numerator, denominator = _BYTES_PER_PIXEL_FACTOR.get(meta.photometric or "", (1, 1))
    pixels = meta.rows * meta.columns * meta.samples_per_pixel * numerator // denominator
    if allocated == 1:
        return (pixels + 7) // 8
    return pixels * ((allocated + 7) // 8)


def _transfer_syntax(ds: Dataset) -> UID | None:
    """The file's transfer syntax, or the encoding pydicom found for a bare data set."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return UID(str(ts)) if ts else None


def _sop_description(ds: Dataset) -> str:
    """A short, readable name of what the data set is (for 'no pixel data' errors)."""
    uid = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
    if not uid:
        return "DICOM data set without an image"
    name = UID(uid).name or uid
    if uid.startswith(_SR_PREFIX):
        return f"DICOM Structured Report ({name})"
    return name


def _text(ds: Dataset, keyword: str) -> str | None:
    """A string attribute, stripped; None when absent or empty."""
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    """An integer attribute value, or None."""
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value: Any, default: float) -> float:
    """A single float (the first of several), or ``default``."""
    values = _floats(value)
    return values[0] if values else default


def _floats(value: Any) -> list[float]:
    """A DS/IS/FD value (single or multi) as a list of floats; [] when absent or invalid."""
    out = []
    for item in _items(value):
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            return []
    return out


def _items(value: Any) -> list[Any]:
    """A single or multi-valued attribute value as a list ([] when absent or empty)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _fmt(value: float) -> str:
    """Compact number formatting for notes (no trailing .0)."""
    return f"{value:g}"


def _short(exc: BaseException) -> str:
    """An exception as one short line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
