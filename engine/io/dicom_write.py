"""Write radiograph pixels as a valid DICOM file (DX Image, For Presentation by default).

Used by the synthetic-study generator (``engine.synth``) and by the reader's tests to make
fixtures for every case the reader handles: MONOCHROME1/2, RGB, multi-frame, windows, rescale,
files without preamble and the compressed transfer syntaxes:

- uncompressed (Implicit/Explicit VR Little Endian, Deflated): pydicom;
- RLE Lossless: pydicom's own encoder;
- JPEG 2000 (lossless, and lossy at a 10:1 compression ratio): pylibjpeg-openjpeg via pydicom;
- JPEG Baseline (8-bit): Pillow, encapsulated;
- JPEG Lossless (Process 14 and SV1) and JPEG-LS Lossless: GDCM.

Torch-free.
"""
from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from cxrscreen.engine.io.types import WindowPreset

Photometric = Literal["MONOCHROME1", "MONOCHROME2", "RGB"]

UNCOMPRESSED_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
)
_GDCM_SYNTAXES: tuple[UID, ...] = (JPEGLossless, JPEGLosslessSV1, JPEGLSLossless)
WRITABLE_SYNTAXES: tuple[UID, ...] = (
    *UNCOMPRESSED_SYNTAXES,
    RLELossless,
    JPEG2000Lossless,
    JPEG2000,
    JPEGBaseline8Bit,
    *_GDCM_SYNTAXES,
)
_PHOTOMETRICS: tuple[str, ...] = ("MONOCHROME1", "MONOCHROME2", "RGB")
# Lossy settings: fixed so that generated studies are reproducible.
JPEG_QUALITY = 95
J2K_COMPRESSION_RATIO = 10.0


def write_dicom(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    photometric: Photometric = "MONOCHROME2",
    bits_stored: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    window: WindowPreset | Sequence[WindowPreset] | None = None,
    rescale: tuple[float, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    preamble: bool = True,
) -> Path:
    """Write ``pixels`` to ``path`` as a DICOM file.

    The data set is a Digital X-Ray Image (For Presentation, or For Processing when ``tags``
    set ``PresentationIntentType`` to "FOR PROCESSING") with fresh UIDs, Modality "DX",
    ViewPosition "PA", BodyPartExamined "CHEST", PatientID "SYNTHETIC" and
    PresentationLUTShape "INVERSE" for MONOCHROME1 ("IDENTITY" otherwise), as PS3.3 C.8.11.1
    requires. Everything can be overridden through ``tags``.

    Args:
        path: file to write (overwritten).
        pixels: stored values, uint8 or uint16: (H, W) or (frames, H, W) for monochrome,
            (H, W, 3) or (frames, H, W, 3) for RGB.
        photometric: "MONOCHROME2" (higher = brighter), "MONOCHROME1" (higher = darker) or
            "RGB" (written as YBR_FULL_422 for JPEG Baseline, as the standard requires).
        bits_stored: Bits Stored; defaults to the dtype's size. Every value must fit.
        transfer_syntax: one of :data:`WRITABLE_SYNTAXES`. JPEG2000 (not "Lossless Only") is
            written lossy at a 10:1 ratio, JPEG Baseline at Pillow quality 95 (uint8 only).
        window: one or several VOI windows in modality units (Window Center/Width, with
            WindowCenterWidthExplanation from the preset names and VOILUTFunction, which must be
            the same for all of them).
        rescale: (RescaleSlope, RescaleIntercept); a negative slope is allowed.
        tags: extra attributes by DICOM keyword, applied last and verbatim (``None`` deletes
            the attribute), so they can also make deliberately inconsistent files, e.g.
            ``{"Rows": 30000}`` or ``{"PixelData": None}``.
        preamble: write the 128-byte preamble, "DICM" and the file meta group. ``False``
            writes a bare data set (as old ACR-NEMA-style files are), which is only possible
            for Implicit/Explicit VR Little Endian.

    Returns:
        The written path.

    Raises:
        ValueError: for a bad dtype, shape, photometric, bits_stored, transfer syntax, window,
            rescale, unknown tag keyword, or a syntax that cannot hold these pixels.
    """
    path = Path(path)
    ts = UID(str(transfer_syntax))
    if ts not in WRITABLE_SYNTAXES:
        names = ", ".join(u.name for u in WRITABLE_SYNTAXES)
        raise ValueError(f"cannot write transfer syntax {ts} ({ts.name}); supported: {names}")
    if not preamble and ts not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        raise ValueError(f"preamble=False writes a bare data set, which cannot declare "
                         f"{ts.name}; use Implicit or Explicit VR Little Endian")
    arr, frames = _check_pixels(pixels, photometric)
    bits = _check_bits(arr, bits_stored)
    if ts == JPEGBaseline8Bit and arr.dtype != np.uint8:
        raise ValueError(f"JPEG Baseline holds 8-bit pixels only, got {arr.dtype}")

    ds = _base_dataset(arr, frames, photometric, bits)
    if window is not None:
        _set_window(ds, window)
    if rescale is not None:
        _set_rescale(ds, rescale)
    if tags and tags.get("PresentationIntentType") == "FOR PROCESSING":
        ds.SOPClassUID = DigitalXRayImageStorageForProcessing
    _encode(ds, arr, ts)
    if tags:
        _apply_tags(ds, tags)
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", DigitalXRayImageStorageForPresentation)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())

    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        implicit = ts == ImplicitVRLittleEndian
        ds.file_meta = FileMetaDataset()
        ds.preamble = None
        pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=True)
    return path


def _check_pixels(pixels: np.ndarray, photometric: str) -> tuple[np.ndarray, int]:
    """Validate dtype, shape and photometric; return a C-contiguous array and frame count."""
    if photometric not in _PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {_PHOTOMETRICS}, got {photometric!r}")
    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {arr.dtype}")
    color = photometric == "RGB"
    if color:
        if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
            raise ValueError(f"RGB pixels must be (H, W, 3) or (frames, H, W, 3), got {arr.shape}")
        frames = arr.shape[0] if arr.ndim == 4 else 1
    else:
        if arr.ndim not in (2, 3):
            raise ValueError(f"{photometric} pixels must be (H, W) or (frames, H, W), "
                             f"got {arr.shape}")
        frames = arr.shape[0] if arr.ndim == 3 else 1
    if arr.size == 0:
        raise ValueError(f"pixels must not be empty, got shape {arr.shape}")
    return np.ascontiguousarray(arr), frames


def _check_bits(arr: np.ndarray, bits_stored: int | None) -> int:
    """Validate Bits Stored against the dtype and the largest value."""
    allocated = arr.dtype.itemsize * 8
    bits = allocated if bits_stored is None else int(bits_stored)
    if not 1 <= bits <= allocated:
        raise ValueError(f"bits_stored must be in 1..{allocated} for {arr.dtype}, got {bits}")
    top = int(arr.max())
    if top >= 1 << bits:
        raise ValueError(f"pixel value {top} does not fit in bits_stored={bits}")
    return bits


def _base_dataset(arr: np.ndarray, frames: int, photometric: str, bits: int) -> Dataset:
    """A DX For Presentation data set holding ``arr`` uncompressed (Explicit VR LE)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    study, series = generate_uid(), generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "cxrscreen"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientID = "SYNTHETIC"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ImageLaterality = ""
    ds.BurnedInAnnotation = "NO"
    color = photometric == "RGB"
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = arr.shape[-3:-1] if color else arr.shape[-2:]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if not color:
        ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OB" if arr.dtype == np.uint8 else "OW"
    return ds


def _set_window(ds: Dataset, window: WindowPreset | Sequence[WindowPreset]) -> None:
    """Write Window Center/Width (several values allowed) and VOILUTFunction."""
    presets = [window] if isinstance(window, WindowPreset) else list(window)
    if not presets or not all(isinstance(p, WindowPreset) for p in presets):
        raise ValueError(f"window must be a WindowPreset or a non-empty sequence of them, "
                         f"got {window!r}")
    functions = {p.function for p in presets}
    if len(functions) != 1:
        raise ValueError(f"all windows must share one VOILUTFunction, got {sorted(functions)}")
    for p in presets:
        if not p.width > 0:
            raise ValueError(f"window width must be > 0, got {p.width}")
    centers = [float(p.center) for p in presets]
    widths = [float(p.width) for p in presets]
    ds.WindowCenter = centers if len(presets) > 1 else centers[0]
    ds.WindowWidth = widths if len(presets) > 1 else widths[0]
    if any(p.name for p in presets):
        names = [p.name for p in presets]
        ds.WindowCenterWidthExplanation = names if len(names) > 1 else names[0]
    function = functions.pop()
    if function != "LINEAR":
        ds.VOILUTFunction = function


def _set_rescale(ds: Dataset, rescale: tuple[float, float]) -> None:
    """Write Rescale Slope/Intercept/Type."""
    try:
        slope, intercept = (float(v) for v in rescale)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"rescale must be (slope, intercept), got {rescale!r}") from exc
    if slope == 0 or not np.isfinite(slope) or not np.isfinite(intercept):
        raise ValueError(f"rescale slope must be finite and non-zero, got {rescale!r}")
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.RescaleType = "US"


def _encode(ds: Dataset, arr: np.ndarray, ts: UID) -> None:
    """Replace the uncompressed Pixel Data with ``ts``'s encoding, in place."""
    ds.file_meta.TransferSyntaxUID = ts
    if ts in UNCOMPRESSED_SYNTAXES:
        return
    if ts == RLELossless or ts == JPEG2000Lossless:
        ds.compress(ts, arr, generate_instance_uid=False)
    elif ts == JPEG2000:
        ds.compress(ts, arr, generate_instance_uid=False, j2k_cr=[J2K_COMPRESSION_RATIO])
        _mark_lossy(ds, "ISO_15444_1", J2K_COMPRESSION_RATIO)
    elif ts == JPEGBaseline8Bit:
        _encode_jpeg_baseline(ds, arr)
    else:
        _encode_with_gdcm(ds, ts)


def _encode_jpeg_baseline(ds: Dataset, arr: np.ndarray) -> None:
    """Encode each frame with Pillow (quality 95; colour as 4:2:2 YCbCr) and encapsulate."""
    from PIL import Image

    color = ds.SamplesPerPixel == 3
    frames = arr.reshape((-1, *arr.shape[-3:])) if color else arr.reshape((-1, *arr.shape[-2:]))
    fragments = []
    for frame in frames:
        buf = io.BytesIO()
        # subsampling=1 is 4:2:2, which YBR_FULL_422 declares.
        Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=1)
        fragments.append(buf.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if color:
        ds.PhotometricInterpretation = "YBR_FULL_422"
    _mark_lossy(ds, "ISO_10918_1", None)


def _encode_with_gdcm(ds: Dataset, ts: UID) -> None:
    """Transcode with GDCM through a temporary file (GDCM has no in-memory numpy path)."""
    import gdcm

    gdcm_syntax = {
        JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14,
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGLSLossless: gdcm.TransferSyntax.JPEGLSLossless,
    }[ts]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with tempfile.TemporaryDirectory(prefix="cxrscreen-gdcm-") as tmp:
        src, dst = os.path.join(tmp, "in.dcm"), os.path.join(tmp, "out.dcm")
        ds.save_as(src, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(src)
        if not reader.Read():
            raise ValueError(f"GDCM could not read the data set to encode as {ts.name}")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm_syntax))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise ValueError(f"GDCM could not encode these pixels as {ts.name}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(dst)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise ValueError(f"GDCM could not write {ts.name}")
        encoded = pydicom.dcmread(dst)
    ds.PixelData = encoded.PixelData
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = ts


def _mark_lossy(ds: Dataset, method: str, ratio: float | None) -> None:
    """Set the Lossy Image Compression attributes (PS3.3 C.7.6.1.1.5)."""
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    if ratio is not None:
        ds.LossyImageCompressionRatio = ratio


def _apply_tags(ds: Dataset, tags: Mapping[str, Any]) -> None:
    """Set (or, for None, delete) attributes by keyword, verbatim."""
    for keyword, value in tags.items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"unknown DICOM keyword in tags: {keyword!r}")
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
