"""No file can stop a run (issue 20): decoder aborts contained, typed errors for every failure,
non-finite values refused, a pixel budget against decompression bombs.

Every case is a small generated file with one defect, made the way the fuzzing benchmark
(bench/fuzz_readers.py) found it.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLossless, JPEGLSLossless, RLELossless

from cxrscreen.engine.io import (
    CorruptFileError,
    ImageSizeError,
    MissingPixelDataError,
    RadiographReadError,
    read_header,
    read_radiograph,
)
from cxrscreen.engine.io.decoders import DecoderPool
from cxrscreen.engine.io.dicom_write import write_dicom
from cxrscreen.engine.io.limits import MAX_PIXELS
from cxrscreen.engine.io.reader import UNEXPECTED


def _edit(path: Path, **values: object) -> Path:
    """Rewrite a DICOM file with some attributes changed (no value validation)."""
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def _raw(path: Path, keyword_tag: int, vr: str, text: bytes) -> Path:
    """Rewrite one element as raw bytes, whatever their validity (as a broken device writes it)."""
    ds = pydicom.dcmread(path)
    ds[keyword_tag] = RawDataElement(keyword_tag, vr, len(text), text, 0, False, True)
    ds.save_as(path)
    return path


def _refused(path: Path, error: type[RadiographReadError], match: str, header_too: bool = False) -> None:
    """Both reads (or the full one) raise ``error`` with a reason, never the safety net."""
    reads = (read_header, read_radiograph) if header_too else (read_radiograph,)
    for read in reads:
        with pytest.raises(error, match=match) as info:
            read(path)
        assert not info.value.reason.startswith(UNEXPECTED)


# -- GDCM: header checked against the code stream, then decoded in a restartable process pool


def test_bits_stored_contradicting_an_8_bit_jpeg_is_refused_before_gdcm(tmp_path: Path, ramp8: np.ndarray) -> None:
    # GDCM aborts the process on BitsStored 7 with BitsAllocated 8 (a C++ assertion)
    path = write_dicom(tmp_path / "x.dcm", ramp8, bits_stored=8, transfer_syntax=JPEGLossless)
    _edit(path, BitsStored=7, HighBit=6)
    _refused(path, CorruptFileError, "BitsStored 7 with BitsAllocated 8")


def test_jpeg_ls_frame_narrower_than_columns_is_refused(tmp_path: Path, ramp12: np.ndarray) -> None:
    # Columns 81 on an 80-wide JPEG-LS stream (the Columns 4097 case, made small)
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=JPEGLSLossless)
    _edit(path, Columns=81)
    _refused(path, CorruptFileError, r"JPEG frame is 80×64 but the header says 81×64")


def test_a_gdcm_abort_costs_one_file_and_the_pool_restarts(tmp_path: Path, ramp8: np.ndarray) -> None:
    good = write_dicom(tmp_path / "good.dcm", ramp8, bits_stored=8, transfer_syntax=JPEGLossless)
    bad = _edit(write_dicom(tmp_path / "bad.dcm", ramp8, bits_stored=8, transfer_syntax=JPEGLossless),
                BitsStored=7, HighBit=6)
    pool = DecoderPool(processes=1, timeout_s=60)
    try:
        # straight to the pool, past the header check: GDCM really aborts its process
        with pytest.raises(CorruptFileError, match="decoder process died \\(SIGABRT\\)"):
            pool.decode(bad, JPEGLossless, pydicom.dcmread(bad))
        assert pool.restarts == 1
        decoded = pool.decode(good, JPEGLossless, pydicom.dcmread(good))
        np.testing.assert_array_equal(decoded, ramp8)  # the next file gets a fresh process
    finally:
        pool.close()


def test_jpeg_lossless_read_through_the_pool_is_exact(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=JPEGLossless)
    np.testing.assert_array_equal(read_radiograph(path).modality_values, ramp12.astype(np.float32))


def test_rle_with_a_damaged_segment_table_is_typed(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=RLELossless)
    data = bytearray(path.read_bytes())
    header = data.index(struct.pack("<I", 2), data.index(b"\xfe\xff\x00\xe0", data.index(b"\xe0\x7f\x10\x00") + 12) + 8)
    data[header + 4:header + 8] = struct.pack("<I", 0x7FFFFFF0)  # first segment far past the end
    path.write_bytes(bytes(data))
    _refused(path, CorruptFileError, "cannot decode RLE Lossless pixel data")


# -- lazy pydicom errors become typed errors that name the element


def test_unknown_vr_names_the_element(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, tags={"Modality": "DX"})
    data = path.read_bytes()
    at = data.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality, explicit VR little endian
    path.write_bytes(data[:at + 4] + b"ZZ" + data[at + 6:])
    _refused(path, CorruptFileError, r"in element \(0008,0060\) Modality", header_too=True)


def test_empty_pixel_data_is_missing_pixel_data(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = _edit(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12), PixelData=b"")
    _refused(path, MissingPixelDataError, "empty pixel data")


@pytest.mark.parametrize(
    ("vr", "descriptor"),
    [("US", struct.pack("<H", 4096)),  # single-valued: pydicom gives an int, not a list
     ("DS", b"a\\b\\c ")],  # non-numeric
)
@pytest.mark.parametrize("sequence", ["VOILUTSequence", "ModalityLUTSequence"])
def test_malformed_lut_descriptor_is_ignored_with_a_note(
    tmp_path: Path, ramp12: np.ndarray, vr: str, descriptor: bytes, sequence: str
) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item[0x00283002] = RawDataElement(0x00283002, vr, len(descriptor), descriptor, 0, False, True)
    item.add_new(0x00283006, "US", list(range(4096)))
    setattr(ds, sequence, Sequence([item]))
    ds.save_as(path)
    radiograph = read_radiograph(path)
    kind = "VOI" if sequence == "VOILUTSequence" else "modality"
    assert f"malformed {kind} LUT sequence ignored" in radiograph.meta.notes
    np.testing.assert_array_equal(radiograph.modality_values, ramp12.astype(np.float32))


# -- non-finite values are an error, never a NaN image


@pytest.mark.parametrize("slope", [b"inf ", b"-inf", b"nan "])
def test_non_finite_rescale_slope_is_refused(tmp_path: Path, ramp12: np.ndarray, slope: bytes) -> None:
    path = _raw(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12), 0x00281053, "DS", slope)
    _refused(path, CorruptFileError, "RescaleSlope .* is not a finite number")


def test_rescale_overflow_is_refused(tmp_path: Path, ramp12: np.ndarray) -> None:
    # 4095 × 1e308 overflows float32 (and float64): the modality values would be infinite
    path = _raw(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12), 0x00281053, "DS", b"1e308 ")
    _refused(path, CorruptFileError, "not finite after the rescale slope 1e\\+308")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_refused(tmp_path: Path, value: float) -> None:
    arr = np.full((32, 40), 0.5, np.float32)
    arr[3, 4] = value
    tifffile.imwrite(tmp_path / "x.tif", arr)
    _refused(tmp_path / "x.tif", CorruptFileError, "float32 samples are not finite")


def test_finite_float_tiff_still_reads(tmp_path: Path) -> None:
    arr = np.linspace(-3, 5, 32 * 40, dtype=np.float32).reshape(32, 40)
    tifffile.imwrite(tmp_path / "x.tif", arr)
    pixels = read_radiograph(tmp_path / "x.tif").pixels
    assert pixels.min() == 0.0 and pixels.max() == 1.0


# -- decompression bombs: refused from the header, the limit named


def test_png_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    Image.new("L", (32, 32)).save(tmp_path / "x.png")
    data = bytearray((tmp_path / "x.png").read_bytes())
    data[16:24] = struct.pack(">II", 9000, 9000)  # 81 megapixels claimed by a 100-byte file
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "x.png").write_bytes(bytes(data))
    _refused(tmp_path / "x.png", ImageSizeError, f"over the {MAX_PIXELS / 1e6:g} megapixel limit",
             header_too=True)


def test_dicom_bomb_is_refused_from_its_header(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = _edit(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12), Rows=8000, Columns=8000)
    _refused(path, ImageSizeError, "64.0 megapixels is over the 50 megapixel limit", header_too=True)


# -- TIFF with damaged tags; YBR_FULL_422 stored uncompressed


def test_tiff_without_image_width_is_typed(tmp_path: Path) -> None:
    Image.new("P", (32, 32)).save(tmp_path / "x.tif")  # palette: read through Pillow
    data = bytearray((tmp_path / "x.tif").read_bytes())
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd:ifd + 2])
    for k in range(count):
        at = ifd + 2 + 12 * k
        if struct.unpack("<H", data[at:at + 2])[0] == 256:  # ImageWidth
            data[at:at + 2] = struct.pack("<H", 65000)  # an unknown tag instead
    (tmp_path / "x.tif").write_bytes(bytes(data))
    # tifffile reads the missing width as 0 (Pillow would raise TypeError("Missing dimensions"))
    _refused(tmp_path / "x.tif", ImageSizeError, "image too small: 0×32", header_too=True)


def test_uncompressed_ybr_full_422_reads_two_bytes_per_pixel(tmp_path: Path) -> None:
    # 4:2:2: Y1 Y2 Cb Cr for every two pixels; a gray ramp has Cb = Cr = 128
    rows, columns = 16, 20
    luma = np.tile(np.arange(columns, dtype=np.uint8) * 12, (rows, 1))
    packed = np.empty((rows, columns // 2, 4), np.uint8)
    packed[..., 0], packed[..., 1] = luma[:, 0::2], luma[:, 1::2]
    packed[..., 2:] = 128
    path = write_dicom(tmp_path / "x.dcm", np.zeros((rows, columns, 3), np.uint8), photometric="RGB",
                       transfer_syntax=ExplicitVRLittleEndian)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = packed.tobytes()  # rows × columns × 2 bytes, not × 3
    ds.save_as(path)
    radiograph = read_radiograph(path)
    np.testing.assert_allclose(radiograph.modality_values, luma.astype(np.float32), atol=1.0)


@pytest.mark.parametrize("extreme", [3.0e38, 1.0e30])
def test_extreme_float_tiff_stays_within_0_1(tmp_path: Path, extreme: float) -> None:
    # bit flips in float samples make huge finite values: the min–max stretch must not overflow
    arr = np.linspace(0.2, 0.4, 32 * 40, dtype=np.float32).reshape(32, 40)
    arr[0, 0], arr[1, 1] = -extreme, extreme
    tifffile.imwrite(tmp_path / "x.tif", arr)
    pixels = read_radiograph(tmp_path / "x.tif").pixels
    assert np.isfinite(pixels).all() and pixels.min() == 0.0 and pixels.max() == 1.0


def test_header_path_skips_large_values_but_checks_their_length(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "OB", b"\x07" * 300_000)  # a private blob the header path never reads
    ds.add_new(0x00090010, "LO", "cxrscreen test")
    ds.save_as(path)
    assert read_header(path).rows == 64
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:data.index(b"\x07" * 64) + 1000])  # the file ends inside the blob
    _refused(cut, CorruptFileError, "truncated DICOM file", header_too=True)


def test_broken_huffman_table_is_refused_before_gdcm(tmp_path: Path, ramp12: np.ndarray) -> None:
    # GDCM aborts the process on a DHT segment whose length does not hold its tables
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=JPEGLossless)
    data = bytearray(path.read_bytes())
    dht = data.index(b"\xff\xc4")
    data[dht + 2:dht + 4] = struct.pack(">H", 2)
    path.write_bytes(bytes(data))
    _refused(path, CorruptFileError, "malformed JPEG header")


def test_unknown_vr_on_pixel_data_names_it(tmp_path: Path, ramp12: np.ndarray) -> None:
    # found by the fuzz bench: Pixel Data's VR bit-flipped from OW to NW
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12)
    data = path.read_bytes()
    at = data.index(b"\xe0\x7f\x10\x00OW")
    path.write_bytes(data[:at + 4] + b"NW" + data[at + 6:])
    _refused(path, CorruptFileError, r"in element \(7FE0,0010\) PixelData")


def test_bits_allocated_32_on_jpeg_lossless_is_refused_before_gdcm(tmp_path: Path, ramp12: np.ndarray) -> None:
    # found by the fuzz bench: GDCM aborts the process on BitsAllocated 32 or 64 in a JPEG file
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=JPEGLossless)
    _edit(path, BitsAllocated=32)
    _refused(path, CorruptFileError, "BitsAllocated 32 in a JPEG Lossless")
