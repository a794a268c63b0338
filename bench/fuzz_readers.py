"""Fuzzing the radiograph readers: mutated files, each read in an isolated, limited process.

    nice -n 10 python bench/fuzz_readers.py --files 10000                 # the issue-20 run
    nice -n 10 python bench/fuzz_readers.py --files 2000 --score-files 400   # shorter

Seeds (``bench/_work/fuzz/seeds``): synthetic chests (``engine.synth``) written by
``engine.io.dicom_write`` in every transfer syntax we write (Implicit/Explicit VR Little Endian,
Deflated, RLE, JPEG 2000 lossless and lossy, JPEG Baseline, JPEG Lossless (Process 14 and
SV1), JPEG-LS), MONOCHROME1, RGB, windows, rescale, a VOI LUT sequence; PNG 8/16-bit, JPEG,
TIFF 8/16-bit/float, BMP; plus the real DICOM, PNG and JPEG files of ``../shared/data`` when
present (files over about a megapixel get fewer mutations, so that one slow decode does not
dominate the run).

Mutators (one per file, drawn at random): bit flips, random bytes, truncation, corrupted DICOM
header fields (BitsStored 1/7/0/17, BitsAllocated, Rows/Columns incl. 4097, SamplesPerPixel,
PhotometricInterpretation incl. YBR_RCT, PixelRepresentation, RescaleSlope inf/1e308/NaN/text,
window values, single-valued and non-numeric LUTDescriptor, NumberOfFrames, PlanarConfiguration,
empty Pixel Data, a swapped transfer syntax, unknown VRs), decompression bombs (claimed sizes
in PNG IHDR, TIFF tags and DICOM Rows/Columns, and real highly compressible large PNGs), broken
JPEG markers (lengths, SOF fields, missing SOS/EOI, in JPEG files and in encapsulated DICOM
streams), TIFF tags (dimensions removed or huge, samples, bits, strip offsets and counts) and
non-finite float TIFF samples.

Each file is read by a worker process (``fork``, one of ``--workers``) with an address-space
limit (``--memory-mb``, ``resource.setrlimit``) and a time limit (``--timeout``): both
``read_header`` and ``read_radiograph``. A worker that dies is an **abort** (its signal is
recorded) and is replaced; one that overruns is killed: a **hang**. Outcomes per file and read:
``ok``; ``typed`` (a RadiographReadError, counted by class and reason with digits folded);
``safety-net`` (a RadiographReadError made by the reader's last-resort handler from an
unforeseen exception: a bug to give a proper reason, counted as untyped); ``untyped``;
``non-finite`` (an ``ok`` whose pixels hold NaN/inf, or lie outside [0, 1]). Goal: 0 untyped,
0 safety-net, 0 aborts, 0 hangs, 0 non-finite.

``--score-files N`` then runs ``cxrscreen score`` (``python -m cxrscreen.engine score``) with a tiny
analytic ONNX detector over a folder of N of the mutated files plus their good seeds, and
checks it exits 0 with exactly one CSV row per file (a reason in ``error`` for the refused).

Results: ``bench/results/fuzz/fuzz_<files>.json`` (counts, per mutator, examples of every
failure kind with their seed file and mutator, and the files that cost a decoding process).
``--seed`` fixes the choice of seeds and mutations, but the synthetic seeds get fresh UIDs
(of varying length) in every run, so the mutated bytes differ from run to run: ``--keep``
keeps the mutated files to reproduce a finding.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "_work" / "fuzz"
RESULTS = REPO / "bench" / "results" / "fuzz"
if str(REPO) not in sys.path:
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

SEED_SHAPE = (96, 80)
REAL_PIXEL_BUDGET = 1_100_000  # real files larger than this get proportionally fewer mutations


# --------------------------------------------------------------------------------- seeds
def make_seeds(folder: Path) -> list[Path]:
    """Write the synthetic seeds (every format and transfer syntax we support) into ``folder``."""
    import pydicom
    import tifffile
    from PIL import Image
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import JPEGBaseline8Bit

    from cxrscreen.engine.io.dicom_write import WRITABLE_SYNTAXES, write_dicom
    from cxrscreen.engine.io.types import WindowPreset
    from cxrscreen.engine.synth import generate_chest

    folder.mkdir(parents=True, exist_ok=True)
    chest = generate_chest(0, SEED_SHAPE, marker=True).pixels
    g8 = np.round(chest * 255).astype(np.uint8)
    g12 = np.round(chest * 4095).astype(np.uint16)
    g16 = np.round(chest * 65535).astype(np.uint16)
    rgb = np.stack([g8, g8[::-1], 255 - g8], axis=-1)
    seeds: list[Path] = []
    for i, ts in enumerate(WRITABLE_SYNTAXES):
        name = re.sub(r"[^A-Za-z0-9]+", "_", ts.name)[:40]
        arr, bits = (g8, 8) if ts == JPEGBaseline8Bit else (g12, 12)
        seeds.append(write_dicom(folder / f"dcm_{i:02d}_{name}.dcm", arr, bits_stored=bits,
                                 transfer_syntax=ts, window=WindowPreset(2048, 4096)))
    seeds.append(write_dicom(folder / "dcm_mono1.dcm", g12, bits_stored=12, photometric="MONOCHROME1"))
    seeds.append(write_dicom(folder / "dcm_rgb.dcm", rgb, photometric="RGB"))
    seeds.append(write_dicom(folder / "dcm_rgb_jpeg.dcm", rgb, photometric="RGB",
                             transfer_syntax=JPEGBaseline8Bit))
    seeds.append(write_dicom(folder / "dcm_rescale.dcm", g12, bits_stored=12, rescale=(2.0, -1024.0),
                             window=[WindowPreset(1000, 3000), WindowPreset(0, 500)]))
    seeds.append(write_dicom(folder / "dcm_frames.dcm", np.stack([g12, g12[::-1]]), bits_stored=12))
    seeds.append(write_dicom(folder / "dcm_nopreamble.dcm", g12, bits_stored=12, preamble=False))
    voi = write_dicom(folder / "dcm_voilut.dcm", g12, bits_stored=12)
    ds = pydicom.dcmread(voi)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new(0x00283006, "US", list(range(4095, -1, -1)))  # LUTData
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(voi)
    seeds.append(voi)
    mlut = write_dicom(folder / "dcm_modlut.dcm", g12, bits_stored=12)
    ds = pydicom.dcmread(mlut)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "OD"
    item.add_new(0x00283006, "US", [v * 8 for v in range(4096)])  # LUTData
    ds.ModalityLUTSequence = Sequence([item])
    ds.save_as(mlut)
    seeds.append(mlut)
    for name, im in (("png8.png", Image.fromarray(g8)), ("png16.png", Image.fromarray(g16)),
                     ("png_rgb.png", Image.fromarray(rgb)), ("jpeg.jpg", Image.fromarray(g8)),
                     ("jpeg_rgb.jpg", Image.fromarray(rgb)), ("bmp.bmp", Image.fromarray(g8)),
                     ("pil_palette.tif", Image.fromarray(g8).convert("P"))):
        im.save(folder / name)
        seeds.append(folder / name)
    for name, arr, kwargs in (("tiff8.tif", g8, {}), ("tiff16.tif", g16, {}),
                              ("tiff_rgb.tif", rgb, {"photometric": "rgb"}),
                              ("tiff_float.tif", chest.astype(np.float32), {}),
                              ("tiff_float_wide.tif", (chest * 300 - 50).astype(np.float32), {}),
                              ("tiff_mono1.tif", g16, {"photometric": "miniswhite"})):
        tifffile.imwrite(folder / name, arr, **kwargs)
        seeds.append(folder / name)
    return seeds


def real_seeds(data: Path) -> list[Path]:
    """Real files of ``data`` (../shared/data: DICOM, and a few PNG/JPEG), when present."""
    if not (data / "README.md").is_file():
        print(f"no real data at {data}: synthetic seeds only", file=sys.stderr)
        return []
    out = sorted((data / "dicom").rglob("*.dcm"))
    out += sorted((data / "nih64").rglob("*.png"))[:3]
    out += sorted((data / "kermany").rglob("*.jpeg"))[:3]
    out += sorted((data / "fullres").rglob("*.png"))[:1]
    return out


def seed_weight(path: Path) -> float:
    """Mutation weight: 1, less for real files with many pixels (their decode is slow)."""
    from cxrscreen.engine.io import RadiographReadError, read_header

    try:
        meta = read_header(path)
    except RadiographReadError:
        return 1.0
    return min(1.0, REAL_PIXEL_BUDGET / max(1, meta.rows * meta.columns))


# ------------------------------------------------------------------------------ mutators
def m_bitflip(rng: random.Random, data: bytes, path: Path) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4, 8, 16))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_bytes(rng: random.Random, data: bytes, path: Path) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(out))
        n = rng.choice((1, 2, 4, 8, 32))
        out[i:i + n] = rng.choice((b"\xff" * n, b"\x00" * n, bytes(rng.randrange(256) for _ in range(n))))
    return bytes(out)


def m_header_bytes(rng: random.Random, data: bytes, path: Path) -> bytes:
    """Bit flips within the first 1024 bytes, where every header lives."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(min(len(out), 1024))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_truncate(rng: random.Random, data: bytes, path: Path) -> bytes:
    cut = rng.choice((rng.randrange(len(data)), len(data) - rng.randint(1, 64), rng.randint(1, 300)))
    return data[:max(1, cut)]


_DICOM_FIELDS: dict[str, list[Any]] = {
    "BitsStored": [0, 1, 7, 9, 17, 33],
    "BitsAllocated": [0, 1, 7, 12, 32, 64],
    "HighBit": [0, 31, 64],
    "Rows": [0, 1, 15, 4097, 65535, "+1", "-1"],
    "Columns": [0, 1, 15, 4097, 65535, "+1", "-1"],
    "SamplesPerPixel": [0, 2, 3, 4],
    "PhotometricInterpretation": ["YBR_RCT", "YBR_ICT", "YBR_FULL_422", "YBR_FULL", "PALETTE COLOR",
                                  "RGB", "MONOCHROME1", "HSV", "", "XYZ"],
    "PixelRepresentation": [1, 2],
    "PlanarConfiguration": [1, 2],
    "NumberOfFrames": [0, -1, 1000000000, "x"],
    "RescaleSlope": ["inf", "-inf", "nan", "1e308", "-1e308", "1e38", "0", "abc"],
    "RescaleIntercept": ["inf", "nan", "1e308", "abc"],
    "WindowCenter": ["nan", "inf", "1e308", "abc"],
    "WindowWidth": ["0", "-1", "nan", "inf", "1e-308", "abc"],
    "VOILUTFunction": ["SIGMOID", "LINEAR_EXACT", "XYZ"],
    "PresentationLUTShape": ["INVERSE", "IDENTITY", "XYZ"],
    "PixelSpacing": ["0\\0", "nan\\1", "abc"],
}


def m_dicom_field(rng: random.Random, data: bytes, path: Path) -> bytes:
    """One header field set to an implausible or contradictory value (pydicom re-writes it)."""
    import pydicom
    from pydicom import config
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import UID

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - a seed pydicom cannot parse: fall back to bit flips
        return m_bitflip(rng, data, path)
    kind = rng.random()
    try:
        if kind < 0.55:
            keyword = rng.choice(sorted(_DICOM_FIELDS))
            value = rng.choice(_DICOM_FIELDS[keyword])
            if isinstance(value, str) and value[:1] in "+-" and keyword in ("Rows", "Columns"):
                value = int(ds.get(keyword, 64)) + int(value)
            if keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelSpacing",
                           "NumberOfFrames") or (isinstance(value, str) and keyword in (
                               "BitsStored", "Rows", "Columns")):
                # raw text, whatever its validity (DS/IS values as a broken device writes them)
                tag = pydicom.datadict.tag_for_keyword(keyword)
                vr = pydicom.datadict.dictionary_VR(tag)
                text = str(value).encode()
                text += b" " * (len(text) % 2)
                ds[tag] = RawDataElement(tag, vr, len(text), text, 0, False, True)
            else:
                if isinstance(value, int) and value < 0 and keyword not in ("NumberOfFrames",):
                    value = 0
                setattr(ds, keyword, value)
        elif kind < 0.65:
            lut = pydicom.dataset.Dataset()
            choice = rng.randrange(4)
            tag = 0x00283002
            if choice == 0:
                lut[tag] = RawDataElement(tag, "US", 2, b"\x00\x01", 0, False, True)
            elif choice == 1:
                lut[tag] = RawDataElement(tag, "DS", 6, b"a\\b\\c ", 0, False, True)
            elif choice == 2:
                lut.LUTDescriptor = [65535, 0, 16]
            else:
                lut.LUTDescriptor = [4, 0, 40]
            lut.add_new(0x00283006, "US", [0, 1, 2, 3] if rng.random() < 0.5 else [])
            seq_name = rng.choice(("VOILUTSequence", "ModalityLUTSequence"))
            setattr(ds, seq_name, pydicom.sequence.Sequence([lut]))
        elif kind < 0.75:
            ds.PixelData = b""
        elif kind < 0.87:
            from cxrscreen.engine.io.dicom_write import WRITABLE_SYNTAXES
            from pydicom.uid import HTJ2KLossless, JPEGExtended12Bit, JPEGLSNearLossless

            ds.file_meta.TransferSyntaxUID = UID(rng.choice(
                (*WRITABLE_SYNTAXES, JPEGExtended12Bit, JPEGLSNearLossless, HTJ2KLossless,
                 "1.2.3.4.5")))
        else:
            return _unknown_vr(rng, data, path)
        buf = io.BytesIO()
        with config.disable_value_validation():
            ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except Exception:  # noqa: BLE001 - pydicom refused to write this combination
        return m_bitflip(rng, data, path)


def _unknown_vr(rng: random.Random, data: bytes, path: Path) -> bytes:
    """Replace the VR of one explicit-VR element in the data set with an unknown one."""
    out = bytearray(data)
    positions = [m.start() for m in re.finditer(rb"[\x08\x18\x20\x28]\x00..(?:CS|DS|IS|US|UI|LO|SH|PN|DA|TM)",
                                                data[132:20000], flags=re.S)]
    if not positions:
        return m_bitflip(rng, data, path)
    at = 132 + rng.choice(positions) + 4
    out[at:at + 2] = rng.choice((b"XX", b"ZZ", b"Q1", b"\x00\x00"))
    return bytes(out)


def m_jpeg_markers(rng: random.Random, data: bytes, path: Path) -> bytes:
    """Break a JPEG/JPEG-LS marker segment (in a JPEG file or an encapsulated DICOM stream)."""
    soi = data.find(b"\xff\xd8\xff")
    if soi < 0:
        return m_bytes(rng, data, path)
    markers = [m.start() for m in re.finditer(rb"\xff[\xc0-\xcf\xda\xdb\xdd\xe0-\xef\xf7\xf8]", data[soi:soi + 4096])]
    out = bytearray(data)
    if not markers:
        return m_bytes(rng, data, path)
    at = soi + rng.choice(markers)
    what = rng.randrange(7)
    if what == 0:  # segment length
        out[at + 2:at + 4] = struct.pack(">H", rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536))))
    elif what == 1 and 0xC0 <= out[at + 1] <= 0xCF or out[at + 1] == 0xF7:  # SOF fields
        field = rng.randrange(4)
        if field == 0:
            out[at + 4] = rng.choice((0, 1, 7, 9, 13, 17, 255))
        elif field == 1:
            out[at + 5:at + 7] = struct.pack(">H", rng.choice((0, 1, 4097, 65535)))
        elif field == 2:
            out[at + 7:at + 9] = struct.pack(">H", rng.choice((0, 1, 4097, 65535)))
        else:
            out[at + 9] = rng.choice((0, 2, 4, 255))
    elif what == 2:  # marker code
        out[at + 1] = rng.choice((0xC3, 0xF7, 0xD9, 0xDA, 0xC4, 0x00, 0xFF))
    elif what == 3:  # drop EOI
        eoi = out.rfind(b"\xff\xd9")
        if eoi >= 0:
            del out[eoi:eoi + 2]
    elif what == 4:  # duplicate the segment
        (length,) = struct.unpack(">H", out[at + 2:at + 4])
        out[at:at] = out[at:at + 2 + length]
    elif what == 5:  # remove SOS
        sos = out.find(b"\xff\xda", soi)
        if sos >= 0:
            out[sos + 1] = 0xFE
    else:  # garbage just after the marker
        for i in range(at + 4, min(len(out), at + 4 + rng.randint(1, 12))):
            out[i] = rng.randrange(256)
    return bytes(out)


def m_tiff_tags(rng: random.Random, data: bytes, path: Path) -> bytes:
    """Corrupt one entry of the first TIFF IFD (value, count, type), or remove a size tag."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return m_bytes(rng, data, path)
    e = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    (ifd,) = struct.unpack(e + "I", data[4:8])
    if ifd + 2 > len(data):
        return m_bytes(rng, data, path)
    (n,) = struct.unpack(e + "H", data[ifd:ifd + 2])
    entries = [ifd + 2 + 12 * k for k in range(n) if ifd + 14 + 12 * k <= len(data)]
    if not entries:
        return m_bytes(rng, data, path)
    size_tags = [p for p in entries if struct.unpack(e + "H", data[p:p + 2])[0] in (256, 257)]
    at = rng.choice(size_tags if size_tags and rng.random() < 0.35 else entries)
    what = rng.randrange(4)
    if what == 0:  # remove (rename to an unknown tag): e.g. missing dimensions
        out[at:at + 2] = struct.pack(e + "H", 65000)
    elif what == 1:  # value
        out[at + 8:at + 12] = struct.pack(e + "I", rng.choice((0, 1, 3, 32, 65535, 100000, 0xFFFFFFFF,
                                                                rng.randrange(1 << 32))))
    elif what == 2:  # count
        out[at + 4:at + 8] = struct.pack(e + "I", rng.choice((0, 2, 1000, 0xFFFFFFFF)))
    else:  # type
        out[at + 2:at + 4] = struct.pack(e + "H", rng.choice((0, 3, 4, 11, 12, 16, 99)))
    return bytes(out)


def m_bomb(rng: random.Random, data: bytes, path: Path) -> bytes:
    """Claim a huge image in the header (PNG IHDR with a valid CRC, TIFF, BMP, JPEG, DICOM)."""
    side = rng.choice((7100, 9000, 16384, 16385, 40000, 65535))
    other = rng.choice((side, 7100, 100))
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        out = bytearray(data)
        out[16:24] = struct.pack(">II", side, other)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
        return bytes(out)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return m_tiff_tags(rng, data, path)
    if data.startswith(b"BM"):
        return data[:18] + struct.pack("<ii", side, other) + data[26:]
    sof = re.search(rb"\xff[\xc0-\xc3\xf7]", data[:8192])
    if sof is not None:
        out = bytearray(data)
        at = sof.start()
        out[at + 5:at + 9] = struct.pack(">HH", other, side)
        if data[128:132] == b"DICM" and rng.random() < 0.5:
            return _dicom_size(bytes(out), other, side)
        return bytes(out)
    if data[128:132] == b"DICM" or path.suffix == ".dcm":
        return _dicom_size(data, side, other)
    return m_bytes(rng, data, path)


def _dicom_size(data: bytes, rows: int, columns: int) -> bytes:
    import pydicom
    from pydicom import config

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.Rows, ds.Columns = rows, columns
        buf = io.BytesIO()
        with config.disable_value_validation():
            ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except Exception:  # noqa: BLE001
        return data


MUTATORS: dict[str, Callable[[random.Random, bytes, Path], bytes]] = {
    "bitflip": m_bitflip,
    "bytes": m_bytes,
    "header-bitflip": m_header_bytes,
    "truncate": m_truncate,
    "dicom-field": m_dicom_field,
    "jpeg-markers": m_jpeg_markers,
    "tiff-tags": m_tiff_tags,
    "bomb": m_bomb,
}
# Mutators that only make sense for some seeds.
_APPLIES: dict[str, Callable[[Path, bytes], bool]] = {
    "dicom-field": lambda p, d: d[128:132] == b"DICM" or p.suffix == ".dcm",
    "jpeg-markers": lambda p, d: b"\xff\xd8\xff" in d[:1 << 16],
    "tiff-tags": lambda p, d: d[:4] in (b"II*\x00", b"MM\x00*"),
}


def extra_files(folder: Path) -> list[tuple[Path, str, str]]:
    """Hand-made files: real decompression bombs and non-finite float TIFFs."""
    import tifffile
    from PIL import Image

    out = []
    for side in (7500, 12000):
        p = folder / f"bomb_png_{side}.png"
        if not p.exists():
            Image.new("L", (side, side)).save(p, optimize=False)  # ~100 KB for side² pixels
        out.append((p, "real-bomb", "synthetic"))
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        p = folder / f"tiff_float_{name}.tif"
        arr = np.full(SEED_SHAPE, 0.5, np.float32)
        arr[10:20, 10:20] = value
        tifffile.imwrite(p, arr)
        out.append((p, "non-finite-tiff", "synthetic"))
    return out


# ------------------------------------------------------------------------------- workers
def classify(path: str) -> dict[str, str]:
    """Read ``path`` both ways and name the outcome of each (runs in a worker)."""
    from cxrscreen.engine.io import RadiographReadError, read_header, read_radiograph
    from cxrscreen.engine.io.reader import UNEXPECTED

    result: dict[str, str] = {}
    for name, read in (("header", read_header), ("read", read_radiograph)):
        try:
            out = read(path)
        except RadiographReadError as exc:
            if exc.reason.startswith(UNEXPECTED):
                cause = type(exc.__cause__).__name__ if exc.__cause__ else "?"
                result[name] = f"safety-net:{cause}:{_fold(exc.reason)}"
            else:
                result[name] = f"typed:{type(exc).__name__}:{_fold(exc.reason)}"
            continue
        except BaseException as exc:  # noqa: BLE001 - counting them is the point
            result[name] = f"untyped:{type(exc).__name__}:{_fold(str(exc))}"
            continue
        if name == "read":
            pixels = out.pixels
            if not np.isfinite(pixels).all():
                result[name] = "non-finite:pixels"
                continue
            if pixels.size and (pixels.min() < 0 or pixels.max() > 1):
                result[name] = "non-finite:outside [0, 1]"
                continue
        result[name] = "ok"
    return result


def _fold(text: str) -> str:
    """A reason with file names, digits and hex folded, so that alike reasons count together."""
    text = re.sub(r"/\S+", "PATH", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\d+(\.\d+)?(e[+-]?\d+)?", "N", text)
    return text[:120]


def worker_main(conn: Any, memory_mb: int, decode_timeout: float, frame_check: bool = True) -> None:
    """A fuzz worker: limits itself, then reads the paths it is sent until told to stop."""
    import resource

    import cxrscreen.engine.io.decoders as decoders

    import logging
    import warnings

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # decoder libraries print to stderr (GDCM, openjpeg, libjpeg) and pydicom warns on every
    # odd value: thousands of lines that say nothing the outcome record does not
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    decoders.DECODE_TIMEOUT_S = decode_timeout
    if not frame_check:  # to show the process pool alone containing GDCM's aborts
        decoders.check_jpeg_frame_header = lambda path, ds, ts: None
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        t0 = time.perf_counter()
        outcome = classify(path)
        conn.send((outcome, time.perf_counter() - t0))


class Worker:
    """A forked fuzz worker and its pipe."""

    def __init__(self, memory_mb: int, decode_timeout: float, frame_check: bool) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, memory_mb, decode_timeout, frame_check),
                                daemon=False)
        self.proc.start()
        child.close()
        self.busy: tuple[int, float] | None = None

    def kill(self) -> None:
        try:
            self.proc.kill()
        finally:
            self.proc.join(5)
            self.conn.close()


def run_files(items: list[tuple[Path, str, str]], workers: int, timeout: float, memory_mb: int,
              decode_timeout: float, frame_check: bool = True, progress_every: int = 500) -> list[dict[str, Any]]:
    """Read every file in a pool of limited worker processes; one outcome record per file."""
    from multiprocessing.connection import wait

    results: list[dict[str, Any] | None] = [None] * len(items)
    pool = [Worker(memory_mb, decode_timeout, frame_check) for _ in range(workers)]
    todo = list(range(len(items)))[::-1]
    done = 0
    t_start = time.monotonic()
    while done < len(items):
        for w in pool:
            if w.busy is None and todo:
                i = todo.pop()
                w.conn.send(str(items[i][0]))
                w.busy = (i, time.monotonic())
        busy = [w for w in pool if w.busy is not None]
        ready = wait([w.conn for w in busy], timeout=0.5)
        now = time.monotonic()
        for k, w in enumerate(list(pool)):
            if w.busy is None:
                continue
            i, t0 = w.busy
            record: dict[str, Any] | None = None
            if w.conn in ready:
                try:
                    outcome, seconds = w.conn.recv()
                    record = {**outcome, "seconds": round(seconds, 4)}
                except (EOFError, OSError):
                    w.proc.join(5)
                    code = w.proc.exitcode
                    name = signal.Signals(-code).name if code and code < 0 else f"exit {code}"
                    record = {"header": f"abort:{name}", "read": f"abort:{name}", "seconds": now - t0}
            elif now - t0 > timeout:
                record = {"header": "hang", "read": "hang", "seconds": now - t0}
            if record is None:
                continue
            path, mutator, seed = items[i]
            results[i] = {"file": path.name, "mutator": mutator, "seed": seed, **record}
            done += 1
            w.busy = None
            if record["read"].startswith(("abort", "hang")):
                w.kill()
                pool[k] = Worker(memory_mb, decode_timeout, frame_check)
            if done % progress_every == 0:
                rate = done / max(1e-9, time.monotonic() - t_start)
                print(f"  {done}/{len(items)} files ({rate:.1f}/s)", file=sys.stderr, flush=True)
    for w in pool:
        w.conn.send(None)
        w.proc.join(10)
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------------- score
def run_score(files: list[Path], folder: Path, read_ok: dict[Path, bool]) -> dict[str, Any]:
    """``python -m cxrscreen.engine score`` over ``files`` copied into ``folder``: exit code and rows."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_local_contrast_detector  # the suite's analytic ONNX detector

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for k, p in enumerate(files):
        shutil.copyfile(p, folder / f"{k:05d}_{p.name}")
    model = build_local_contrast_detector(folder.parent / "score_detector.onnx")
    out = folder.parent / "score.csv"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "packaging" / "src"), str(REPO)])}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cxrscreen.engine", "score", str(folder), "--model", str(model),
                           "--out", str(out)], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - t0
    rows = list(csv.DictReader(open(out, encoding="utf-8"))) if out.exists() else []
    names = {Path(r["path"]).name for r in rows}
    # the score row must agree with the isolated read: scored exactly when read_radiograph read it
    scored = {Path(r["path"]).name: bool(r["score"]) for r in rows}
    disagreements = [{"file": p.name, "isolated_read_ok": read_ok.get(p), "scored": scored.get(f"{k:05d}_{p.name}")}
                     for k, p in enumerate(files) if read_ok.get(p) != scored.get(f"{k:05d}_{p.name}")]
    return {
        "files": len(files), "exit_code": proc.returncode, "rows": len(rows),
        "rows_with_error": sum(1 for r in rows if r["error"]), "scored": sum(1 for r in rows if r["score"]),
        "every_file_has_one_row": len(rows) == len(files) and len(names) == len(files),
        "disagreements_with_isolated_read": len(disagreements), "disagreement_examples": disagreements[:10],
        "seconds": round(seconds, 1), "stderr_tail": proc.stderr.strip().splitlines()[-2:],
    }


# ----------------------------------------------------------------------------------- main
def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    def kind(outcome: str) -> str:
        return outcome.split(":", 1)[0]

    out: dict[str, Any] = {}
    for read in ("header", "read"):
        kinds = Counter(kind(r[read]) for r in records)
        reasons = Counter(r[read] for r in records if kind(r[read]) == "typed")
        per_mutator: dict[str, Counter] = defaultdict(Counter)
        for r in records:
            per_mutator[r["mutator"]][kind(r[read])] += 1
        out[read] = {
            "outcomes": {k: kinds.get(k, 0) for k in ("ok", "typed", "safety-net", "untyped", "abort", "hang",
                                                     "non-finite")},
            "typed_reasons": dict(reasons.most_common(60)),
            "per_mutator": {m: dict(c) for m, c in sorted(per_mutator.items())},
            "failures": [r for r in records if kind(r[read]) in ("safety-net", "untyped", "abort", "hang",
                                                                 "non-finite")][:50],
            # contained, but each costs a decoding process: worth a header check if a pattern shows
            "decoder_process_deaths": [r for r in records if "decoder process died" in r[read]
                                       or "time limit" in r[read]][:50],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10000, help="mutated files (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per file before a hang is declared")
    parser.add_argument("--decode-timeout", type=float, default=20.0, help="the GDCM pool's time limit in workers")
    parser.add_argument("--memory-mb", type=int, default=3072, help="address-space limit per worker")
    parser.add_argument("--score-files", type=int, default=400,
                        help="mutated files (plus the good seeds) in the `score` check; 0 = all, -1 = skip")
    parser.add_argument("--data", type=Path, default=DATA, help="real data folder (default: ../shared/data)")
    parser.add_argument("--seeds", default="", metavar="REGEX",
                        help="mutate only the seeds whose file name matches (e.g. 'JPEG_L' for the GDCM syntaxes)")
    parser.add_argument("--skip-frame-check", action="store_true",
                        help="skip the JPEG frame-header check before GDCM (shows the process pool containing aborts)")
    parser.add_argument("--keep", action="store_true", help="keep the mutated files in bench/_work/fuzz")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: bench/results/fuzz/fuzz_<files>.json)")
    args = parser.parse_args(argv)
    if args.files < 1 or args.workers < 1 or args.timeout <= 0 or args.memory_mb < 512:
        parser.error("--files and --workers must be >= 1, --timeout > 0, --memory-mb >= 512")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    seeds_dir, mutated_dir = WORK / "seeds", WORK / "mutated"
    if seeds_dir.exists():
        shutil.rmtree(seeds_dir)
    if mutated_dir.exists():
        shutil.rmtree(mutated_dir)
    mutated_dir.mkdir(parents=True)
    t0 = time.monotonic()
    synthetic = make_seeds(seeds_dir)
    real = real_seeds(args.data)
    seeds = [(p, "synthetic") for p in synthetic] + [(p, "real") for p in real]
    if args.seeds:
        seeds = [(p, kind) for p, kind in seeds if re.search(args.seeds, p.name)]
        if not seeds:
            parser.error(f"--seeds {args.seeds!r} matches no seed")
    weights = [seed_weight(p) if kind == "real" else 1.0 for p, kind in seeds]
    print(f"{len(synthetic)} synthetic and {len(real)} real seeds ({time.monotonic() - t0:.1f} s)", file=sys.stderr)

    rng = random.Random(args.seed)
    items: list[tuple[Path, str, str]] = [(p, "seed", "seed") for p, _ in seeds]
    if not args.seeds:
        items += extra_files(seeds_dir)
    contents = {p: p.read_bytes() for p, _ in seeds}
    names = sorted(MUTATORS)
    for k in range(args.files):
        path, _ = rng.choices(seeds, weights=weights)[0]
        data = contents[path]
        options = [m for m in names if m not in _APPLIES or _APPLIES[m](path, data)]
        mutator = rng.choice(options)
        mutated = MUTATORS[mutator](rng, data, path)
        target = mutated_dir / f"{k:05d}_{mutator}_{path.stem[:30]}{path.suffix}"
        target.write_bytes(mutated)
        items.append((target, mutator, path.name))
    print(f"{args.files} mutated files written ({time.monotonic() - t0:.1f} s)", file=sys.stderr)

    t1 = time.monotonic()
    records = run_files(items, args.workers, args.timeout, args.memory_mb, args.decode_timeout,
                        frame_check=not args.skip_frame_check)
    fuzz_seconds = time.monotonic() - t1
    summary = summarise(records)
    score: dict[str, Any] | None = None
    if args.score_files >= 0:
        mutated = [p for p, m, _ in items if m not in ("seed",)]
        chosen = mutated if args.score_files == 0 else rng.sample(mutated, min(args.score_files, len(mutated)))
        chosen = [p for p, _ in seeds if p.suffix.lower() in (".dcm", ".png", ".jpg", ".jpeg", ".tif", ".bmp")] + chosen
        read_ok = {items[i][0]: r["read"] == "ok" for i, r in enumerate(records)}
        score = run_score(chosen, WORK / "score_folder", read_ok)

    result = {
        "command": "python bench/fuzz_readers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "files_mutated": args.files, "seed_filter": args.seeds, "frame_check": not args.skip_frame_check, "files_read": len(records), "seeds_synthetic": len(synthetic),
        "seeds_real": len(real), "workers": args.workers, "timeout_s": args.timeout,
        "memory_mb": args.memory_mb, "fuzz_seconds": round(fuzz_seconds, 1),
        "files_per_second": round(len(records) / max(fuzz_seconds, 1e-9), 2),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        **summary, "score": score,
    }
    out = args.out or RESULTS / f"fuzz_{args.files}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for read in ("header", "read"):
        print(f"{read}: {result[read]['outcomes']}")
    if score is not None:
        print(f"score: exit {score['exit_code']}, {score['rows']} rows for {score['files']} files "
              f"({score['rows_with_error']} with a reason)")
    print(f"-> {out}")
    if not args.keep:
        shutil.rmtree(mutated_dir, ignore_errors=True)
    bad = sum(result[r]["outcomes"][k] for r in ("header", "read")
              for k in ("safety-net", "untyped", "abort", "hang", "non-finite"))
    return 0 if bad == 0 and (score is None or (score["exit_code"] == 0 and score["every_file_has_one_row"])) else 1


if __name__ == "__main__":
    raise SystemExit(main())
