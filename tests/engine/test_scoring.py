"""iter_scores: order, unreadable files, heatmaps, and a stop request honoured mid-decode."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cxrscreen.engine import scoring
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.scoring import iter_scores
from cxrscreen.engine.synth import write_study


def test_results_keep_input_order_and_unreadable_files_get_a_reason(tiny_detector, tmp_path):
    images = [im.path for im in write_study(tmp_path / "s", 3, 2, size=64, formats=("png",), seed=0)]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths = [images[0], tmp_path / "bad.png", *images[1:]]
    det = Detector(tiny_detector, provider="cpu")
    results = [r for batch in iter_scores(paths, det, batch_size=2, keep_heatmaps=True) for r in batch]
    assert [r.path for r in results] == paths
    bad = results[1]
    assert bad.score is None and bad.percentile is None and bad.error
    good = [r for r in results if r.score is not None]
    assert len(good) == 5 and all(r.heatmap.shape == (32, 32) for r in good)
    np.testing.assert_allclose([r.score for r in good], [r.heatmap.mean() for r in good], rtol=1e-5)


def test_stop_is_honoured_while_a_slow_file_decodes(tiny_detector, tmp_path, monkeypatch):
    images = [im.path for im in write_study(tmp_path / "s", 4, 0, size=64, formats=("png",), seed=1)]
    real_load = scoring._load

    def slow_load(path: Path, detector, gate, describe=False):
        time.sleep(3.0)  # a huge DICOM
        return real_load(path, detector, gate, describe)

    monkeypatch.setattr(scoring, "_load", slow_load)
    det = Detector(tiny_detector, provider="cpu")
    t0 = time.monotonic()
    stop_at = t0 + 0.3
    batches = list(iter_scores(images, det, batch_size=4, workers=1, should_stop=lambda: time.monotonic() > stop_at))
    assert batches == []
    assert time.monotonic() - t0 < 1.5  # not the 3 s decode, let alone four of them
