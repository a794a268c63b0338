"""Reading radiographs: DICOM (pydicom 3) and PNG/JPEG/TIFF/BMP into one :class:`Radiograph`.

Shared by the engine and the desktop app; never imports torch.

Public API:
    read_radiograph(path) -> Radiograph          decode pixels + metadata
    read_header(path) -> RadiographMeta          header-only fast path (no pixel decode)
    scan_folder(root) -> Iterator[ScanItem]      recursive, progressive, stable order
    list_image_files(roots) -> Iterator[Path]    the same files and order, no header read
"""
from cxrscreen.engine.io.types import (
    CorruptFileError,
    FileAccessError,
    FileFormat,
    ImageSizeError,
    MissingPixelDataError,
    Radiograph,
    RadiographMeta,
    RadiographReadError,
    UnsupportedFileError,
    WindowPreset,
)
from cxrscreen.engine.io.reader import SUPPORTED_SUFFIXES, read_header, read_radiograph
from cxrscreen.engine.io.scan import ScanItem, list_image_files, scan_folder

__all__ = [
    "CorruptFileError",
    "FileAccessError",
    "FileFormat",
    "ImageSizeError",
    "MissingPixelDataError",
    "Radiograph",
    "RadiographMeta",
    "RadiographReadError",
    "SUPPORTED_SUFFIXES",
    "ScanItem",
    "UnsupportedFileError",
    "WindowPreset",
    "read_header",
    "read_radiograph",
    "list_image_files",
    "scan_folder",
]
