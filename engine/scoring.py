"""Scoring files with a detector: read → preprocess → batch → onnxruntime, in input order.

Decoding runs in a small thread pool ahead of inference (Pillow, pydicom's decoders and numpy
release the GIL), so reading and the network overlap. A file that cannot be read yields a result
with its reason instead of stopping the run: the reader raises only typed errors, and decoders
that could abort or panic run where that costs one file (:mod:`engine.io.decoders`). Every image passes the detector's out-of-scope gate
(:mod:`engine.scope`) first: one that is no frontal chest radiograph like the detector's gets
its reason in ``out_of_scope`` and no score. Torch-free: `cxrscreen score`, `cxrscreen eval` and
the desktop app's worker all use :func:`iter_scores`.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from cxrscreen.engine.acquisition import DESCRIPTOR_SPEC, descriptor, descriptor_of_geometry
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.io import RadiographReadError, read_radiograph
from cxrscreen.engine.preprocess import PreprocessSpec, finish, geometry, preprocess, same_geometry
from cxrscreen.engine.scope import ScopeGate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    """One file's outcome.

    Attributes:
        path: the file.
        score: the image score, or None when the file could not be read.
        percentile: percent of calibration normals scoring below (ties half), or None.
        heatmap: (S, S) float32 anomaly map when requested, else None.
        error: why the file could not be scored, else None.
        out_of_scope: why the image is not one the detector's score means anything for (see
            :mod:`engine.scope`), else None; such a result has no score and is neither
            flagged nor not flagged.
        acquisition: the image's detail descriptor for the acquisition check
            (:func:`engine.acquisition.descriptor`) when it was asked for (by default: when the
            detector or its active site calibration stores a reference), else None.
    """

    path: Path
    score: float | None
    percentile: float | None
    heatmap: np.ndarray | None = None
    error: str | None = None
    out_of_scope: str | None = None
    acquisition: tuple[float, ...] | None = None


@dataclass(frozen=True)
class _OutOfScope:
    reason: str


@dataclass(frozen=True)
class _Loaded:
    image: np.ndarray
    acquisition: tuple[float, ...] | None


def prepare(pixels: np.ndarray, spec: PreprocessSpec, describe: bool) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """An image's model input and, with ``describe``, its acquisition descriptor
    (:mod:`engine.acquisition`); cropped and resized once for both when the detector's geometry is
    the descriptor's (the robust presets). Batch scoring and the viewer both call it."""
    if not describe:
        return preprocess(pixels, spec), None
    if same_geometry(spec, DESCRIPTOR_SPEC):
        resized = geometry(pixels, spec)
        return finish(resized, spec), tuple(float(v) for v in descriptor_of_geometry(resized))
    return preprocess(pixels, spec), tuple(float(v) for v in descriptor(pixels))


def wants_descriptors(detector: Detector) -> bool:
    """Whether the detector, or its active calibration, stores a reference to check descriptors against."""
    return detector.acquisition_reference is not None or detector.calibration.acquisition is not None


def _load(path: Path, detector: Detector, gate: ScopeGate | None, describe: bool = False) -> _Loaded | str | _OutOfScope:
    """The preprocessed image (with its acquisition descriptor when ``describe``), the reason it
    cannot be scored (one bad file never stops a run), or why it is out of the detector's scope."""
    try:
        radiograph = read_radiograph(path)
        reason = gate.check(radiograph) if gate is not None else None
        if reason is not None:
            return _OutOfScope(reason)
        return _Loaded(*prepare(radiograph.pixels, detector.preprocess_spec, describe))
    except RadiographReadError as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - a preprocessing bug must not stop a worklist
        logger.exception("%s: cannot be scored", path)
        return f"{exc.__class__.__name__}: {exc}"


def iter_scores(
    paths: Iterable[Path],
    detector: Detector,
    batch_size: int = 32,
    workers: int = 2,
    keep_heatmaps: bool = False,
    should_stop: Callable[[], bool] | None = None,
    check_scope: bool = True,
    describe: bool | None = None,
) -> Iterator[list[ScoreResult]]:
    """Score files, yielding one list of results per batch (in input order).

    Args:
        paths: files to score.
        detector: a loaded detector.
        batch_size: images per onnxruntime call.
        workers: decoding threads.
        keep_heatmaps: also return each heatmap.
        should_stop: polled between batches; when it returns True, iteration ends early.
        check_scope: pass every image through the detector's out-of-scope gate (False only
            for benchmarks that measure the network on images known to be in scope).
        describe: give every result its acquisition descriptor (:mod:`engine.acquisition`);
            None: when the detector or its active calibration stores a reference to check it
            against.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gate = detector.scope_gate if check_scope else None
    if describe is None:
        describe = wants_descriptors(detector)
    paths_iter = iter(paths)
    # shut down without waiting when the caller stops early: a decode already running finishes
    # in the background instead of holding up the cancel
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        pending: deque[tuple[Path, Future]] = deque()

        def refill() -> None:
            while len(pending) < 2 * batch_size + workers:
                try:
                    p = Path(next(paths_iter))
                except StopIteration:
                    return
                pending.append((p, pool.submit(_load, p, detector, gate, describe)))

        def stopped() -> bool:
            if should_stop is not None and should_stop():
                for _, fut in pending:
                    fut.cancel()
                return True
            return False

        refill()
        while pending:
            if stopped():
                return
            batch: list[tuple[Path, _Loaded | str | _OutOfScope]] = []
            while pending and len(batch) < batch_size:
                p, fut = pending.popleft()
                # poll the stop request while a large file decodes, so a cancel is never
                # held up by a batch of slow decodes
                while True:
                    try:
                        x = fut.result(timeout=0.05)
                        break
                    except FuturesTimeout:
                        if stopped():
                            return
                batch.append((p, x))
                refill()
            ok = [i for i, (_, x) in enumerate(batch) if isinstance(x, _Loaded)]
            results: list[ScoreResult | None] = [None] * len(batch)
            if ok:
                inputs = np.stack([batch[i][1].image for i in ok])[:, None]
                out = detector.run(inputs)
                pct = detector.calibration.percentile(out.scores)
                for j, i in enumerate(ok):
                    results[i] = ScoreResult(batch[i][0], float(out.scores[j]), float(pct[j]),
                                             out.heatmaps[j] if keep_heatmaps else None,
                                             acquisition=batch[i][1].acquisition)
            for i, (p, x) in enumerate(batch):
                if isinstance(x, _OutOfScope):
                    results[i] = ScoreResult(p, None, None, None, None, out_of_scope=x.reason)
                elif results[i] is None:
                    results[i] = ScoreResult(p, None, None, None, str(x))
            yield [r for r in results if r is not None]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
