"""Method-agnostic training driver: run folder, data loading, resume, calibration, summary.

A run folder holds:
    run.json          method, settings, data summary, status ("running", "stopped", "done", "failed")
    data.json         the file lists (normal_train, normal_calibration, unlabeled, abnormal, skipped;
                      absolute paths, so the folder can be exported from any directory)
    checkpoint.pt     the latest resumable state (written atomically; removed when done)
    model.pt          the trained networks (when done; with the trained settings and data hash)
    calibration.json  held-out normal scores and heatmap quantiles (when done)
    scope.json        the out-of-scope gate's one-class model of the training images, the known
                      normals' acquisition reference and the check of the unlabeled images against
                      it (computed before training, which it warns about; written when done)
    log.jsonl         every progress event
Running the same command again on a stopped or killed run resumes it; a run folder holding a
different method, trained settings or file lists is refused rather than overwritten (run
settings, e.g. the device or the checkpoint interval, may change). A run killed after writing
``model.pt`` but before its "done" status is finished by calibrating, never retrained. The
data roles are checked against the method's declaration before anything is written.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrscreen.engine import __version__
from cxrscreen.engine.atomic import atomic_write_text
from cxrscreen.engine.datasets import DataError, TrainingData, load_images
from cxrscreen.engine.detector import NormalCalibration
from cxrscreen.engine.loop import FINAL_MODEL, load_file, remove_stale_parts, settings_match
from cxrscreen.engine.methods import method as get_declaration
from cxrscreen.engine.methods.base import Problem, generic_problems
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.scope import MIN_FIT, MIN_HELD_OUT, fit_scope_model, thumbnail_features
from cxrscreen.engine.stop import StopRequest

if TYPE_CHECKING:
    from cxrscreen.engine.acquisition import AcquisitionReport

RUN_FILE = "run.json"
DATA_FILE = "data.json"
CALIBRATION_FILE = "calibration.json"
SCOPE_FILE = "scope.json"
SCOPE_MAX_FIT = 2000  # images the gate's model is fitted on at most (a fixed subset beyond)


class RunFolderError(ValueError):
    """The output folder holds something else than this run."""


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    status: str  # "done" or "stopped"
    summary: dict[str, Any]


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a training run folder (no {RUN_FILE})")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: truncated or corrupt run file ({exc}); delete the run folder to train again "
                             "(a checkpoint.pt beside it cannot be resumed without it)") from None
    if not isinstance(run, dict) or "method" not in run:
        raise RunFolderError(f"{path}: not a cxrscreen run file; choose another folder")
    return run


def check_training(method: str, config: Any, data: TrainingData) -> list[Problem]:
    """Everything in the data and settings that training could not work with (``train --check``)."""
    m = get_declaration(method)
    counts = data.role_counts()
    problems = generic_problems(m, config, counts) + list(m.check(config, counts))
    if getattr(config, "device", "auto") == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append(Problem("--device", "--device cuda was asked for but torch sees no usable CUDA GPU; use "
                                                "--device auto or cpu"))
    return problems


def _finished_model(run_dir: Path, config: Any, data_hash: str) -> bool:
    """Whether ``model.pt`` is this run's finished model (its trained settings and data match)."""
    path = run_dir / FINAL_MODEL
    if not path.is_file():
        return False
    try:
        saved = load_file(path, "model", "")
    except ValueError:
        return False
    return saved.get("data_hash") == data_hash and settings_match(saved.get("config"), config)


def _write_run(run_dir: Path, run: dict[str, Any]) -> None:
    atomic_write_text(run_dir / RUN_FILE, json.dumps(run, indent=2, default=str))


def _environment() -> dict[str, Any]:
    import torch

    return {
        "engine_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _recorded_hold_out(run_dir: Path, data: TrainingData, old: dict[str, Any]) -> TrainingData | None:
    """The run's recorded lists when ``data`` names the same images but holds out other normals
    (a run started before the hold-out was drawn by patient): a resumed run keeps its hold-out.
    None when the lists agree or name other images."""
    if old.get("data", {}).get("file_list_sha256") == data.file_list_hash():
        return None
    try:
        recorded = TrainingData.from_json(json.loads((run_dir / DATA_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None

    def same(a: list[Path], b: list[Path]) -> bool:
        return sorted(str(Path(p).absolute()) for p in a) == sorted(str(Path(p).absolute()) for p in b)

    if not (same(recorded.normal_train + recorded.normal_calibration, data.normal_train + data.normal_calibration)
            and same(recorded.unlabeled, data.unlabeled) and same(recorded.abnormal, data.abnormal)):
        return None
    if recorded.file_list_hash() != old.get("data", {}).get("file_list_sha256"):
        return None
    recorded.skipped = data.skipped
    return recorded


def run_training(method: str, config: Any, data: TrainingData, run_dir: Path, progress: Progress,
                 stop: StopRequest | None = None, workers: int = 2) -> TrainOutcome:
    """Train (or resume) a detector into ``run_dir`` and calibrate it on the held-out normals."""
    m = get_declaration(method)
    hooks = m.hooks()
    stop = stop or StopRequest()
    run_dir = Path(run_dir)
    errors = [p for p in check_training(method, config, data) if p.level == "error"]
    if errors:
        raise DataError(f"{errors[0].option}: {errors[0].message}")
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(run_dir)
    data_summary = data.summary()
    run_path = run_dir / RUN_FILE
    if run_path.exists():
        old = read_run(run_dir)
        recorded = _recorded_hold_out(run_dir, data, old)
        if recorded is not None:
            data, data_summary = recorded, recorded.summary()
        if old.get("method") != method or not settings_match(old.get("config"), config) or \
                old.get("data", {}).get("file_list_sha256") != data_summary["file_list_sha256"]:
            raise RunFolderError(f"{run_dir} holds another run (different method, trained settings or data); "
                                 "choose a new folder")
        if recorded is not None:
            progress.message(f"{run_dir}: keeping the calibration hold-out the run was started with "
                             f"({len(recorded.normal_calibration)} known normals)")
        if old.get("status") == "done":
            progress.message(f"{run_dir} is already trained; nothing to do")
            progress.finish("done", run_dir=str(run_dir), already=True)
            return TrainOutcome(run_dir, "done", old)
        run = old
        run["config"] = config.to_dict()  # the trained part is the same; run settings are this session's
    else:
        run = {"method": method, "config": config.to_dict(), "data": data_summary, "created": time.time()}
    run.update(status="running", environment=_environment())
    _write_run(run_dir, run)
    atomic_write_text(run_dir / DATA_FILE, json.dumps(data.to_json(), indent=1))
    for s in data.skipped:
        progress.message(f"skipped unreadable file {s.path}: {s.reason}", level="warning")

    t_start = time.monotonic()
    try:
        spec = config.preprocess
        lists = {"normal_train": data.normal_train, "unlabeled": data.unlabeled, "normal_calibration": data.normal_calibration}
        if data.abnormal:
            lists["abnormal"] = data.abnormal
        total = sum(len(v) for v in lists.values())
        progress.phase("load", total)
        images: dict[str, np.ndarray] = {}
        offset = 0
        for name, paths in lists.items():
            images[name] = load_images(paths, spec, lambda d, n, o=offset: progress.update(o + d), workers=workers)
            offset += len(paths)
        scope = scope_metadata(data, workers)  # before training: its check of the unlabeled set is a warning
        mix = scope.get("unlabeled_acquisition") or {}
        if mix.get("differs"):
            progress.message(str(mix.get("message", "")), level="warning")
        t_train = time.monotonic()
        if _finished_model(run_dir, config, data_summary["file_list_sha256"]):
            progress.message(f"{run_dir / FINAL_MODEL} is this run's finished model (its status was not saved): "
                             "calibrating it, not training again")
            finished = True
        else:
            train_images = {k: v for k, v in images.items() if k != "normal_calibration"}  # never trained on
            finished = hooks.train(config, data, train_images, run_dir, progress, stop)
        run["train_seconds"] = run.get("train_seconds", 0.0) + (time.monotonic() - t_train)
        if not finished:
            run.update(status="stopped")
            _write_run(run_dir, run)
            progress.finish("stopped", run_dir=str(run_dir))
            return TrainOutcome(run_dir, "stopped", run)

        floor_images = training_floor_images(images["normal_train"])
        progress.phase("calibrate", len(data.normal_calibration) + len(floor_images))
        calibration = calibrate(hooks.load_scorer(run_dir), images["normal_calibration"], floor_images)
        atomic_write_text(run_dir / CALIBRATION_FILE, json.dumps(calibration.to_dict()))
        progress.update(len(data.normal_calibration) + len(floor_images), force=True)
        atomic_write_text(run_dir / SCOPE_FILE, json.dumps(scope))
    except BaseException as exc:
        run.update(status="failed" if not isinstance(exc, KeyboardInterrupt) else "stopped", error=str(exc))
        _write_run(run_dir, run)
        raise
    run.update(status="done", wall_seconds_this_session=time.monotonic() - t_start, finished=time.time())
    _write_run(run_dir, run)
    remove_stale_parts(run_dir)
    progress.finish("done", run_dir=str(run_dir), train_seconds=run["train_seconds"])
    return TrainOutcome(run_dir, "done", run)


def scope_metadata(data: TrainingData, workers: int = 2) -> dict[str, Any]:
    """What a detector stores for its out-of-scope gate: ``{"model": ...}``, or ``{"model": None,
    "note": why}`` when there are too few images for the model's threshold to mean anything; and
    ``"acquisition"``: its known normals' detail descriptors for the acquisition check
    (:mod:`engine.acquisition`), when at least :data:`engine.acquisition.MIN_IMAGES` are readable;
    and then ``"unlabeled_acquisition"``: that check of the unlabeled images (at most
    :data:`engine.acquisition.MAX_REFERENCE`, a fixed subset beyond) against the known normals
    (:func:`engine.acquisition.check_unlabeled`), when as many of them are readable.

    The gate's model is fitted on the training normals and the unlabeled images (at most
    :data:`SCOPE_MAX_FIT`, a fixed subset beyond), its threshold set on the held-out calibration
    normals; the descriptors are those of the known normals, training and calibration alike (at
    most :data:`engine.acquisition.MAX_REFERENCE`, a fixed subset beyond). The files are read again
    at full size, each once for both: the gate and the check see the image as the reader gives it,
    not the detector's input.

    Raises:
        DataError: a gate model is due but fewer than 2 training images or no held-out normal are readable.
    """
    from cxrscreen.engine.acquisition import MAX_REFERENCE

    n_fit, n_held = len(data.normal_train) + len(data.unlabeled), len(data.normal_calibration)
    model = n_fit >= MIN_FIT and n_held >= MIN_HELD_OUT
    fit_paths = _fixed_subset(list(data.normal_train) + list(data.unlabeled), SCOPE_MAX_FIT) if model else []
    held_paths = list(data.normal_calibration) if model else []
    normal_paths = _fixed_subset(list(data.normal_train) + list(data.normal_calibration), MAX_REFERENCE)
    unlabeled_paths = _fixed_subset(list(data.unlabeled), MAX_REFERENCE)
    features = _read_features(fit_paths + held_paths, normal_paths + unlabeled_paths, workers)
    if model:
        fit = [features[p][0] for p in fit_paths if p in features]
        held = [features[p][0] for p in held_paths if p in features]
        if len(fit) < 2 or not held:
            raise DataError(f"the out-of-scope model needs at least 2 readable training images and 1 held-out normal; "
                            f"got {len(fit)} and {len(held)}")
        out: dict[str, Any] = {"model": fit_scope_model(np.stack(fit), np.stack(held)).to_dict()}
    else:
        out = {"model": None, "note": f"too few images for one: {n_fit} training images (at least {MIN_FIT}) and "
                                      f"{n_held} held-out normals (at least {MIN_HELD_OUT})"}
    reference, mix = _acquisition_of(normal_paths, unlabeled_paths, features)
    if reference is not None:
        out["acquisition"] = reference.to_dict()
        if mix is not None:
            out["unlabeled_acquisition"] = mix.to_dict()
    return out


def _acquisition_of(normal_paths: list[Path], unlabeled_paths: list[Path],
                    features: dict[Path, tuple[Any, Any]]) -> tuple[Any, Any]:
    """The known normals' acquisition reference and the unlabeled images' check against it, from
    :func:`_read_features`; each None when fewer than :data:`engine.acquisition.MIN_IMAGES` of its
    images are readable (no check without a reference)."""
    from cxrscreen.engine.acquisition import MIN_IMAGES as ACQ_MIN_IMAGES
    from cxrscreen.engine.acquisition import AcquisitionReference, check_unlabeled

    known = [features[p][1] for p in normal_paths if p in features]
    if len(known) < ACQ_MIN_IMAGES:
        return None, None
    reference = AcquisitionReference.from_descriptors(np.stack(known))
    mix = [features[p][1] for p in unlabeled_paths if p in features]
    return reference, (check_unlabeled(np.stack(mix), reference) if len(mix) >= ACQ_MIN_IMAGES else None)


PRECHECK_IMAGES = 200
"""Images of each set that ``train --check`` describes for its first look at the unlabeled set
(``bench/RESULTS.md``, "The unlabeled set acquired otherwise": with 200 of each an off-centre batch
is caught in 96 % of draws, a processing or resolution change in all, with 120 of each 82 %)."""


def unlabeled_precheck(data: TrainingData, at_most: int = PRECHECK_IMAGES, workers: int = 2,
                       cache: Path | None = None) -> "AcquisitionReport | None":
    """``train --check``'s first look at whether the unlabeled images were acquired like the known
    normals: :func:`engine.acquisition.check_unlabeled` on a fixed subset of ``at_most`` of each
    (training itself checks up to :data:`engine.acquisition.MAX_REFERENCE`, before its first step).
    None when either set has too few readable images.

    The app's panel runs ``--check`` whenever a setting changes and enables Train on its answer,
    so the answer is kept under ``cache`` (a folder; None: not kept), keyed by the subsets' paths,
    sizes and modification times and the test's feature, tolerance and level: a settings change
    re-reads no image (each answer is a file of about 1 KB; nothing removes them).
    """
    import hashlib

    from cxrscreen.engine.acquisition import ALPHA, FEATURE_NAME, TOLERANCE, AcquisitionReport

    normals = _fixed_subset(list(data.normal_train) + list(data.normal_calibration), at_most)
    unlabeled = _fixed_subset(list(data.unlabeled), at_most)
    path = None
    if cache is not None:
        key = hashlib.sha256(f"{FEATURE_NAME}|{TOLERANCE}|{ALPHA}|{at_most}".encode())
        for group in (normals, unlabeled):
            key.update(b"\0group")
            for p in group:
                try:
                    st = p.stat()
                    key.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
                except OSError:
                    key.update(f"{p}\0missing\0".encode())
        path = Path(cache) / f"{key.hexdigest()}.json"
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
            return None if kept is None else AcquisitionReport.from_dict(kept)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not kept yet (or unreadable): compute it
    _, report = _acquisition_of(normals, unlabeled, _read_features([], normals + unlabeled, workers))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(None if report is None else report.to_dict()))
        except OSError:
            pass  # a read-only cache: the next check computes it again
    return report


def _fixed_subset(paths: list[Path], at_most: int) -> list[Path]:
    """``paths``, or a fixed random subset of ``at_most`` of them (in their order)."""
    if len(paths) <= at_most:
        return paths
    keep = np.sort(np.random.default_rng(0).choice(len(paths), at_most, replace=False))
    return [paths[i] for i in keep]


def _read_features(thumb_paths: list[Path], descriptor_paths: list[Path],
                   workers: int) -> dict[Path, tuple[np.ndarray | None, np.ndarray | None]]:
    """Each readable file decoded once: (the gate's thumbnail features if asked, its acquisition
    descriptor if asked); unreadable files are left out."""
    from concurrent.futures import ThreadPoolExecutor

    from cxrscreen.engine.acquisition import descriptor
    from cxrscreen.engine.io import RadiographReadError, read_radiograph

    thumbs, descs = set(thumb_paths), set(descriptor_paths)
    paths = list(dict.fromkeys(thumb_paths + descriptor_paths))

    def one(path: Path) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        try:
            pixels = read_radiograph(path).pixels
        except RadiographReadError:
            return None
        return (thumbnail_features(pixels) if path in thumbs else None, descriptor(pixels) if path in descs else None)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return {p: f for p, f in zip(paths, pool.map(one, paths)) if f is not None}


def training_floor_index(n: int) -> np.ndarray:
    """Which of ``n`` training normals are scored for the threshold's floor: all, or a fixed random
    subset of :data:`~engine.detector.TRAINING_FLOOR_MAX` (the same whatever the training seed)."""
    from cxrscreen.engine.detector import TRAINING_FLOOR_MAX

    if n <= TRAINING_FLOOR_MAX:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, TRAINING_FLOOR_MAX, replace=False))


def training_floor_images(normal_train: np.ndarray) -> np.ndarray:
    """The training normals scored for the threshold's floor (:func:`training_floor_index`)."""
    return normal_train[training_floor_index(len(normal_train))]


def scorer_outputs(scorer: Any, images: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A PyTorch scorer's scores (N,) and heatmaps (N, H, W) on preprocessed images, in batches, no gradients."""
    import torch

    scores, heatmaps = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            s, h = scorer(torch.from_numpy(images[i : i + batch_size]))
            scores.append(s.numpy())
            heatmaps.append(h.numpy())
    return np.concatenate(scores), np.concatenate(heatmaps)


def calibrate(scorer: Any, images: np.ndarray, training_normals: np.ndarray | None = None,
              batch_size: int = 128) -> NormalCalibration:
    """Scores and heatmaps of held-out normals -> :class:`NormalCalibration` (PyTorch scorer).

    ``training_normals`` (images the detector trained on), when given, are scored too: their
    scores are the thresholds' floor (:meth:`NormalCalibration.threshold_at_specificity`).
    """
    import dataclasses

    if len(images) == 0:
        raise DataError("no held-out normal images to calibrate on (calibration fraction 0?)")

    scores, heatmaps = scorer_outputs(scorer, images, batch_size)
    cal = NormalCalibration.from_samples(scores, heatmaps, source=f"{len(images)} held-out known normals (never trained on)")
    if training_normals is not None and len(training_normals):
        seen, _ = scorer_outputs(scorer, training_normals, batch_size)
        if np.all(np.isfinite(seen)):
            cal = dataclasses.replace(cal, training_normal_scores=tuple(float(v) for v in np.sort(seen)))
    return cal
