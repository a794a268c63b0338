"""A detector that crops to the exposed field: the app's analysis scores the field and puts the
heatmap back on it (onnxruntime, the app's path)."""
from __future__ import annotations

import numpy as np

from cxrscreen.app.case_loading import analyse
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.preprocess import field_box
from tests.conftest import build_local_contrast_detector


def _chest(h: int = 120, w: int = 100) -> np.ndarray:
    """A textured body (ellipse) on near-black air."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    body = ((x - 0.5) / 0.38) ** 2 + ((y - 0.55) / 0.6) ** 2 < 1.0
    return np.where(body, 0.55 + 0.2 * np.sin(y * 40) * np.cos(x * 7), 0.01).astype(np.float32)


def test_field_crop_detector_scores_the_field_and_overlays_on_it(tmp_path):
    det = Detector(build_local_contrast_detector(tmp_path / "field.onnx", crop="field"))
    img = _chest()
    bordered = np.pad(img, ((30, 10), (20, 25)))  # a black detector border (under 30 % of a side with the air)
    plain, framed = analyse(img, det), analyse(bordered, det)
    assert framed.box == field_box(bordered) and plain.box == field_box(img)
    # the border changes nothing the detector sees (to a pixel of the field's box)
    assert abs(framed.score - plain.score) < 0.1 * plain.score
    top, bottom, left, right = framed.box
    assert 25 <= top <= 35 and 20 <= left <= 35  # the box is on the body, not the border
    codes = framed.overlay_codes  # overlay grid = the image here (small image)
    assert codes.shape == bordered.shape
    assert (codes[:top] == 0).all() and (codes[:, :left] == 0).all() and (codes[:, right:] == 0).all()
    assert codes[top:bottom, left:right].any()
    # a detector without the crop still overlays on the whole frame
    whole = analyse(bordered, Detector(build_local_contrast_detector(tmp_path / "plain.onnx")))
    assert whole.box is None and whole.overlay_codes[:top].any()
