"""The onnxruntime detector: metadata, provider choice and reporting, bad files."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from cxrscreen.engine.detector import Detector, DetectorError, nvidia_gpu_present, read_metadata


def test_runs_a_batch_and_reads_metadata(tiny_detector):
    det = Detector(tiny_detector, provider="cpu")
    assert det.provider == "CPUExecutionProvider" and det.provider_note is None
    assert det.meta.method == "test-local-contrast" and det.meta.input_size == 32
    x = np.zeros((3, 1, 32, 32), np.float32)
    x[1, 0, 16, 16] = 1.0  # one bright dot: local contrast
    out = det.run(x)
    assert out.scores.shape == (3,) and out.heatmaps.shape == (3, 32, 32)
    assert out.scores[0] == 0.0 and out.scores[1] > 0.0
    assert out.heatmaps[1].argmax() == 16 * 32 + 16
    np.testing.assert_allclose(out.scores, out.heatmaps.mean(axis=(1, 2)), rtol=1e-6)
    assert read_metadata(tiny_detector).model_id == det.meta.model_id


def test_auto_provider_reports_a_cuda_fallback(tiny_detector):
    det = Detector(tiny_detector, provider="auto")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert det.provider == "CPUExecutionProvider" and det.provider_note is None
    elif det.provider != "CUDAExecutionProvider":  # onnxruntime-gpu on a machine without a usable GPU
        assert det.provider == "CPUExecutionProvider"
        if nvidia_gpu_present():  # a GPU that was not used: said
            assert "CUDA" in det.provider_note
        else:  # no GPU at all: CPU is no fallback, nothing to warn about
            assert det.provider_note is None


def test_requiring_cuda_without_a_gpu_is_a_clear_error(tiny_detector):
    try:
        det = Detector(tiny_detector, provider="cuda")
    except DetectorError as exc:
        assert "CUDA requested" in str(exc)
    else:
        assert det.provider == "CUDAExecutionProvider"


def test_wrong_shapes_and_bad_files(tiny_detector, tmp_path):
    det = Detector(tiny_detector, provider="cpu")
    with pytest.raises(ValueError, match="shape"):
        det.run(np.zeros((1, 1, 64, 64), np.float32))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(DetectorError, match="not a readable ONNX file|no 'cxrscreen.detector'"):
        Detector(junk)
    with pytest.raises(DetectorError, match="no such detector file"):
        Detector(tmp_path / "missing.onnx")
