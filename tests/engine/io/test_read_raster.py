"""Reading PNG, JPEG, TIFF and BMP: exact v/255 and v/65535, gray exactly as Pillow's convert('L')."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from cxrscreen.engine.io import read_header, read_radiograph


def pillow_gray(path: Path) -> np.ndarray:
    """How the DDAD code reads an image: Pillow convert('L'), then / 255."""
    return np.asarray(Image.open(path).convert("L")) / np.float32(255)


@pytest.mark.parametrize("fmt", ["png", "bmp", "tiff"])
def test_lossless_8bit_gray_maps_v_to_v_over_255_exactly(tmp_path: Path, ramp8: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    Image.fromarray(ramp8).save(path)
    r = read_radiograph(path)
    assert r.pixels.dtype == np.float32 and r.modality_values is None
    np.testing.assert_array_equal(r.pixels, ramp8.astype(np.float32) / np.float32(255))
    assert (r.meta.format, r.meta.rows, r.meta.columns, r.meta.bits_stored) == (fmt, 48, 64, 8)


def test_16bit_png_maps_v_to_v_over_65535(tmp_path: Path, ramp12: np.ndarray) -> None:
    values = ramp12 * 16  # 0..65520
    Image.fromarray(values).save(tmp_path / "x.png")
    r = read_radiograph(tmp_path / "x.png")
    np.testing.assert_array_equal(r.pixels, values.astype(np.float32) / np.float32(65535))
    assert r.meta.bits_stored == 16


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_rgb_reads_exactly_as_pillow_convert_l(tmp_path: Path, rgb8: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    Image.fromarray(rgb8).save(path)
    r = read_radiograph(path)
    np.testing.assert_array_equal(r.pixels, pillow_gray(path))
    assert r.meta.photometric == "RGB" and r.meta.samples_per_pixel == 3
    assert "colour converted to gray (ITU-R 601-2 luma)" in r.meta.notes


def test_rgba_ignores_alpha_like_pillow(tmp_path: Path, rgb8: np.ndarray) -> None:
    alpha = np.full(rgb8.shape[:2], 7, dtype=np.uint8)  # nearly transparent: must not darken
    Image.fromarray(np.dstack([rgb8, alpha])).save(tmp_path / "x.png")
    r = read_radiograph(tmp_path / "x.png")
    np.testing.assert_array_equal(r.pixels, pillow_gray(tmp_path / "x.png"))
    assert "alpha channel ignored" in r.meta.notes


def test_gray_jpeg_equals_pillow(tmp_path: Path, ramp8: np.ndarray) -> None:
    Image.fromarray(ramp8).save(tmp_path / "x.jpg", quality=90)
    r = read_radiograph(tmp_path / "x.jpg")
    np.testing.assert_array_equal(r.pixels, pillow_gray(tmp_path / "x.jpg"))
    assert r.meta.format == "jpeg" and r.meta.notes == ()


def test_palette_png_is_converted_to_gray(tmp_path: Path, rgb8: np.ndarray) -> None:
    Image.fromarray(rgb8).quantize(16).save(tmp_path / "x.png")
    r = read_radiograph(tmp_path / "x.png")
    np.testing.assert_array_equal(r.pixels, pillow_gray(tmp_path / "x.png"))
    assert r.meta.photometric == "PALETTE COLOR"


def test_16bit_tiff_and_miniswhite_tiff(tmp_path: Path, ramp12: np.ndarray) -> None:
    values = ramp12 * 16
    tifffile.imwrite(tmp_path / "a.tif", values)
    np.testing.assert_array_equal(read_radiograph(tmp_path / "a.tif").pixels,
                                  values.astype(np.float32) / np.float32(65535))
    # MinIsWhite: 0 is white. Pillow ignores this for 16-bit files; we must not.
    tifffile.imwrite(tmp_path / "b.tif", values, photometric="miniswhite")
    r = read_radiograph(tmp_path / "b.tif")
    np.testing.assert_allclose(r.pixels, 1 - values / 65535.0, atol=1e-6)
    assert r.meta.photometric == "MONOCHROME1"


def test_16bit_rgb_tiff_keeps_16_bit_precision(tmp_path: Path) -> None:
    # Pillow would drop these to 8 bits; luma of (1000, 2000, 3000) is 299 + 1174 + 342 = 1815.
    rgb = np.zeros((20, 20, 3), dtype=np.uint16) + np.array([1000, 2000, 3000], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", rgb, photometric="rgb")
    r = read_radiograph(tmp_path / "x.tif")
    np.testing.assert_allclose(r.pixels, 1815 / 65535, rtol=1e-5)


def test_lzw_tiff_falls_back_to_pillow(tmp_path: Path, ramp8: np.ndarray) -> None:
    # tifffile needs the optional imagecodecs for LZW; Pillow reads it.
    Image.fromarray(ramp8).save(tmp_path / "x.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "x.tif").pixels,
                                  ramp8.astype(np.float32) / np.float32(255))


def test_float_tiff_outside_unit_range_is_stretched_and_noted(tmp_path: Path) -> None:
    values = np.linspace(-100, 300, 20 * 20, dtype=np.float32).reshape(20, 20)
    tifffile.imwrite(tmp_path / "x.tif", values)
    r = read_radiograph(tmp_path / "x.tif")
    np.testing.assert_allclose(r.pixels, (values + 100) / 400, atol=1e-6)
    assert any("min–max" in n for n in r.meta.notes)


def test_content_wins_over_suffix_with_a_note(tmp_path: Path, ramp8: np.ndarray) -> None:
    Image.fromarray(ramp8).save(tmp_path / "x.dcm", format="PNG")  # a PNG named .dcm
    r = read_radiograph(tmp_path / "x.dcm")
    assert r.meta.format == "png"
    assert "content is PNG although the file is named .dcm" in r.meta.notes


def test_read_header_gives_size_and_mode_without_decoding(tmp_path: Path, rgb8: np.ndarray) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(rgb8).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # pixel data cut: only a decode would notice
    meta = read_header(path)
    assert (meta.format, meta.rows, meta.columns, meta.photometric) == ("png", 40, 56, "RGB")


def test_multi_page_tiff_reads_the_first_page(tmp_path: Path, ramp8: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "x.tif", np.stack([ramp8, 255 - ramp8]))
    r = read_radiograph(tmp_path / "x.tif")
    np.testing.assert_array_equal(r.pixels, ramp8.astype(np.float32) / np.float32(255))
    assert r.meta.number_of_frames == 2 and "multi-frame: first of 2 frames shown" in r.meta.notes
