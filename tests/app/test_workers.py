"""Workers: indexing and decoding threads (with the detector's analysis), the scoring process, cancel."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cxrscreen.app.workers.decoding import DecodeThread
from cxrscreen.app.workers.indexing import IndexingThread
from cxrscreen.app.workers.scoring import DetectorLoadThread, ScoringProcess
from cxrscreen.engine.detector import Detector


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".png", ".dcm"))


def test_indexing_streams_records_and_keeps_unreadable_files(qtbot, mixed_folder: Path) -> None:
    found = []
    thread = IndexingThread([mixed_folder], interval_s=0.0)
    thread.records_found.connect(lambda batch: found.extend(batch))
    with qtbot.waitSignal(thread.indexing_done, timeout=10_000) as done:
        thread.start()
    thread.wait(5000)
    assert done.args == [4, False]  # two images, the cut DICOM, the empty PNG (not the .txt)
    by_name = {r.path.name: r for r in found}
    assert by_name["cut.dcm"].error and by_name["empty.png"].error
    assert sum(r.readable for r in found) == 2 and all(r.meta is not None for r in found if r.readable)


def test_decode_thread_loads_the_case_with_its_heatmap(qtbot, study: Path, tiny_detector: Path) -> None:
    det = Detector(tiny_detector, provider="cpu")
    thread = DecodeThread()
    thread.start()
    try:
        path = _images(study)[0]
        with qtbot.waitSignal(thread.case_loaded, timeout=10_000) as got:
            thread.request_case(path, det, request_id=7)
        case, rid = got.args
        assert rid == 7 and case.path == path
        a = case.analysis
        assert a is not None and a.model_id == det.meta.model_id and a.heatmap.shape == (32, 32)
        assert a.overlay_codes.shape == case.image.shape  # a 128 px image: full-resolution grid
        assert 0.0 <= a.percentile <= 100.0
        # the viewer's score is the batch pipeline's score
        from cxrscreen.engine.scoring import iter_scores
        batch = next(iter_scores([path], det, batch_size=1))
        assert batch[0].score == pytest.approx(a.score, rel=1e-5)
        with qtbot.waitSignal(thread.thumbnail_ready, timeout=10_000) as thumb:
            thread.request_thumbnail(path)
        assert thumb.args[0] == path and thumb.args[1].dtype == np.uint8 and max(thumb.args[1].shape) == 64
        with qtbot.waitSignal(thread.case_failed, timeout=10_000) as failed:
            thread.request_case(study / "missing.png", None, request_id=8)
        assert failed.args[2] == 8 and failed.args[1]
    finally:
        thread.request_stop()
        assert thread.wait(5000)


def test_scoring_streams_batches_and_accepts_more_files(qtbot, study: Path, tiny_detector: Path) -> None:
    det = Detector(tiny_detector, provider="cpu")
    paths = _images(study)
    scoring = ScoringProcess(tiny_detector, det.meta.model_id, "cpu", batch_size=3, decode_workers=1)
    batches: list = []
    providers: list = []
    scoring.batch_scored.connect(lambda mid, b: batches.append((mid, b)))
    scoring.provider_known.connect(lambda p, note: providers.append((p, note)))
    scoring.add_paths(paths[:4])
    with qtbot.waitSignal(scoring.scoring_done, timeout=60_000) as done:
        scoring.start()
        scoring.add_paths(paths[4:] + [study / "missing.dcm"])  # more arrive while it runs
        scoring.close_input()
    assert scoring.isFinished() and not scoring.engine.is_running()
    assert done.args[0] == "done" and done.args[1] == len(paths) + 1
    results = [r for _, b in batches for r in b]
    assert {mid for mid, _ in batches} == {det.meta.model_id}
    assert [r.path for r in results] == paths + [study / "missing.dcm"]  # input order kept
    assert all(r.score is not None for r in results[:-1]) and results[-1].error
    # the engine process computes what the in-process detector computes
    from cxrscreen.engine.scoring import iter_scores
    direct = {r.path: r.score for b in iter_scores(paths, det, batch_size=4) for r in b}
    assert [r.score for r in results[:-1]] == pytest.approx([direct[p] for p in paths], rel=1e-5)
    assert providers and providers[0][0] == "CPUExecutionProvider"


def test_cancel_stops_the_engine_within_a_second(qtbot, study: Path, tiny_detector: Path) -> None:
    scoring = ScoringProcess(tiny_detector, "m", "cpu", batch_size=4, decode_workers=1)
    scoring.add_paths(_images(study) * 300)  # 3,000 files: far more than a second of work
    scoring.close_input()
    first = []
    scoring.batch_scored.connect(lambda mid, b: first.append(b))
    with qtbot.waitSignal(scoring.scoring_done, timeout=60_000) as done:
        scoring.start()
        qtbot.waitUntil(lambda: len(first) > 0, timeout=30_000)
        t0 = time.monotonic()
        scoring.request_stop()
        assert scoring.wait(1000), "the scoring process did not stop within 1 s"
        elapsed = time.monotonic() - t0
    assert done.args[0] == "cancelled" and done.args[1] < 3000
    assert elapsed < 1.0


def test_a_failing_engine_is_reported_with_its_log(qtbot, study: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not_a_detector.onnx"
    bad.write_bytes(b"nope")
    scoring = ScoringProcess(bad, "m", "cpu")
    failed: list = []
    scoring.scoring_failed.connect(failed.append)
    scoring.add_paths(_images(study)[:2])
    scoring.close_input()
    with qtbot.waitSignal(scoring.scoring_done, timeout=60_000) as done:
        scoring.start()
    assert done.args[0] == "failed" and done.args[1] == 0
    assert "not_a_detector.onnx" in failed[0] and "ONNX" in failed[0]


def test_scoring_arguments_are_checked(tiny_detector: Path) -> None:
    with pytest.raises(ValueError):
        ScoringProcess(tiny_detector, "m", "tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ScoringProcess(tiny_detector, "m", batch_size=0)


def test_detector_load_thread_reports_bad_files(qtbot, tmp_path: Path, tiny_detector: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    thread = DetectorLoadThread(bad, "cpu")
    with qtbot.waitSignal(thread.detector_failed, timeout=10_000) as failed:
        thread.start()
    thread.wait(5000)
    assert failed.args[0] == str(bad) and "ONNX" in failed.args[1]
    ok = DetectorLoadThread(tiny_detector, "auto")
    with qtbot.waitSignal(ok.detector_loaded, timeout=10_000) as loaded:
        ok.start()
    ok.wait(5000)
    assert loaded.args[0].meta.model_id


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux-only")
@pytest.mark.parametrize("nice", [0, 7])
def test_worker_thread_priority_follows_worker_nice(monkeypatch, nice: int) -> None:
    """A worker thread gets the module's WORKER_NICE at run time; 0 leaves its priority alone."""
    import os
    import threading

    import cxrscreen.app.workers.base as base

    monkeypatch.setattr(base, "WORKER_NICE", nice)
    before = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []

    def work() -> None:
        base.lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [max(before, nice) if nice > 0 else before]
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # the calling (GUI) thread is untouched
