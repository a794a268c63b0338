"""Every DICOM file shipped inside pydicom: read in agreement with pydicom's pipeline, or refused
with a typed reason, never misread and never an untyped error.

pydicom's own ``get_testdata_files()`` would also try to download pydicom-data; only the files
installed with the package (``pydicom/data/test_files``) are used, so the test runs offline.
The reference is pydicom's pipeline on the first frame: ``pixel_array`` with pydicom's default
decoder choice, then ``apply_modality_lut`` (monochrome), ``apply_color_lut`` (palette) or the
RGB pydicom returns (colour), reduced to luma as our reader does.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

from cxrscreen.engine.io import ImageSizeError, RadiographReadError, read_header, read_radiograph
from cxrscreen.engine.io.processing import apply_luma
from cxrscreen.engine.io.reader import UNEXPECTED

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
FILES = sorted(TEST_FILES.glob("*.dcm"))
# Files pydicom decodes that we refuse on purpose: too small to be a radiograph.
REFUSED_TINY = {
    "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm", "SC_rgb_small_odd.dcm",
    "SC_rgb_small_odd_big_endian.dcm", "SC_rgb_small_odd_jpeg.dcm", "rtdose.dcm",
    "rtdose_1frame.dcm", "rtdose_expb.dcm", "rtdose_expb_1frame.dcm", "rtdose_rle.dcm",
    "rtdose_rle_1frame.dcm",
}


def _reference(path: Path) -> np.ndarray | None:
    """pydicom's pipeline on frame 0 as gray modality values; None when pydicom cannot decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            stored = pixel_array(ds, index=0)
        except Exception:  # noqa: BLE001 - pydicom failing is an outcome, not a test failure
            return None
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        if photometric == "PALETTE COLOR":
            return apply_luma(apply_color_lut(stored, ds)).astype(np.float64)
        if stored.ndim == 3:
            return apply_luma(stored).astype(np.float64)
        return apply_modality_lut(stored, ds).astype(np.float64)


def test_the_installed_test_files_are_there() -> None:
    # pydicom 3 ships about 80 DICOM test files; an empty glob would make the test vacuous
    assert len(FILES) >= 70


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about its own odd files
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_pydicom_test_file_read_or_refused_with_a_reason(path: Path) -> None:
    reference = _reference(path)
    for read in (read_header, read_radiograph):
        try:
            result = read(path)
        except RadiographReadError as exc:
            assert not exc.reason.startswith(UNEXPECTED), exc.reason
            if reference is not None and read is read_radiograph:
                # pydicom decodes it: refusing is only right for the tiny files, by design
                assert path.name in REFUSED_TINY, exc.reason
                assert isinstance(exc, ImageSizeError)
            continue
        if read is read_header:
            continue
        assert reference is not None, "read a file pydicom cannot decode"
        ours = result.modality_values
        assert ours is not None and ours.shape == reference.shape[:2]
        # the same decoders' output through the same arithmetic: equal to float32 rounding
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-3)
        assert np.isfinite(result.pixels).all()
        assert 0.0 <= result.pixels.min() and result.pixels.max() <= 1.0
