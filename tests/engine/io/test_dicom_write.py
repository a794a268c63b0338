"""write_dicom: every transfer syntax round-trips through pydicom, and bad arguments are named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from cxrscreen.engine.io import WindowPreset
from cxrscreen.engine.io.dicom_write import write_dicom

LOSSLESS = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
            RLELossless, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless]


@pytest.mark.parametrize("syntax", LOSSLESS, ids=lambda u: u.name)
def test_lossless_syntaxes_round_trip_exactly_through_pydicom(
    tmp_path: Path, ramp12: np.ndarray, syntax: str
) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.BitsStored == 12 and ds.Rows == 64 and ds.Columns == 80
    np.testing.assert_array_equal(ds.pixel_array, ramp12)


@pytest.mark.parametrize("syntax", [JPEG2000, JPEGBaseline8Bit], ids=lambda u: u.name)
def test_lossy_syntaxes_are_close_and_marked_lossy(
    tmp_path: Path, ramp8: np.ndarray, syntax: str
) -> None:
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", ramp8, transfer_syntax=syntax))
    assert ds.LossyImageCompression == "01"
    error = np.abs(ds.pixel_array.astype(int) - ramp8).max()
    assert error <= 8  # a smooth ramp survives 10:1 JPEG 2000 and quality-95 JPEG


def test_defaults_make_a_dx_for_presentation_with_fresh_uids(tmp_path: Path, ramp8: np.ndarray) -> None:
    a = pydicom.dcmread(write_dicom(tmp_path / "a.dcm", ramp8))
    b = pydicom.dcmread(write_dicom(tmp_path / "b.dcm", ramp8))
    assert a.SOPClassUID.name == "Digital X-Ray Image Storage - For Presentation"
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.StudyInstanceUID != b.StudyInstanceUID
    assert (a.Modality, a.PhotometricInterpretation, a.PresentationLUTShape) == ("DX", "MONOCHROME2", "IDENTITY")
    assert a.preamble == b"\x00" * 128


def test_monochrome1_gets_presentation_lut_shape_inverse(tmp_path: Path, ramp8: np.ndarray) -> None:
    # PS3.3 C.8.11.3: INVERSE shall be used with MONOCHROME1.
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", ramp8, photometric="MONOCHROME1"))
    assert (ds.PhotometricInterpretation, ds.PresentationLUTShape) == ("MONOCHROME1", "INVERSE")


def test_windows_rescale_and_tags_are_written(tmp_path: Path, ramp12: np.ndarray) -> None:
    windows = [WindowPreset(2000, 4000, "soft"), WindowPreset(1000, 500, "bone")]
    path = write_dicom(tmp_path / "x.dcm", ramp12, bits_stored=12, window=windows,
                       rescale=(-1.0, 4095.0),
                       tags={"PatientID": "P1", "ImagerPixelSpacing": [0.2, 0.2], "ViewPosition": None})
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.WindowCenter] == [2000, 1000]
    assert [float(v) for v in ds.WindowWidth] == [4000, 500]
    assert list(ds.WindowCenterWidthExplanation) == ["soft", "bone"]
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (-1.0, 4095.0)
    assert ds.PatientID == "P1" and [float(v) for v in ds.ImagerPixelSpacing] == [0.2, 0.2]
    assert "ViewPosition" not in ds  # None deletes


def test_for_processing_intent_switches_the_sop_class(tmp_path: Path, ramp8: np.ndarray) -> None:
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", ramp8,
                                     tags={"PresentationIntentType": "FOR PROCESSING"}))
    assert ds.SOPClassUID.name == "Digital X-Ray Image Storage - For Processing"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian], ids=lambda u: u.name)
def test_no_preamble_writes_a_bare_data_set(tmp_path: Path, ramp8: np.ndarray, syntax: str) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp8, transfer_syntax=syntax, preamble=False)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM" and raw[:2] == b"\x08\x00"  # starts with group 0x0008
    ds = pydicom.dcmread(path, force=True)
    assert "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding == (
        syntax == ImplicitVRLittleEndian, True)
    assert ds.PixelData == ramp8.tobytes()


def test_multi_frame_and_rgb_shapes(tmp_path: Path, ramp8: np.ndarray, rgb8: np.ndarray) -> None:
    frames = np.stack([ramp8, ramp8 // 2, 255 - ramp8])
    ds = pydicom.dcmread(write_dicom(tmp_path / "m.dcm", frames, transfer_syntax=RLELossless))
    assert ds.NumberOfFrames == 3
    np.testing.assert_array_equal(ds.pixel_array, frames)
    ds = pydicom.dcmread(write_dicom(tmp_path / "c.dcm", rgb8, photometric="RGB"))
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (3, "RGB")
    np.testing.assert_array_equal(ds.pixel_array, rgb8)


def test_rgb_jpeg_baseline_is_declared_ybr_full_422(tmp_path: Path, rgb8: np.ndarray) -> None:
    ds = pydicom.dcmread(write_dicom(tmp_path / "c.dcm", rgb8, photometric="RGB",
                                     transfer_syntax=JPEGBaseline8Bit))
    assert ds.PhotometricInterpretation == "YBR_FULL_422"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixels": np.zeros((20, 20), dtype=np.float32)}, "uint8 or uint16, got float32"),
        ({"pixels": np.zeros((20,), dtype=np.uint8)}, r"\(H, W\) or \(frames, H, W\), got \(20,\)"),
        ({"photometric": "YBR_FULL"}, "'YBR_FULL'"),
        ({"bits_stored": 12}, "bits_stored must be in 1..8 for uint8, got 12"),
        ({"pixels": np.full((20, 20), 300, dtype=np.uint16), "bits_stored": 8},
         "pixel value 300 does not fit in bits_stored=8"),
        ({"transfer_syntax": "1.2.840.10008.1.2.4.100"}, "1.2.840.10008.1.2.4.100"),  # MPEG2
        ({"pixels": np.zeros((20, 20), dtype=np.uint16), "transfer_syntax": JPEGBaseline8Bit},
         "8-bit pixels only, got uint16"),
        ({"transfer_syntax": RLELossless, "preamble": False}, "cannot declare RLE Lossless"),
        ({"window": (40, 400)}, r"WindowPreset .* got \(40, 400\)"),
        ({"window": [WindowPreset(1, 10), WindowPreset(1, 10, function="SIGMOID")]},
         "one VOILUTFunction"),
        ({"rescale": (0.0, 1.0)}, "non-zero"),
        ({"tags": {"NotAKeyword": 1}}, "'NotAKeyword'"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    args = {"pixels": np.zeros((20, 20), dtype=np.uint8), **kwargs}
    with pytest.raises(ValueError, match=message):
        write_dicom(tmp_path / "x.dcm", **args)
    assert not (tmp_path / "x.dcm").exists()
