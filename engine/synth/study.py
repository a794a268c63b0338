"""Write a synthetic study folder: radiographs in several encodings, labels and lesion masks.

Layout written by :func:`write_study` for ``folder = .../study``::

    study/case_0000.dcm, study/case_0001.png, ...   the radiographs (names do not reveal labels)
    study/labels.csv                                path,label,finding,mask
    study_masks/case_0003.png, ...                  lesion masks (abnormal cases only)

Masks live in a sibling folder so that scanning or scoring ``study/`` sees only radiographs.
``labels.csv`` follows the convention of the project's real data sets: ``path`` relative to
the folder, ``label`` 0 (normal) or 1 (abnormal), then the ``finding`` and the ``mask`` path
(relative to the study folder, empty for normals).

Encodings cycle through :data:`ENCODINGS` (restricted to the requested formats): PNG 8 and
16 bit, and DICOM CR/DX, MONOCHROME1 and MONOCHROME2, 8 to 16 stored bits, PA and AP, with a
full-range window, so reading a file back gives the generated pixels within quantisation.
"""
from __future__ import annotations

import csv
import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image

from cxrscreen.engine.synth.chest import Finding, check_options, generate_chest
from cxrscreen.engine.synth.lesions import LESION_KINDS, LesionKind

FileKind = Literal["png", "dicom"]
FILE_KINDS: tuple[str, ...] = get_args(FileKind)
FIELD_OF_VIEW_MM = 430.0  # a 43 cm detector across the image's longer side
_CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


@dataclass(frozen=True)
class Encoding:
    """How one radiograph is stored.

    Attributes:
        format: "png" or "dicom".
        bits: stored bits (PNG: 8 or 16; DICOM: 8 to 16).
        photometric: "MONOCHROME2" (higher = brighter) or "MONOCHROME1" (DICOM only).
        modality: "CR" or "DX" (DICOM only).
        view: "PA" or "AP" (DICOM only).
    """

    format: FileKind
    bits: int
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    modality: Literal["CR", "DX"] = "DX"
    view: Literal["PA", "AP"] = "PA"

    @property
    def suffix(self) -> str:
        """File suffix, with the dot."""
        return ".png" if self.format == "png" else ".dcm"

    @property
    def max_value(self) -> int:
        """Largest stored value."""
        return (1 << self.bits) - 1


ENCODINGS: tuple[Encoding, ...] = (
    Encoding("dicom", 12, "MONOCHROME2", "CR", "PA"),
    Encoding("png", 8),
    Encoding("dicom", 12, "MONOCHROME1", "CR", "PA"),
    Encoding("png", 16),
    Encoding("dicom", 16, "MONOCHROME2", "DX", "PA"),
    Encoding("dicom", 10, "MONOCHROME1", "DX", "AP"),
    Encoding("dicom", 8, "MONOCHROME2", "DX", "AP"),
    Encoding("dicom", 14, "MONOCHROME1", "DX", "PA"),
)


@dataclass(frozen=True)
class StudyImage:
    """One written radiograph.

    Attributes:
        path: the image file.
        label: 0 normal, 1 abnormal.
        finding: "normal" or the lesion kind.
        mask_path: the lesion mask PNG (0/255), or None for a normal case.
        seed: the :func:`~engine.synth.generate_chest` seed that regenerates its pixels.
        encoding: how it is stored.
    """

    path: Path
    label: int
    finding: Finding
    mask_path: Path | None
    seed: int
    encoding: Encoding


def quantise(pixels: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Stored values of [0, 1] display pixels in ``encoding`` (inverted for MONOCHROME1).

    Returns:
        uint8 (up to 8 bits) or uint16 array.
    """
    dtype = np.uint8 if encoding.bits <= 8 else np.uint16
    values = np.rint(np.clip(pixels, 0.0, 1.0) * encoding.max_value)
    if encoding.photometric == "MONOCHROME1":
        values = encoding.max_value - values
    return values.astype(dtype)


def _uid(seed: int, case: int, what: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[f"cxrscreen-synth/{seed}/{case}/{what}"]))


def _write_dicom(path: Path, pixels: np.ndarray, enc: Encoding, seed: int, case: int) -> None:
    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.io.types import WindowPreset

    h, w = pixels.shape
    spacing = round(FIELD_OF_VIEW_MM / max(h, w), 4)
    date = datetime.date(2024, 1, 1) + datetime.timedelta(days=case)
    tags: dict[str, object] = {
        "Modality": enc.modality,
        "ViewPosition": enc.view,
        "BodyPartExamined": "CHEST",
        "PatientID": f"SYN{seed % 10000:04d}-{case:04d}",
        "PatientName": f"SYNTHETIC^CASE{case:04d}",
        "AccessionNumber": f"SYN{case:06d}",
        "StudyDate": date.strftime("%Y%m%d"),
        "SeriesDate": date.strftime("%Y%m%d"),
        "StudyDescription": "CHEST 1 VIEW",
        "SeriesDescription": f"CHEST {enc.view}",
        "InstitutionName": "cxrscreen synthetic",
        "ImageComments": "synthetic radiograph, not for clinical use",
        "StudyInstanceUID": _uid(seed, case, "study"),
        "SeriesInstanceUID": _uid(seed, case, "series"),
        "SOPInstanceUID": _uid(seed, case, "instance"),
        # DX requires the detector's spacing; CR commonly carries PixelSpacing
        "ImagerPixelSpacing" if enc.modality == "DX" else "PixelSpacing": [spacing, spacing],
    }
    if enc.modality == "CR":
        tags["SOPClassUID"] = _CR_STORAGE
        tags["PresentationIntentType"] = None  # a DX-only attribute
    # LINEAR window covering exactly 0..max: the reader shows value v as v / max
    full = WindowPreset(center=(enc.max_value + 1) / 2.0, width=float(enc.max_value + 1), name="FULL")
    write_dicom(path, quantise(pixels, enc), photometric=enc.photometric, bits_stored=enc.bits, window=full, tags=tags)


def _write_png(path: Path, pixels: np.ndarray, enc: Encoding) -> None:
    values = quantise(pixels, enc)
    if enc.bits == 8:
        Image.fromarray(values).save(path)
    else:
        Image.fromarray(values.astype(np.uint16)).save(path)  # mode I;16


def _check_args(n_normal: int, n_abnormal: int, formats: Sequence[str], lesions: Sequence[str]) -> tuple[Encoding, ...]:
    for name, n in (("n_normal", n_normal), ("n_abnormal", n_abnormal)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    if isinstance(formats, str):
        raise TypeError(f"formats must be a sequence of format names, e.g. ('png',), got the string {formats!r}")
    bad = [f for f in formats if f not in FILE_KINDS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FILE_KINDS}, got {tuple(formats)!r}")
    bad = [k for k in lesions if k not in LESION_KINDS]
    if bad or (n_abnormal and not lesions):
        raise ValueError(f"lesions must be a non-empty subset of {LESION_KINDS}, got {tuple(lesions)!r}")
    return tuple(e for e in ENCODINGS if e.format in formats)


def write_study(
    folder: str | os.PathLike[str],
    n_normal: int,
    n_abnormal: int,
    *,
    size: int | tuple[int, int] = 256,
    formats: Sequence[FileKind] = ("png", "dicom"),
    seed: int = 0,
    lesions: Sequence[LesionKind] = LESION_KINDS,
    lesion_strength: float = 1.0,
    variation: float = 1.0,
    pose: bool = True,
    marker: bool = True,
    mask_folder: str | os.PathLike[str] | None = None,
) -> list[StudyImage]:
    """Generate and write a synthetic study folder (see the module docstring for the layout).

    Args:
        folder: where the radiographs and ``labels.csv`` go (created if missing; files of
            the same names are overwritten).
        n_normal: number of normal chests.
        n_abnormal: number of chests with a lesion; kinds cycle through ``lesions``.
        size: image side, or (H, W), as in :func:`~engine.synth.generate_chest`.
        formats: which of "png" and "dicom" to write; encodings cycle through
            :data:`ENCODINGS` restricted to these.
        seed: the whole study is a function of this seed and the arguments.
        lesions: lesion kinds used for the abnormal cases.
        lesion_strength: passed to :func:`~engine.synth.generate_chest`.
        variation: passed to :func:`~engine.synth.generate_chest`.
        pose: passed to :func:`~engine.synth.generate_chest`.
        marker: passed to :func:`~engine.synth.generate_chest`.
        mask_folder: where the lesion masks go; default: a sibling ``<folder>_masks``.

    Returns:
        The written images in case order (case_0000 first); normal and abnormal cases are
        shuffled, so a file's name does not reveal its label.

    Raises:
        ValueError: a negative count, an unknown format or lesion kind, or a size, strength
            or variation that :func:`~engine.synth.generate_chest` refuses (checked before
            anything is written).
        TypeError: ``formats`` given as one string, or a size of the wrong type.
    """
    encodings = _check_args(n_normal, n_abnormal, formats, lesions)
    check_options(size, None, lesion_strength, variation)
    folder = Path(folder)
    masks = Path(mask_folder) if mask_folder is not None else folder.with_name(folder.name + "_masks")
    folder.mkdir(parents=True, exist_ok=True)
    if n_abnormal:
        masks.mkdir(parents=True, exist_ok=True)

    order = np.random.default_rng(np.random.SeedSequence([seed, 0])).permutation(n_normal + n_abnormal)
    labels = np.where(order < n_normal, 0, 1)
    written: list[StudyImage] = []
    n_lesion = 0
    for case, label in enumerate(labels):
        case_seed = int(np.random.SeedSequence([seed, 1, case]).generate_state(1, dtype=np.uint64)[0] >> 1)
        lesion: LesionKind | None = None
        if label:
            lesion = lesions[n_lesion % len(lesions)]
            n_lesion += 1
        chest = generate_chest(case_seed, size, lesion=lesion, lesion_strength=lesion_strength,
                               variation=variation, pose=pose, marker=marker)
        enc = encodings[case % len(encodings)]
        path = folder / f"case_{case:04d}{enc.suffix}"
        if enc.format == "png":
            _write_png(path, chest.pixels, enc)
        else:
            _write_dicom(path, chest.pixels, enc, seed, case)
        mask_path = None
        if chest.mask is not None:
            mask_path = masks / f"case_{case:04d}.png"
            Image.fromarray(chest.mask.astype(np.uint8) * 255).save(mask_path)
        written.append(StudyImage(path, int(label), chest.finding, mask_path, case_seed, enc))

    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["path", "label", "finding", "mask"])
        for item in written:
            mask = os.path.relpath(item.mask_path, folder).replace(os.sep, "/") if item.mask_path else ""
            out.writerow([item.path.name, item.label, item.finding, mask])
    return written
