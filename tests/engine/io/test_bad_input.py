"""Bad input gets a typed error naming the file and a readable reason; nothing else escapes."""
from __future__ import annotations

import builtins
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from cxrscreen.engine.io import (
    CorruptFileError,
    FileAccessError,
    ImageSizeError,
    MissingPixelDataError,
    RadiographReadError,
    UnsupportedFileError,
    read_header,
    read_radiograph,
    scan_folder,
)
from cxrscreen.engine.io.dicom_write import write_dicom

READERS = [read_radiograph, read_header]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height`` (8-bit gray), no image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def jpeg_claiming(size: tuple[int, int], ramp8: np.ndarray) -> bytes:
    """A real small JPEG whose SOF0 marker is patched to claim ``size`` (width, height)."""
    buf = io.BytesIO()
    Image.fromarray(ramp8).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", size[1], size[0])
    return bytes(data)


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize("name", ["empty.dcm", "empty.png", "empty.jpg"])
def test_zero_byte_files(tmp_path: Path, read, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CorruptFileError, match=f"{name}: empty file \\(0 bytes\\)"):
        read(tmp_path / name)


@pytest.mark.parametrize("read", READERS)
def test_random_bytes_named_dcm(tmp_path: Path, read) -> None:
    (tmp_path / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CorruptFileError, match=r"noise.dcm: not a DICOM file \(unrecognised content\)"):
        read(tmp_path / "noise.dcm")


def test_random_bytes_named_png_and_a_short_dcm(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(CorruptFileError, match=r"noise.png: not a PNG file"):
        read_radiograph(tmp_path / "noise.png")
    # Fewer than 132 bytes cannot hold "DICM": say it may be truncated.
    (tmp_path / "short.dcm").write_bytes(b"\x00" * 60)
    with pytest.raises(CorruptFileError, match=r"short.dcm: not a DICOM file \(only 60 bytes"):
        read_radiograph(tmp_path / "short.dcm")


def test_unknown_suffix_with_unknown_content_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UnsupportedFileError, match=r"notes.txt: not an image file we read \(.txt\)"):
        read_radiograph(tmp_path / "notes.txt")


@pytest.mark.parametrize("read", READERS)
def test_directory_named_like_an_image(tmp_path: Path, read) -> None:
    (tmp_path / "x.png").mkdir()
    with pytest.raises(FileAccessError, match=r"x.png: is a folder, not a file"):
        read(tmp_path / "x.png")


def test_missing_file_and_broken_link(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match=r"gone.png: file not found$"):
        read_radiograph(tmp_path / "gone.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileAccessError, match=r"link.png: file not found \(broken link\)"):
        read_radiograph(tmp_path / "link.png")


def test_permission_denied(tmp_path: Path, ramp8: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(ramp8).save(path)

    def deny(file: object, *args: object, **kwargs: object):
        if Path(str(file)) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)  # type: ignore[call-overload]

    # Tests run as root in CI, where chmod 000 does not stop reading: patch open() instead.
    monkeypatch.setattr("cxrscreen.engine.io.reader.open", deny, raising=False)
    with pytest.raises(FileAccessError, match=r"locked.png: permission denied"):
        read_radiograph(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_for_real(tmp_path: Path, ramp8: np.ndarray) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(ramp8).save(path)
    path.chmod(0)
    with pytest.raises(FileAccessError, match=r"locked.png: permission denied"):
        read_radiograph(path)


@pytest.mark.parametrize("read", READERS)
def test_png_claiming_30000_squared_is_rejected_before_decoding(tmp_path: Path, read) -> None:
    (tmp_path / "huge.png").write_bytes(png_header_only(30000, 30000))
    with pytest.raises(ImageSizeError, match=r"huge.png: implausible image size: 30000×30000"):
        read(tmp_path / "huge.png")


@pytest.mark.parametrize("read", READERS)
def test_1x1_images_are_too_small(tmp_path: Path, read) -> None:
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    Image.new("L", (1, 1)).save(tmp_path / "dot.bmp")
    Image.new("L", (1, 1)).save(tmp_path / "dot.jpg")
    for name in ("dot.png", "dot.bmp", "dot.jpg"):
        with pytest.raises(ImageSizeError, match=f"{name}: image too small: 1×1 pixels"):
            read(tmp_path / name)


def test_15_pixels_is_too_small_and_16_is_enough(tmp_path: Path) -> None:
    # The limit is inclusive: 16 is the smallest side (the real 16x16 CR test files pass).
    Image.new("L", (16, 15)).save(tmp_path / "a.png")
    with pytest.raises(ImageSizeError, match="16×15"):
        read_radiograph(tmp_path / "a.png")
    Image.new("L", (16, 16)).save(tmp_path / "b.png")
    assert read_radiograph(tmp_path / "b.png").pixels.shape == (16, 16)


def test_jpeg_claiming_30000_squared_is_rejected(tmp_path: Path, ramp8: np.ndarray) -> None:
    (tmp_path / "huge.jpg").write_bytes(jpeg_claiming((30000, 30000), ramp8))
    with pytest.raises(ImageSizeError, match=r"huge.jpg: implausible image size"):
        read_radiograph(tmp_path / "huge.jpg")


def test_jpeg_over_pillows_bomb_limit_but_within_our_sides_is_rejected(
    tmp_path: Path, ramp8: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow's decompression-bomb limit stays meaningful: lowered here to 100 000 pixels,
    # a 400x400 claim (within our 16384 a side) is refused before any decode.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    (tmp_path / "big.jpg").write_bytes(jpeg_claiming((400, 400), ramp8))
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow warns on open (under 2x the limit)
        with pytest.raises(ImageSizeError, match=r"big.jpg: implausible image size.*decompression-bomb"):
            read_radiograph(tmp_path / "big.jpg")


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(("rows", "columns", "message"),
                         [(30000, 30000, "implausible image size: 30000×30000"),
                          (1, 1, "image too small: 1×1")])
def test_dicom_claimed_sizes_are_rejected_before_decoding(
    tmp_path: Path, ramp8: np.ndarray, read, rows: int, columns: int, message: str
) -> None:
    # Pixel data stays 48x64: only the header lies, so a decode would fail differently.
    path = write_dicom(tmp_path / "claim.dcm", ramp8, tags={"Rows": rows, "Columns": columns})
    with pytest.raises(ImageSizeError, match=f"claim.dcm: {message}"):
        read(path)


def test_truncated_uncompressed_dicom_pixel_data(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "cut.dcm", ramp12, bits_stored=12)
    path.write_bytes(path.read_bytes()[:-1000])  # 64*80*2 = 10240 bytes of pixel data, 1000 cut
    assert read_header(path).rows == 64  # the header is intact
    with pytest.raises(CorruptFileError, match=r"cut.dcm: truncated pixel data \(9240 of 10240 bytes\)"):
        read_radiograph(path)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=lambda u: u.name)
def test_truncated_compressed_dicom_pixel_data(tmp_path: Path, ramp12: np.ndarray, syntax: str) -> None:
    path = write_dicom(tmp_path / "cut.dcm", ramp12, bits_stored=12, transfer_syntax=syntax)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.warns(UserWarning, match="End of file"):  # pydicom's own warning on the cut
        with pytest.raises(CorruptFileError, match=r"cut.dcm: truncated pixel data"):
            read_radiograph(path)


@pytest.mark.parametrize("read", READERS)
def test_dicom_truncated_inside_the_header(tmp_path: Path, ramp8: np.ndarray, read) -> None:
    path = write_dicom(tmp_path / "cut.dcm", ramp8)
    path.write_bytes(path.read_bytes()[:500])  # mid-header: never reported as "no pixel data"
    with pytest.raises(CorruptFileError, match=r"cut.dcm: (truncated DICOM file|incomplete DICOM header)"):
        read(path)


@pytest.mark.parametrize("read", READERS)
def test_dicom_cut_inside_an_element_value_says_so(tmp_path: Path, ramp8: np.ndarray, read) -> None:
    # pydicom keeps a value cut short without complaint; the reader must notice the shortfall.
    path = write_dicom(tmp_path / "cut.dcm", ramp8, tags={"StudyDescription": "X" * 60})
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"X" * 60) + 30])
    with pytest.raises(CorruptFileError, match=r"cut.dcm: truncated DICOM file \(ends inside the header\)"):
        read(path)


def test_every_cut_of_a_dicom_file_gives_a_typed_error(tmp_path: Path, ramp8: np.ndarray) -> None:
    data = write_dicom(tmp_path / "full.dcm", ramp8).read_bytes()
    path = tmp_path / "cut.dcm"
    reasons = set()
    for cut in range(1, len(data), 37):
        path.write_bytes(data[:cut])
        with pytest.raises(RadiographReadError) as info:
            read_radiograph(path)
        assert isinstance(info.value, (CorruptFileError, MissingPixelDataError)), (cut, info.value)
        reasons.add(info.value.reason.split(" (")[0])
    assert "truncated pixel data" in reasons and "truncated DICOM file" in reasons


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_png_and_jpeg(tmp_path: Path, ramp8: np.ndarray, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.kron(ramp8, np.ones((4, 4), dtype=np.uint8))).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert read_header(path).rows == 192  # the header is intact: only the decode fails
    with pytest.raises(CorruptFileError, match=f"cut.{fmt.lower()}: truncated {fmt} data"):
        read_radiograph(path)


def test_corrupt_jpeg_2000_codestream(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "bad.dcm", ramp12, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\x4f\xff\x51")  # J2K SOC + SIZ markers
    data[start: start + 40] = b"\x00" * 40  # destroy the codestream header
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"bad.dcm: cannot decode JPEG 2000"):
        read_radiograph(path)


def test_other_files_still_load_after_bad_ones(tmp_path: Path, ramp8: np.ndarray) -> None:
    (tmp_path / "a_empty.dcm").write_bytes(b"")
    (tmp_path / "b_noise.dcm").write_bytes(np.random.default_rng(2).bytes(1000))
    (tmp_path / "c_huge.png").write_bytes(png_header_only(30000, 30000))
    (tmp_path / "d_folder.png").mkdir()
    Image.fromarray(ramp8).save(tmp_path / "e_good.png")
    write_dicom(tmp_path / "f_good.dcm", ramp8)
    errors = {}
    for name in sorted(p.name for p in tmp_path.iterdir()):
        try:
            read_radiograph(tmp_path / name)
        except RadiographReadError as exc:
            errors[name] = type(exc).__name__
    assert errors == {"a_empty.dcm": "CorruptFileError", "b_noise.dcm": "CorruptFileError",
                      "c_huge.png": "ImageSizeError", "d_folder.png": "FileAccessError"}
    ok = [item.path.name for item in scan_folder(tmp_path) if item.ok]
    assert ok == ["e_good.png", "f_good.dcm"]


@pytest.mark.filterwarnings("ignore:Unknown encoding:UserWarning")  # pydicom, on the noise
def test_bytes_that_merely_start_like_a_bare_data_set_are_not_dicom(tmp_path: Path) -> None:
    # (0008,0005) then an implicit length of 16 and noise: sniffed as a possible bare data set,
    # but nothing real parses out of it, so it must not be "read with force".
    noise = np.random.default_rng(3).bytes(2000)
    (tmp_path / "fake.dcm").write_bytes(b"\x08\x00\x05\x00\x10\x00\x00\x00" + noise)
    with pytest.raises(CorruptFileError, match=r"fake.dcm: (not a DICOM file|malformed or truncated)"):
        read_radiograph(tmp_path / "fake.dcm")
