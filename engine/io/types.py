"""Types shared by every radiograph reader: the decoded image, its metadata, and typed errors.

Torch-free: imported by the desktop app and by the engine alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

FileFormat = Literal["dicom", "png", "jpeg", "tiff", "bmp"]


@dataclass(frozen=True)
class WindowPreset:
    """A VOI window found in the file, in modality units (after the modality LUT).

    Attributes:
        center: WindowCenter.
        width: WindowWidth (> 0).
        name: WindowCenterWidthExplanation when present, else "".
        function: VOILUTFunction: "LINEAR", "LINEAR_EXACT" or "SIGMOID".
    """

    center: float
    width: float
    name: str = ""
    function: Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"] = "LINEAR"


@dataclass(frozen=True)
class RadiographMeta:
    """What is known about a radiograph file without (or before) decoding its pixels.

    ``rows``/``columns`` are the stored (original) size. Identifiers are None when absent.
    ``inverted`` and ``voi`` say how the decoded display pixels were made (filled by
    :func:`read_radiograph`, not by the header-only path): whether polarity was inverted
    (MONOCHROME1 or Presentation LUT Shape INVERSE) and which VOI step rendered them
    ("voi-lut", "window" — the first preset — or "min-max"; None for non-DICOM files).
    ``notes`` lists what the reader did that a user should know (e.g. "multi-frame: first of
    3 frames shown", "VOI LUT sequence applied", "read without DICOM preamble").
    """

    path: Path
    format: FileFormat
    rows: int
    columns: int
    bits_stored: int | None = None
    photometric: str | None = None
    samples_per_pixel: int = 1
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    spacing_source: Literal["PixelSpacing", "ImagerPixelSpacing"] | None = None
    window_presets: tuple[WindowPreset, ...] = ()
    presentation_intent: Literal["FOR PRESENTATION", "FOR PROCESSING"] | None = None
    number_of_frames: int = 1
    transfer_syntax: str | None = None
    notes: tuple[str, ...] = ()
    inverted: bool = False
    voi: Literal["voi-lut", "window", "min-max"] | None = None


@dataclass
class Radiograph:
    """A decoded radiograph.

    Attributes:
        pixels: (H, W) float32 in [0, 1], row-major, higher = brighter as displayed
            (MONOCHROME1 and PresentationLUTShape INVERSE already applied, the first VOI
            window applied for DICOM).
        meta: the file's metadata.
        modality_values: (H, W) float32 after the modality LUT and before VOI (DICOM only),
            so a viewer can apply another window preset; None for other formats.
    """

    pixels: np.ndarray
    meta: RadiographMeta
    modality_values: np.ndarray | None = field(default=None, repr=False)


class RadiographReadError(ValueError):
    """A file could not be read as a radiograph.

    Attributes:
        path: the file.
        reason: a short human-readable reason (shown in the worklist and in score CSVs).
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedFileError(RadiographReadError):
    """Not an image format we read (or an image type we do not support, e.g. a DICOM SR)."""


class CorruptFileError(RadiographReadError):
    """Truncated, malformed or undecodable content."""


class MissingPixelDataError(RadiographReadError):
    """A valid DICOM data set without pixel data."""


class ImageSizeError(RadiographReadError):
    """The claimed image size is implausible (too small to be a radiograph, or too large)."""


class FileAccessError(RadiographReadError):
    """The file cannot be opened (permissions, a directory, vanished)."""
