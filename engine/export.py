"""Export a trained run to one ONNX detector file (graph + metadata), checked against PyTorch.

The whole detector (for DDAD all 2K networks and the map computation) is one graph with a
dynamic batch axis; the metadata (see :mod:`engine.detector`) is stored in the file. Before the
file is put in place, onnxruntime runs it on the held-out normal images and on random inputs and
its scores and heatmaps must match PyTorch's within ``tolerance`` (1e-4 by default): absolutely
for values up to 1, relatively above (a reconstruction-error map reaches thousands on random
inputs, where float32 itself rounds by more than 1e-4).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cxrscreen.engine import __version__
from cxrscreen.engine.atomic import atomic_path
from cxrscreen.engine.datasets import TrainingData, load_images
from cxrscreen.engine.detector import (
    HEATMAP_NAME,
    INPUT_NAME,
    METADATA_KEY,
    SCORE_NAME,
    DetectorMetadata,
    NormalCalibration,
)
from cxrscreen.engine.methods import method as get_declaration
from cxrscreen.engine.train import (CALIBRATION_FILE, DATA_FILE, SCOPE_FILE, RunFolderError, calibrate, read_run, scope_metadata,
                                    training_floor_index)

logger = logging.getLogger(__name__)
OPSET = 18

VIEW_SETS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "none": ((1.0, 0.0, 0.0),),
    "framing": ((1.0, 0.0, 0.0), (1.15, 0.0, 0.0), (0.92, 0.0, 0.0),
                (1.0, 0.06, 0.0), (1.0, -0.06, 0.0), (1.0, 0.0, 0.06), (1.0, 0.0, -0.06)),
}
"""Test-time views (:class:`models.views.ViewAverage`): (magnification, shift across, shift down),
fractions of the side. ``framing`` is the identity plus six re-framings inside the geometry the
robust presets train on (``engine.augment``: magnification 0.88–1.45, shift ±10 %): the score is
their mean, which ranks an off-centre or tighter field better (``bench/tta.py``, bench/RESULTS.md)."""


def run_views(config: Any) -> str:
    """The test-time views a run's settings ask for (``none`` for a method without the setting)."""
    return str(getattr(config, "test_time_views", "none") or "none")


class ExportError(RuntimeError):
    """The export failed or the exported graph does not reproduce PyTorch."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    metadata: DetectorMetadata
    max_score_diff: float
    max_heatmap_diff: float
    n_checked: int
    seconds: float


def _held_out_images(run_dir: Path, spec: Any) -> np.ndarray:
    data = TrainingData.from_json(json.loads((run_dir / DATA_FILE).read_text()))
    return load_images(data.normal_calibration, spec)


def _scaled_difference(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| / max(1, |ref|): an absolute difference for values up to 1, relative above."""
    return float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max())


def export_graph(scorer: Any, example: Any, path: Path) -> None:
    """``scorer`` (image batch -> (score, heatmap)) as an ONNX graph at ``path`` with a dynamic
    batch axis; the dynamic shape is given by position, so the scorer's argument may have any name."""
    import torch

    # the exporter prints its steps and logs every graph pass at INFO: keep the console for results
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.onnx.export(
        scorer, (example,), str(path), input_names=[INPUT_NAME], output_names=[SCORE_NAME, HEATMAP_NAME],
        dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
        opset_version=OPSET, external_data=False, verbose=False,
    )


def training_summary(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What a detector's metadata says about its training: counts and content hashes, no paths.

    Hospital folder names often hold patient names, and a detector file travels to other
    machines: the folders trained on are replaced by their image counts and the hash of the file
    lists (``file_list_sha256``, names relative to their common folder), a split file by the
    SHA-256 of its content, the run folder by ``run_sha256`` (its files' names and contents, see
    :func:`folder_sha256`), and any absolute path in the settings (e.g. a reused run) likewise
    by the content hash of what it names. The detector card shows these counts and hashes.
    """
    data = dict(run.get("data", {}))
    source = data.pop("source", {}) or {}
    public_source: dict[str, Any] = {"kind": source.get("kind", "unknown")}
    if source.get("kind") == "split":
        split_file = Path(str(source.get("split_file", "")))
        public_source["split_file_sha256"] = _file_sha256(split_file) if split_file.is_file() else None
        public_source["anomaly_rate"] = source.get("anomaly_rate")
    if isinstance(source.get("hold_out"), dict):  # counts and the kind of patient key, nothing identifying
        public_source["hold_out"] = source["hold_out"]
    return {
        **data,
        "source": public_source,
        "config": {k: _without_path(v) for k, v in run.get("config", {}).items()},
        "train_seconds": run.get("train_seconds"),
        "environment": run.get("environment", {}),
        "run_sha256": folder_sha256(run_dir),
    }


def _without_path(value: Any) -> Any:
    """A setting, with an absolute path replaced by the content hash of what it names."""
    if isinstance(value, str) and value and Path(value).is_absolute():
        p = Path(value)
        digest = folder_sha256(p) if p.is_dir() else _file_sha256(p) if p.is_file() else None
        return f"sha256:{digest}" if digest else "(a path, withheld)"
    return value


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_sha256(folder: Path) -> str:
    """SHA-256 over the relative names and contents of a folder's files (temporary ``.part`` files
    and progress logs excluded), in sorted order: the same run gives the same hash wherever it lies."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.endswith(".part") or rel.endswith(".jsonl") or rel.endswith(".log"):
            continue
        h.update(f"{rel}\0{_file_sha256(path)}\n".encode())
    return h.hexdigest()


def export_run(run_dir: Path, out: Path, score_type: str | None = None, name: str = "",
               tolerance: float = 1e-4, overwrite: bool = False, views: str | None = None) -> ExportReport:
    """Export ``run_dir`` to ``out`` (atomically; refuses to overwrite unless asked).

    ``views``: a :data:`VIEW_SETS` name, or None for the run's own setting; with more than one
    view the graph scores every view and the detector is calibrated again on its held-out normals.
    """
    import onnx
    import torch

    t0 = time.monotonic()
    run_dir, out = Path(run_dir), Path(out)
    run = read_run(run_dir)
    if not isinstance(run, dict):
        raise RunFolderError(f"{run_dir}: run.json is not a JSON object (got {type(run).__name__}); not a training run folder")
    if run.get("status") != "done":
        raise RunFolderError(f"{run_dir}: training is not finished (status {run.get('status')!r}); run `cxrscreen train` again to resume")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    method = get_declaration(run["method"])
    config = method.settings.from_dict(run["config"])
    desc = method.describe(config)
    score_type = score_type or desc["score_type"]
    views = run_views(config) if views is None else views
    if views not in VIEW_SETS:
        raise ValueError(f"test-time views must be one of {sorted(VIEW_SETS)}, got {views!r}")
    scorer = method.hooks().load_scorer(run_dir, score_type).eval()
    spec = config.preprocess
    if len(VIEW_SETS[views]) > 1:
        from cxrscreen.models.views import ViewAverage

        scorer = ViewAverage(scorer, VIEW_SETS[views], spec.output_range).eval()

    held_out = _held_out_images(run_dir, spec)
    if score_type == desc["score_type"] and views == "none" and (run_dir / CALIBRATION_FILE).is_file():
        calibration = NormalCalibration.from_dict(json.loads((run_dir / CALIBRATION_FILE).read_text()))
    else:  # another score type or views (or a run without calibration.json): its own calibration, floor included
        data = TrainingData.from_json(json.loads((run_dir / DATA_FILE).read_text()))
        floor_paths = [data.normal_train[i] for i in training_floor_index(len(data.normal_train))]
        calibration = calibrate(scorer, held_out, load_images(floor_paths, spec) if floor_paths else None)

    if (run_dir / SCOPE_FILE).is_file():
        scope = json.loads((run_dir / SCOPE_FILE).read_text())
    else:  # a run trained before the gate existed: fit its model now from the run's file lists
        data = TrainingData.from_json(json.loads((run_dir / DATA_FILE).read_text()))
        scope = scope_metadata(data)

    training = training_summary(run, run_dir)
    if views != "none":
        training["test_time_views"] = {"name": views, "views": [list(v) for v in VIEW_SETS[views]]}
    meta = DetectorMetadata(
        method=run["method"],
        backbone=desc["backbone"],
        score_type=score_type if views == "none" else f"{score_type}, mean of {len(VIEW_SETS[views])} views",
        preprocess=spec,
        calibration=calibration,
        training=training,
        name=name or f"{run['method'].upper()} {desc['backbone']} ({score_type})",
        software={"cxrscreen": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "opset": str(OPSET)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        scope=scope,
    )

    ds, dh, n_checked = write_detector(scorer, meta, held_out, out, tolerance=tolerance,
                                       heatmap_tolerance=method.heatmap_tolerance, overwrite=overwrite)
    return ExportReport(out, meta, ds, dh, n_checked, time.monotonic() - t0)


def write_detector(scorer: Any, meta: DetectorMetadata, held_out: np.ndarray, out: Path, tolerance: float = 1e-4,
                   heatmap_tolerance: float = 0.0, overwrite: bool = False) -> tuple[float, float, int]:
    """``scorer`` as an ONNX detector file at ``out`` (atomically), with ``meta`` stored in it.

    Before the file is put in place, onnxruntime runs it on ``held_out`` plus random inputs in
    the input range (batch sizes 1 and N) and must match PyTorch within ``tolerance`` (scores)
    and ``max(tolerance, heatmap_tolerance)`` (heatmaps); nothing is written otherwise.
    Returns the largest score and heatmap differences and the number of images checked.
    """
    import onnx
    import onnxruntime as ort
    import torch

    spec = meta.preprocess
    example = torch.from_numpy(held_out[:2] if len(held_out) >= 2 else np.zeros((2, 1, spec.size, spec.size), np.float32))
    with atomic_path(out, overwrite=overwrite) as tmp, contextlib.redirect_stdout(io.StringIO()):
        export_graph(scorer, example, tmp)
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
        model.doc_string = f"cxrscreen detector {meta.name} ({meta.model_id})"
        onnx.save(model, str(tmp))

        # parity: the held-out normals plus random inputs in the input range, batch sizes 1 and N
        rng = np.random.default_rng(0)
        low, high = spec.output_range
        check = np.concatenate([held_out, rng.uniform(low, high, size=(4, 1, spec.size, spec.size)).astype(np.float32)])
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref_s, ref_h = (t.numpy() for t in scorer(torch.from_numpy(check)))
        got_s, got_h = session.run([SCORE_NAME, HEATMAP_NAME], {INPUT_NAME: check})
        one_s, one_h = session.run([SCORE_NAME, HEATMAP_NAME], {INPUT_NAME: check[:1]})
        ds = float(max(np.abs(got_s - ref_s).max(), np.abs(one_s - ref_s[:1]).max()))
        dh = float(max(np.abs(got_h - ref_h).max(), np.abs(one_h - ref_h[:1]).max()))
        # absolute for values up to 1, relative above: float32 itself resolves a value of 2,000
        # (a rec map on a random input) only to 1e-4, so an absolute bound there tests rounding
        worst = max(_scaled_difference(got_s, ref_s), _scaled_difference(one_s, ref_s[:1]))
        worst_map = max(_scaled_difference(got_h, ref_h), _scaled_difference(one_h, ref_h[:1]))
        map_tolerance = max(tolerance, heatmap_tolerance)  # a method's ill-conditioned map (its declaration)
        if not (worst <= tolerance and worst_map <= map_tolerance):
            raise ExportError(f"exported graph differs from PyTorch: max |Δscore| {ds:.2e}, max |Δheatmap| {dh:.2e}, "
                              f"largest |Δ| / max(1, |value|) {worst:.2e} for scores (tolerance {tolerance:.0e}), "
                              f"{worst_map:.2e} for heatmaps (tolerance {map_tolerance:.0e}); nothing was written")
    return ds, dh, len(check)
