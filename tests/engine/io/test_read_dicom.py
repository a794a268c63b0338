"""Reading generated DICOM files: the grayscale pipeline, polarity, syntaxes, header fields."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
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

from cxrscreen.engine.io import (
    CorruptFileError,
    MissingPixelDataError,
    WindowPreset,
    read_header,
    read_radiograph,
)
from cxrscreen.engine.io.dicom_write import write_dicom
from cxrscreen.engine.io.processing import apply_luma


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out piecewise (independent of the implementation)."""
    x = x.astype(np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5)
    y[x <= c - 0.5 - (w - 1) / 2] = 0.0
    y[x > c - 0.5 + (w - 1) / 2] = 1.0
    return y


def test_monochrome2_without_window_is_min_max_of_stored_values(tmp_path: Path, ramp12: np.ndarray) -> None:
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12))
    assert r.pixels.dtype == np.float32 and r.pixels.shape == (64, 80)
    np.testing.assert_allclose(r.pixels, ramp12 / 4095.0, atol=1e-6)  # min 0, max 4095
    np.testing.assert_array_equal(r.modality_values, ramp12)
    assert any("min–max" in n for n in r.meta.notes)


def test_first_of_several_windows_is_applied_and_all_are_kept(tmp_path: Path, ramp12: np.ndarray) -> None:
    windows = [WindowPreset(1500, 1000, "lung"), WindowPreset(3000, 2000, "bone"), WindowPreset(2048, 4096)]
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, window=windows))
    assert r.meta.window_presets == tuple(windows)
    np.testing.assert_allclose(r.pixels, linear_window(ramp12, 1500, 1000), atol=1e-5)
    assert any("first of 3" in n for n in r.meta.notes)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_function_is_honoured(tmp_path: Path, ramp12: np.ndarray, function: str) -> None:
    window = WindowPreset(2000, 1000, function=function)  # type: ignore[arg-type]
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, window=window))
    x = ramp12.astype(np.float64)
    if function == "LINEAR_EXACT":
        expected = np.clip((x - 2000) / 1000 + 0.5, 0, 1)
    else:
        expected = 1 / (1 + np.exp(-4 * (x - 2000) / 1000))
    np.testing.assert_allclose(r.pixels, expected, atol=1e-5)
    assert r.meta.window_presets[0].function == function


def test_monochrome1_is_inverted_after_the_window(tmp_path: Path, ramp12: np.ndarray) -> None:
    # Inverting *before* VOI would window the negative: a different image for any asymmetric window.
    window = WindowPreset(1000, 800)
    mono2 = read_radiograph(write_dicom(tmp_path / "m2.dcm", ramp12, bits_stored=12, window=window))
    mono1 = read_radiograph(write_dicom(tmp_path / "m1.dcm", ramp12, bits_stored=12, window=window,
                                        photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels, 1 - mono2.pixels, atol=1e-6)
    # Stored 0 is below the window: black in MONOCHROME2, white in MONOCHROME1.
    assert mono2.pixels[0, 0] == 0.0 and mono1.pixels[0, 0] == 1.0


@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [
        ("MONOCHROME1", "INVERSE", True),   # conformant DX: INVERSE restates MONOCHROME1, once
        ("MONOCHROME1", None, True),        # CR (no Presentation LUT Shape): MONOCHROME1 alone
        ("MONOCHROME1", "IDENTITY", True),  # contradictory: MONOCHROME1 wins
        ("MONOCHROME2", "INVERSE", True),   # non-conformant but seen: INVERSE inverts
        ("MONOCHROME2", "IDENTITY", False),
        ("MONOCHROME2", None, False),
    ],
)
def test_presentation_lut_shape_never_double_inverts(
    tmp_path: Path, ramp8: np.ndarray, photometric: str, shape: str | None, inverted: bool
) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp8, photometric=photometric,  # type: ignore[arg-type]
                       tags={"PresentationLUTShape": shape})
    r = read_radiograph(path)
    expected = 1 - ramp8 / 255.0 if inverted else ramp8 / 255.0
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)


def test_negative_rescale_slope_windows_in_modality_units(tmp_path: Path, ramp12: np.ndarray) -> None:
    # modality = 4095 - stored; the window is given in modality units.
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, rescale=(-1.0, 4095.0),
                       window=WindowPreset(1000, 1200))
    r = read_radiograph(path)
    modality = 4095.0 - ramp12
    np.testing.assert_array_equal(r.modality_values, modality)
    np.testing.assert_allclose(r.pixels, linear_window(modality, 1000, 1200), atol=1e-5)


def test_negative_rescale_slope_without_window_uses_the_modality_range(tmp_path: Path, ramp12: np.ndarray) -> None:
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, rescale=(-2.0, 100.0)))
    modality = 100.0 - 2.0 * ramp12  # from 100 down to -8090
    np.testing.assert_allclose(r.pixels, (modality - modality.min()) / np.ptp(modality), atol=1e-6)


def _lut_item(descriptor: list[int], data: list[int], as_ow: bool = False) -> Dataset:
    """A LUT item with explicit VRs (LUT Data as US values, or as OW bytes as many files have)."""
    item = Dataset()
    item.add_new(0x00283002, "US", descriptor)  # LUTDescriptor
    value = np.asarray(data, dtype="<u2").tobytes() if as_ow else data
    item.add_new(0x00283006, "OW" if as_ow else "US", value)  # LUTData
    return item


@pytest.mark.parametrize("as_ow", [False, True], ids=["US", "OW"])
def test_voi_lut_sequence_is_applied_and_preferred_over_windows(tmp_path: Path, as_ow: bool) -> None:
    stored = np.tile(np.arange(16, dtype=np.uint16), (16, 2))  # values 0..15
    # 8 entries from input 4, 8 bits: 0, 36, ..., 252; inputs < 4 -> 0, inputs > 11 -> 252.
    lut = [36 * i for i in range(8)]
    path = write_dicom(tmp_path / "x.dcm", stored, bits_stored=4, window=WindowPreset(8, 4),
                       tags={"VOILUTSequence": Sequence([_lut_item([8, 4, 8], lut, as_ow)])})
    r = read_radiograph(path)
    expected = np.array(lut)[np.clip(stored.astype(int) - 4, 0, 7)] / 255.0
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)
    assert "VOI LUT sequence applied" in r.meta.notes
    assert r.meta.window_presets == (WindowPreset(8, 4),)  # still offered to the viewer


def test_modality_lut_sequence_is_applied(tmp_path: Path) -> None:
    stored = np.tile(np.arange(4, dtype=np.uint16), (16, 4))
    # Modality LUT: stored 0..3 -> 100, 400, 200, 300 (non-monotonic on purpose).
    path = write_dicom(tmp_path / "x.dcm", stored, bits_stored=2,
                       tags={"ModalityLUTSequence": Sequence([_lut_item([4, 0, 16], [100, 400, 200, 300])])})
    r = read_radiograph(path)
    np.testing.assert_array_equal(r.modality_values, np.array([100, 400, 200, 300])[stored])
    np.testing.assert_allclose(r.pixels, (r.modality_values - 100) / 300, atol=1e-6)


def test_for_processing_without_window_says_so(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12,
                       tags={"PresentationIntentType": "FOR PROCESSING"})
    r = read_radiograph(path)
    assert r.meta.presentation_intent == "FOR PROCESSING"
    assert any("FOR PROCESSING" in n and "not a diagnostic" in n for n in r.meta.notes)
    np.testing.assert_allclose(r.pixels, ramp12 / 4095.0, atol=1e-6)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian], ids=lambda u: u.name)
def test_file_without_preamble_reads_like_the_original(tmp_path: Path, ramp12: np.ndarray, syntax: str) -> None:
    kwargs = {"bits_stored": 12, "window": WindowPreset(2000, 3000), "tags": {"PatientID": "NP"}}
    with_preamble = read_radiograph(write_dicom(tmp_path / "a.dcm", ramp12, **kwargs))
    bare = read_radiograph(write_dicom(tmp_path / "b.dcm", ramp12, transfer_syntax=syntax,
                                       preamble=False, **kwargs))
    np.testing.assert_array_equal(bare.pixels, with_preamble.pixels)
    assert bare.meta.patient_id == "NP" and bare.meta.transfer_syntax == syntax
    assert "read without DICOM preamble" in bare.meta.notes


@pytest.mark.parametrize(
    "syntax",
    [RLELossless, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless],
    ids=lambda u: u.name,
)
def test_lossless_compressed_syntaxes_decode_exactly(tmp_path: Path, ramp12: np.ndarray, syntax: str) -> None:
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=syntax,
                                    photometric="MONOCHROME1"))
    np.testing.assert_array_equal(r.modality_values, ramp12)
    np.testing.assert_allclose(r.pixels, 1 - ramp12 / 4095.0, atol=1e-6)
    assert r.meta.transfer_syntax == syntax


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEG2000], ids=lambda u: u.name)
def test_lossy_compressed_syntaxes_decode_closely(tmp_path: Path, ramp8: np.ndarray, syntax: str) -> None:
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", ramp8, transfer_syntax=syntax))
    assert np.abs(r.modality_values - ramp8).max() <= 8


def test_rgb_dicom_reads_as_pillow_luma(tmp_path: Path, rgb8: np.ndarray) -> None:
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", rgb8, photometric="RGB"))
    np.testing.assert_array_equal(r.pixels, apply_luma(rgb8) / np.float32(255))
    assert r.meta.samples_per_pixel == 3 and any("luma" in n for n in r.meta.notes)


def test_ybr_jpeg_dicom_reads_as_gray_close_to_the_rgb_luma(tmp_path: Path, rgb8: np.ndarray) -> None:
    smooth = np.repeat(np.repeat(rgb8[::8, ::8], 8, axis=0), 8, axis=1)  # 8x8 blocks: little JPEG loss
    r = read_radiograph(write_dicom(tmp_path / "x.dcm", smooth, photometric="RGB",
                                    transfer_syntax=JPEGBaseline8Bit))
    assert r.meta.photometric == "YBR_FULL_422"
    assert np.abs(r.pixels * 255 - apply_luma(smooth)).mean() < 3


def test_multi_frame_shows_the_first_frame_and_says_so(tmp_path: Path, ramp8: np.ndarray) -> None:
    frames = np.stack([ramp8, 255 - ramp8, ramp8 // 2])
    for syntax in (ExplicitVRLittleEndian, RLELossless):
        r = read_radiograph(write_dicom(tmp_path / "x.dcm", frames, transfer_syntax=syntax))
        np.testing.assert_array_equal(r.modality_values, ramp8)
        assert r.meta.number_of_frames == 3
        assert "multi-frame: first of 3 frames shown" in r.meta.notes


def test_dx_without_pixel_data_is_a_clear_error(tmp_path: Path, ramp8: np.ndarray) -> None:
    path = write_dicom(tmp_path / "nopix.dcm", ramp8, tags={"PixelData": None})
    with pytest.raises(MissingPixelDataError, match="nopix.dcm: no pixel data: Digital X-Ray"):
        read_radiograph(path)


def test_structured_report_is_missing_pixel_data_in_both_paths(tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR Storage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientID = "SR1"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    for read in (read_radiograph, read_header):
        with pytest.raises(MissingPixelDataError, match="report.dcm: no pixel data: DICOM Structured Report"):
            read(path)


def test_header_fields(tmp_path: Path, ramp12: np.ndarray) -> None:
    tags = {"PatientID": "P7", "PatientName": "DOE^JANE", "AccessionNumber": "A1", "ViewPosition": "AP",
            "StudyDate": "20230405", "ImagerPixelSpacing": [0.15, 0.16], "Modality": "CR"}
    meta = read_header(write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, tags=tags))
    assert (meta.format, meta.rows, meta.columns, meta.bits_stored) == ("dicom", 64, 80, 12)
    assert (meta.patient_id, meta.patient_name, meta.accession_number) == ("P7", "DOE^JANE", "A1")
    assert (meta.view_position, meta.study_date, meta.modality, meta.body_part) == ("AP", "20230405", "CR", "CHEST")
    assert meta.pixel_spacing_mm == (0.15, 0.16) and meta.spacing_source == "ImagerPixelSpacing"
    assert meta.study_uid and meta.series_uid and meta.sop_uid
    assert meta.presentation_intent == "FOR PRESENTATION"


def test_pixel_spacing_is_preferred_and_zero_spacing_is_dropped(tmp_path: Path, ramp8: np.ndarray) -> None:
    both = {"PixelSpacing": [0.1, 0.1], "ImagerPixelSpacing": [0.2, 0.2]}
    meta = read_header(write_dicom(tmp_path / "a.dcm", ramp8, tags=both))
    assert meta.pixel_spacing_mm == (0.1, 0.1) and meta.spacing_source == "PixelSpacing"
    # PixelSpacing 0\0 (seen in the NEMA sample) means "unknown": fall back, and say so.
    zero = {"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.2, 0.2]}
    meta = read_header(write_dicom(tmp_path / "b.dcm", ramp8, tags=zero))
    assert meta.pixel_spacing_mm == (0.2, 0.2) and any("PixelSpacing 0/0 ignored" in n for n in meta.notes)


def test_unusable_window_values_are_skipped_with_a_note(tmp_path: Path, ramp8: np.ndarray) -> None:
    # Width 0 is invalid for LINEAR (w >= 1); the second pair is kept and applied.
    path = write_dicom(tmp_path / "x.dcm", ramp8, tags={"WindowCenter": [50, 128], "WindowWidth": [0, 256]})
    r = read_radiograph(path)
    assert r.meta.window_presets == (WindowPreset(128, 256),)
    assert any("window 1 ignored" in n for n in r.meta.notes)
    np.testing.assert_allclose(r.pixels, linear_window(ramp8, 128, 256), atol=1e-6)


def test_read_header_does_not_decode_pixels(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\x4f\xff\x51")  # the J2K code stream (SOC, SIZ)
    data[start + 60:start + 260] = b"\xa5" * 200  # garbage inside the code stream
    path.write_bytes(bytes(data))
    assert read_header(path).rows == 64  # the header path never touches the pixel data
    with pytest.raises(CorruptFileError, match="JPEG 2000"):
        read_radiograph(path)  # the full path does decode


def test_read_header_matches_read_radiograph_meta(tmp_path: Path, ramp12: np.ndarray) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, window=WindowPreset(2000, 1000))
    header, full = read_header(path), read_radiograph(path).meta
    assert header.notes == full.notes[: len(header.notes)]  # decoding only adds notes
    assert header == type(header)(**{**header.__dict__, "notes": header.notes})
    assert (header.rows, header.window_presets, header.sop_uid) == (full.rows, full.window_presets, full.sop_uid)


def test_pydicom_reads_our_window_like_we_do(tmp_path: Path, ramp12: np.ndarray) -> None:
    # Cross-check with pydicom's own VOI (which outputs in the stored range, 0..4095 here).
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, window=WindowPreset(1800, 900))
    ds = pydicom.dcmread(path)
    reference = pydicom.pixels.apply_voi_lut(ds.pixel_array, ds) / 4095.0
    np.testing.assert_allclose(read_radiograph(path).pixels, reference, atol=1e-5)


def test_signed_pixel_representation(tmp_path: Path) -> None:
    # Stored as two's complement (PixelRepresentation 1): -100..99 must not read as 65436...
    signed = np.tile(np.arange(-100, 100, dtype=np.int16), (16, 1))
    path = write_dicom(tmp_path / "x.dcm", signed.view(np.uint16), tags={"PixelRepresentation": 1})
    r = read_radiograph(path)
    np.testing.assert_array_equal(r.modality_values, signed)
    np.testing.assert_allclose(r.pixels, (signed + 100) / 199.0, atol=1e-6)


def test_engine_io_never_imports_torch(tmp_path: Path, ramp8: np.ndarray) -> None:
    import subprocess
    import sys

    path = write_dicom(tmp_path / "x.dcm", ramp8)
    code = ("import sys; from cxrscreen.engine.io import read_radiograph, scan_folder; "
            f"read_radiograph({str(path)!r}); list(scan_folder({str(tmp_path)!r})); "
            "import cxrscreen.engine.io.dicom_write; from cxrscreen import engine; print('torch' in sys.modules)")
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert done.stdout.strip() == "False"


def test_meta_says_how_the_display_pixels_were_made(tmp_path):
    # polarity and VOI step are reported, so a viewer re-rendering from modality values agrees
    from cxrscreen.engine.io import WindowPreset, read_radiograph
    from cxrscreen.engine.io.dicom_write import write_dicom

    px = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096)
    mono1 = read_radiograph(write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1", bits_stored=12,
                                       window=WindowPreset(2048, 4096)))
    assert mono1.meta.inverted is True and mono1.meta.voi == "window"
    plain = read_radiograph(write_dicom(tmp_path / "m2.dcm", px, bits_stored=12))
    assert plain.meta.inverted is False and plain.meta.voi == "min-max"
    inverse = read_radiograph(write_dicom(tmp_path / "inv.dcm", px, bits_stored=12, tags={"PresentationLUTShape": "INVERSE"}))
    assert inverse.meta.inverted is True
