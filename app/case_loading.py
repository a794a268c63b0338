"""Decoding a case for the viewer and analysing it with the active detector.

No Qt: these functions run in worker threads and return immutable results that the GUI
thread only reads. The analysis runs the same path as batch scoring (``read_radiograph`` ->
:func:`engine.preprocess.preprocess` -> the detector), so the score shown beside an image is
the one the worklist gets, and its heatmap is the detector's own output, mapped back to the
image frame by :mod:`app.viewer.overlay`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrscreen.app.viewer.display import DisplayImage, Window, apply_thumbnail, build_display_image
from cxrscreen.app.viewer.overlay import apply_inverse_aspect, apply_level_codes, overlay_grid_shape
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.io import RadiographMeta, WindowPreset, read_radiograph
from cxrscreen.engine.preprocess import field_box
from cxrscreen.engine.scoring import prepare, wants_descriptors

THUMBNAIL_SIDE = 64
OVERLAY_MAX_SIDE = 1024


@dataclass(frozen=True)
class CaseAnalysis:
    """A detector's output for one image.

    Attributes:
        model_id: the detector.
        score: the image score.
        percentile: percent of the calibration normals scoring lower.
        heatmap: (S, S) float32 raw heatmap in the detector's input frame.
        levels: (S, S) float32 rank of each heatmap value among normal heatmap pixels, [0, 1].
        overlay_codes: (gh, gw) uint8 level codes on a grid covering the image frame
            (0 where the detector saw nothing).
        aspect: the detector's aspect step (to map contours back).
        box: the exposed field the detector cropped to, (top, bottom, left, right) in image
            pixels; None when its preprocessing does not crop.
        acquisition: the image's descriptor for the acquisition check (:mod:`engine.acquisition`)
            when the detector or its active calibration stores a reference, else None.
    """

    model_id: str
    score: float
    percentile: float
    heatmap: np.ndarray
    levels: np.ndarray
    overlay_codes: np.ndarray
    aspect: str
    box: tuple[int, int, int, int] | None = None
    acquisition: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LoadedCase:
    """A decoded case, ready for the viewer.

    Attributes:
        path: the file.
        meta: its metadata (with the reader's notes).
        image: the display image.
        thumbnail: (h, w) uint8 small rendering.
        analysis: the active detector's output, or None.
        analysis_error: why the analysis failed, or None.
        decode_seconds: time spent reading the file.
        out_of_scope: ``(model id, reason)`` when the detector's out-of-scope gate refused the
            image (then there is no analysis: no score, flag or heatmap), else None.
    """

    path: Path
    meta: RadiographMeta
    image: DisplayImage
    thumbnail: np.ndarray
    analysis: CaseAnalysis | None
    analysis_error: str | None
    decode_seconds: float
    out_of_scope: tuple[str, str] | None = None


def header_windows(presets: tuple[WindowPreset, ...]) -> tuple[Window, ...]:
    """The header's window presets as display windows (invalid ones are left out)."""
    out: list[Window] = []
    for i, p in enumerate(presets):
        label = f"header: {p.name}" if p.name else f"header {i + 1}"
        try:
            out.append(Window(float(p.center), float(p.width), p.function, label))
        except ValueError:
            continue  # e.g. a LINEAR width below 1: unusable, the file's rendering stays
    return tuple(out)


def load_case(path: Path, detector: Detector | None = None, overlay_max_side: int = OVERLAY_MAX_SIDE,
              thumbnail_side: int = THUMBNAIL_SIDE) -> LoadedCase:
    """Read a file and prepare everything the viewer shows.

    Args:
        path: the file.
        detector: the active detector, or None (no analysis).
        overlay_max_side: longest side of the overlay grid.
        thumbnail_side: longest side of the thumbnail.

    Raises:
        RadiographReadError: the file cannot be read (the reason is for the user).
    """
    t0 = time.perf_counter()
    rg = read_radiograph(path)
    seconds = time.perf_counter() - t0
    meta = rg.meta
    image = build_display_image(rg.pixels, rg.modality_values, header_windows(meta.window_presets),
                                meta.bits_stored, meta.photometric)
    analysis, error, out_of_scope = None, None, None
    reason = detector.scope_gate.check(rg) if detector is not None else None
    if reason is not None:
        out_of_scope = (detector.meta.model_id, reason)
    elif detector is not None:
        try:
            analysis = analyse(rg.pixels, detector, overlay_max_side)
        except (ValueError, RuntimeError, MemoryError) as exc:  # onnxruntime raises RuntimeError subclasses
            error = f"{exc.__class__.__name__}: {exc}"
    return LoadedCase(path=Path(path), meta=meta, image=image,
                      thumbnail=apply_thumbnail(rg.pixels, thumbnail_side), analysis=analysis,
                      analysis_error=error, decode_seconds=seconds, out_of_scope=out_of_scope)


def analyse(pixels: np.ndarray, detector: Detector, overlay_max_side: int = OVERLAY_MAX_SIDE) -> CaseAnalysis:
    """Run the detector on one image and map its heatmap to the image frame.

    Args:
        pixels: (H, W) float32 [0, 1] rendering (``Radiograph.pixels``).
        detector: the detector.
        overlay_max_side: longest side of the overlay grid.
    """
    spec = detector.preprocess_spec
    x, acquisition = prepare(pixels, spec, wants_descriptors(detector))
    out = detector.run(x[None, None])
    score = float(out.scores[0])
    heatmap = np.asarray(out.heatmaps[0], dtype=np.float32)
    cal = detector.calibration
    percentile = float(cal.percentile(np.asarray([score]))[0])
    grid = overlay_grid_shape(pixels.shape, overlay_max_side)
    box = field_box(pixels) if spec.crop == "field" else None  # the box preprocess cropped to
    in_image = apply_inverse_aspect(heatmap, pixels.shape, spec.aspect, grid, box)
    valid = ~np.isnan(in_image)
    levels_grid = np.full(in_image.shape, np.nan, dtype=np.float32)
    levels_grid[valid] = cal.heatmap_level(in_image[valid])
    return CaseAnalysis(model_id=detector.meta.model_id, score=score, percentile=percentile,
                        heatmap=heatmap, levels=cal.heatmap_level(heatmap).astype(np.float32),
                        overlay_codes=apply_level_codes(levels_grid), aspect=spec.aspect, box=box,
                        acquisition=acquisition)


def load_thumbnail(path: Path, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A file's thumbnail: its rendering, area-averaged to ``side`` pixels.

    Raises:
        RadiographReadError: the file cannot be read.
    """
    return apply_thumbnail(read_radiograph(path).pixels, side)
