"""Several finished training runs as one detector file: the mean of their standardised scores (issue 22).

Detectors of different methods fail on different acquisition shifts: AMAE's robust preset ranks
dev_test best and loses most on a tighter or off-centre field, DDAD's robust-field preset is the
other way round (``bench/RESULTS.md``, "An ensemble of methods"). Their mean ranks dev_test at
least as well as the better one and holds up better under the shifts. The ensemble is one ONNX
graph (:class:`models.ensemble.ScoreEnsemble` around the members' own scorers), so the app,
``score``, the drift check, site recalibration and the out-of-scope gate treat it as any detector.

What makes it one detector, and is checked (each failure is one :class:`EnsembleError` line):

- every run is a finished ``cxrscreen train`` run folder, none given twice, at least two;
- every member reads its images the same way (one preprocessing, one input);
- every member held out the *same* calibration normals (the engine's hold-out depends only on the
  known-normal list and their patients, not on the method or the seed, so runs on the same
  normals share it; runs from before the hold-out was drawn by patient may not), and
  no member trained on any of them (known normals, unlabeled or abnormal images): the ensemble's
  calibration is then on normals none of its members saw, as for a single detector.

Each member's score is standardised on the training normals all members share (the fixed subset
of at most :data:`~engine.detector.TRAINING_FLOOR_MAX` that :mod:`engine.train` scores for the
threshold's floor): ``(score - median) / IQR``, and its heatmap by the pixels' median and the
spread from median to 99th percentile. The held-out normals are not used for these constants:
they calibrate the ensemble (:func:`engine.train.calibrate`, training-normal floor included).
The out-of-scope gate is the first member's (its model of the images it trained on). Members are
scored as read: a run's test-time views (``engine.export.VIEW_SETS``) are not applied inside an
ensemble, which already averages several networks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cxrscreen.engine import __version__
from cxrscreen.engine.datasets import TrainingData, load_images
from cxrscreen.engine.detector import DetectorMetadata
from cxrscreen.engine.export import OPSET, ExportReport, training_summary, write_detector
from cxrscreen.engine.methods import method as get_declaration
from cxrscreen.engine.train import (DATA_FILE, SCOPE_FILE, RunFolderError, calibrate, read_run, scope_metadata, scorer_outputs,
                                   training_floor_index)

ENSEMBLE_METHOD = "ensemble"


class EnsembleError(ValueError):
    """The runs cannot be one detector (one line, naming the run and what differs)."""


@dataclass(frozen=True)
class Member:
    """One finished run: its method declaration, settings, default score and file lists."""

    run_dir: Path
    run: dict[str, Any]
    method: Any
    config: Any
    backbone: str
    score_type: str
    data: TrainingData


def read_member(run_dir: Path) -> Member:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EnsembleError(f"{run_dir}: not a folder (give `cxrscreen train` run folders)")
    try:
        run = read_run(run_dir)
    except RunFolderError as exc:
        raise EnsembleError(str(exc)) from None
    if not isinstance(run, dict) or run.get("status") != "done":
        status = run.get("status") if isinstance(run, dict) else None
        raise EnsembleError(f"{run_dir}: training is not finished (status {status!r})")
    try:
        decl = get_declaration(str(run["method"]))
        config = decl.settings.from_dict(run["config"])
        desc = decl.describe(config)
        data = TrainingData.from_json(json.loads((run_dir / DATA_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnsembleError(f"{run_dir}: not a readable run folder ({exc.__class__.__name__}: {exc})") from None
    return Member(run_dir, run, decl, config, str(desc["backbone"]), str(desc["score_type"]), data)


def _resolved(paths: list[Path]) -> set[Path]:
    return {Path(p).resolve() for p in paths}


def check_members(members: list[Member]) -> None:
    """Raise :class:`EnsembleError` unless the runs can be one detector (see the module's text)."""
    if len(members) < 2:
        raise EnsembleError(f"an ensemble needs at least two runs, got {len(members)}")
    seen: dict[Path, Path] = {}
    for m in members:
        key = m.run_dir.resolve()
        if key in seen:
            raise EnsembleError(f"{m.run_dir}: given twice")
        seen[key] = m.run_dir
    first = members[0]
    spec = first.config.preprocess
    held_out = _resolved(first.data.normal_calibration)
    if not held_out:
        raise EnsembleError(f"{first.run_dir}: no held-out calibration normals (trained with calibration fraction 0)")
    for m in members:
        if m.config.preprocess != spec:
            raise EnsembleError(f"{m.run_dir}: reads images as {m.config.preprocess.to_dict()}, {first.run_dir.name} as "
                                f"{spec.to_dict()}; members must share one preprocessing (train them with the same "
                                "size, crop and intensity settings)")
        if _resolved(m.data.normal_calibration) != held_out:
            same_normals = _resolved(m.data.normal_train) | _resolved(m.data.normal_calibration) == \
                _resolved(first.data.normal_train) | held_out
            raise EnsembleError(f"{m.run_dir}: held out other calibration normals than {first.run_dir.name}; " + (
                "both have the same known normals, so one was trained before the hold-out was drawn by patient: "
                "train it again" if same_normals else "train every member on the same known normals"))
    for m in members:
        trained = _resolved(m.data.normal_train) | _resolved(m.data.unlabeled) | _resolved(m.data.abnormal)
        overlap = trained & held_out
        if overlap:
            raise EnsembleError(f"{m.run_dir}: trained on {len(overlap)} of the calibration normals the members hold out "
                                f"(e.g. {sorted(overlap)[0].name}); the ensemble could not be calibrated on unseen normals")


def shared_training_normals(members: list[Member]) -> list[Path]:
    """The known normals every member trained on, in the first member's order."""
    common = set.intersection(*(_resolved(m.data.normal_train) for m in members))
    return [p for p in members[0].data.normal_train if Path(p).resolve() in common]


def _scale(values: np.ndarray, spread: float) -> float:
    """``spread`` if positive, else the standard deviation, else 1 (a member constant on its normals)."""
    if np.isfinite(spread) and spread > 0:
        return float(spread)
    sd = float(np.std(values))
    return sd if np.isfinite(sd) and sd > 0 else 1.0


def standardisation(scores: np.ndarray, heatmaps: np.ndarray) -> dict[str, float]:
    """One member's constants from its outputs on normals: score median / IQR, map median / (q99 - median)."""
    q25, q50, q75 = np.quantile(scores, [0.25, 0.5, 0.75])
    pixels = heatmaps.ravel()
    p50, p99 = np.quantile(pixels, [0.5, 0.99])
    return {"score_loc": float(q50), "score_scale": _scale(scores, q75 - q25),
            "map_loc": float(p50), "map_scale": _scale(pixels, p99 - p50)}


def build_ensemble(run_dirs: list[Path], out: Path, name: str = "", tolerance: float = 1e-4,
                   overwrite: bool = False) -> ExportReport:
    """Write the ensemble of ``run_dirs`` to ``out`` (atomically; refuses to overwrite unless asked)."""
    import onnx
    import torch

    from cxrscreen.models.ensemble import ScoreEnsemble

    t0 = time.monotonic()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    members = [read_member(Path(r)) for r in run_dirs]
    check_members(members)
    spec = members[0].config.preprocess
    shared = shared_training_normals(members)
    if not shared:
        raise EnsembleError("the members share no training normals to put their scores on one scale; "
                            "train every member on the same known normals")
    floor_images = load_images([shared[i] for i in training_floor_index(len(shared))], spec)
    held_out = load_images(members[0].data.normal_calibration, spec)

    scorers, constants = [], []
    for m in members:
        scorer = m.method.hooks().load_scorer(m.run_dir, m.score_type).eval()
        scorers.append(scorer)
        scores, maps = scorer_outputs(scorer, floor_images, batch_size=64)
        constants.append(standardisation(scores.astype(np.float64), maps.astype(np.float64)))
    ensemble = ScoreEnsemble(scorers, *([c[k] for c in constants] for k in ("score_loc", "score_scale", "map_loc", "map_scale")))
    ensemble.eval()
    calibration = calibrate(ensemble, held_out, floor_images)
    calibration = dataclasses.replace(calibration, source=(
        f"{len(held_out)} held-out known normals (never trained on by any of the {len(members)} members)"))

    first = members[0]
    scope_file = first.run_dir / SCOPE_FILE
    scope = json.loads(scope_file.read_text()) if scope_file.is_file() else scope_metadata(first.data)
    summaries = [training_summary(m.run, m.run_dir) for m in members]
    member_info = [{"method": m.run["method"], "backbone": m.backbone, "score_type": m.score_type, **c, "training": s}
                   for m, c, s in zip(members, constants, summaries)]
    union = {role: len(set.union(*(_resolved(getattr(m.data, role)) for m in members)))
             for role in ("normal_train", "unlabeled", "abnormal")}
    digest = hashlib.sha256("\n".join(s["run_sha256"] for s in summaries).encode()).hexdigest()
    training = {
        **union,
        "normal_calibration": len(held_out),
        "roles": {"normal": union["normal_train"] + len(held_out), "unlabeled": union["unlabeled"], "abnormal": union["abnormal"]},
        "file_list_sha256": hashlib.sha256("\n".join(s.get("file_list_sha256", "") for s in summaries).encode()).hexdigest(),
        "source": summaries[0]["source"],
        "config": {"ensemble_of": [f"{m.run['method']} {m.backbone} ({m.score_type})" for m in members],
                   "standardisation": f"per member on {len(floor_images)} shared training normals: score (s - median) / IQR, "
                                      "heatmap (h - median) / (q99 - median); ensemble = mean"},
        "train_seconds": float(sum(float(s.get("train_seconds") or 0.0) for s in summaries)),
        "member_runs": member_info,
        "run_sha256": digest,
    }
    titles = " + ".join(m.run["method"].upper() for m in members)
    meta = DetectorMetadata(
        method=ENSEMBLE_METHOD,
        backbone=" + ".join(f"{m.run['method']} {m.backbone}" for m in members),
        score_type="mean of standardised " + " + ".join(m.score_type for m in members),
        preprocess=spec,
        calibration=calibration,
        training=training,
        name=name or f"Ensemble {titles}",
        software={"cxrscreen": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "opset": str(OPSET)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        scope=scope,
    )
    # parity in each member's own units: a member's difference of ``tolerance`` is tolerance / scale
    # once standardised (a member whose normals spread over 1e-3 turns float32 rounding into 1e-3)
    score_tolerance = tolerance * max(1.0, *(1.0 / c["score_scale"] for c in constants))
    map_tolerance = max(tolerance, *(m.method.heatmap_tolerance for m in members)) * max(
        1.0, *(1.0 / c["map_scale"] for c in constants))
    ds, dh, n_checked = write_detector(ensemble, meta, held_out, out, tolerance=score_tolerance,
                                       heatmap_tolerance=map_tolerance, overwrite=overwrite)
    return ExportReport(out, meta, ds, dh, n_checked, time.monotonic() - t0)
