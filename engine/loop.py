"""The training loop every method runs on: phases of epochs, checkpoints, resume, stop, progress.

A method's ``train`` hook builds a :class:`TrainingLoop` and runs its phases through it: each
phase is ``epochs`` calls of ``run_epoch(epoch, on_step)`` (the method's code: one pass of its
optimiser steps, reporting each with ``on_step``) and a ``state()`` callable returning
everything needed to continue (networks, optimisers, samplers, random generator states). The
loop owns what is the same for every method:

- checkpoints: one file, ``checkpoint.pt``, written atomically (:mod:`engine.atomic`) at an
  epoch end when ``checkpoint_every_s`` passed and always when stopped; it holds tensors and
  plain Python values only, and every load uses ``torch.load(weights_only=True)`` on the CPU
  (``map_location="cpu"``; the method moves what it needs, generator states stay on the CPU);
- resume: the checkpoint names its phase and epoch; a phase resumes from there, the finished
  phases' results come back in ``done``; only the *trained* settings and the data hash must
  match (device, threads, checkpoint interval and other run settings may change);
- stop: after the current epoch of any phase, with a checkpoint;
- progress JSON lines (:mod:`engine.progress`): steps within an epoch, and at its end an
  ``epoch_end`` event with the epoch's summary (the method's loss fields);
- the final ``model.pt`` (atomic, with the trained settings and the data hash, so a run killed
  between it and the "done" status is recognised as finished, never retrained) and the removal
  of ``checkpoint.pt`` and of any stale ``*.part`` file.
The calibration hold-out is the driver's (:mod:`engine.train`): the held-out normals never
reach a method's ``train`` hook.

Lightning Fabric (what anomalib builds on) was considered for devices, precision, checkpoints
and, later, multi-GPU. Not used: it is not installed and would be a large dependency for what
the engine needs today (CPU-first, one device); its checkpoint format pickles arbitrary objects
unless restricted, and bitwise-equal resume needs the methods' own generator and sampler states
checkpointed exactly as here anyway, so it would replace little code. Multi-GPU training would
be the reason to revisit this.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pickle
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from cxrscreen.engine.atomic import atomic_path
from cxrscreen.engine.datasets import DataError
from cxrscreen.engine.methods.base import trained_dict
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
CHECKPOINT_FORMAT = 1


class CheckpointError(DataError):
    """A checkpoint or model file that cannot be read (truncated, corrupt, or not plain tensors)."""


def remove_stale_parts(run_dir: Path) -> list[Path]:
    """Delete half-written temporary files (``.NAME.*.part``) a killed write left in ``run_dir``."""
    removed = []
    for p in Path(run_dir).glob(".*.part"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def save_file(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` atomically (a reader sees the old file or the new one)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_file(path: Path, what: str, advice: str) -> dict[str, Any]:
    """A checkpoint or model file, read with ``weights_only=True`` onto the CPU.

    Raises:
        CheckpointError: one line saying what the file is, what is wrong and ``advice``.
    """
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(f"{path}: refused: this {what} holds objects other than tensors and plain values "
                                  f"(loading them could run code); {advice}") from None
        raise CheckpointError(f"{path}: truncated or corrupt {what} ({first}); {advice}") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"{path}: truncated or corrupt {what} ({first}); {advice}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a cxrscreen {what} (a {type(obj).__name__}, not a dict); {advice}")
    return obj


def settings_match(saved: dict[str, Any] | None, config: Any) -> bool:
    """Whether saved settings (full or trained-only) agree with ``config`` on every trained setting.

    A trained setting the saved ones lack (added to the method after they were saved) matches
    when ``config`` has its default, the value the saved run was trained with.
    """
    if not isinstance(saved, dict):
        return False
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return all(saved[k] == v if k in saved else (k in defaults and defaults[k] == v) for k, v in trained_dict(config).items())


class TrainingLoop:
    """One run's phases, checkpoints and resume (see the module docstring).

    Args:
        config: the method's settings (its trained part must match a checkpoint's).
        data_hash: the file-list hash of the run's data.
        extra_match: further checkpoint fields that must match to resume, as ``{key: (value,
            message)}``; a mismatch raises DataError(message).

    Attributes:
        done: results of finished phases (restored from the checkpoint); methods add theirs.
        saved: the checkpoint's extra fields ({} when starting fresh).
        phase_seconds: wall time per phase, over every session.
    """

    def __init__(self, config: Any, data_hash: str, run_dir: Path, progress: Progress, stop: StopRequest) -> None:
        self.config, self.data_hash, self.run_dir = config, data_hash, Path(run_dir)
        self.progress, self.stop = progress, stop
        self.trained = trained_dict(config)
        self.done: dict[str, Any] = {}
        self.phase_seconds: dict[str, float] = {}
        self.saved: dict[str, Any] = {}
        self.resume_phase: str | None = None
        self.resume_epoch, self.resume_state = 0, None
        self.elapsed_before = 0.0
        remove_stale_parts(self.run_dir)
        path = self.run_dir / CHECKPOINT
        if path.exists():
            ckpt = load_file(path, "checkpoint", f"delete {path} to start this run over")
            if not settings_match(ckpt.get("config"), config) or ckpt.get("data_hash") != data_hash:
                raise DataError(f"{path} belongs to a run with other settings or data; use a new output folder")
            self.done = dict(ckpt.get("done", {}))
            self.phase_seconds = dict(ckpt.get("phase_seconds", {}))
            self.resume_phase = ckpt.get("phase", "train")
            self.resume_epoch = int(ckpt["epoch"])
            self.resume_state = ckpt.get("state", ckpt)  # checkpoints before the loop kept the state at the top
            self.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
            self.saved = {k: v for k, v in ckpt.items() if k not in _LOOP_KEYS}
        self.t0 = self.last_checkpoint = time.monotonic()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ resume
    def resuming(self, phase: str, epochs: int | None = None) -> tuple[int, Any]:
        """(first epoch, saved state or None) of ``phase``; reports the resume once."""
        if self.resume_phase != phase:
            return 0, None
        of = f" of {epochs}" if epochs is not None else ""
        self.progress.message(f"resuming from epoch {self.resume_epoch}{of} ({phase})")
        start, state = self.resume_epoch, self.resume_state
        self.resume_phase, self.resume_state = None, None
        return start, state

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, phase: str, epoch: int, state: dict[str, Any], **extra: Any) -> None:
        """Write ``checkpoint.pt`` (atomically): phase, epoch, the phase's state and ``done``."""
        save_file(self.run_dir / CHECKPOINT, {
            "format": CHECKPOINT_FORMAT, "config": self.trained, "data_hash": self.data_hash, "phase": phase,
            "epoch": epoch, "state": state, "done": self.done, "phase_seconds": self.phase_seconds,
            "elapsed_s": self.elapsed(), **self.saved, **extra,
        })

    def save_model(self, payload: dict[str, Any]) -> None:
        """Write ``model.pt`` (atomically, with the data hash) and remove the checkpoint and stale parts."""
        save_file(self.run_dir / FINAL_MODEL, {**payload, "data_hash": self.data_hash})
        (self.run_dir / CHECKPOINT).unlink(missing_ok=True)
        remove_stale_parts(self.run_dir)

    # ------------------------------------------------------------------ epochs
    def run_epochs(self, phase: str, epochs: int, steps_per_epoch: int,
                   run_epoch: Callable[[int, Callable[..., None]], dict[str, float]],
                   state: Callable[[], dict[str, Any]], start: int = 0, **extra: Any) -> bool:
        """Epochs ``start`` .. ``epochs`` - 1 of ``phase``.

        Args:
            run_epoch: ``(epoch, on_step) -> summary``; ``on_step(n=1, **fields)`` reports ``n``
                optimiser steps (thread-safe); the summary's fields (with "loss") go into the
                ``epoch_end`` progress event and into ``done[phase + "_summary"]``.
            state: the phase's resumable state, for checkpoints.
            extra: further checkpoint fields (e.g. DDAD's layout).

        Returns:
            False when stopped (a checkpoint was written), True when every epoch ran.
        """
        count = steps_per_epoch * start
        for epoch in range(start, epochs):
            t = time.monotonic()

            def on_step(n: int = 1, _epoch: int = epoch, **fields: Any) -> None:
                nonlocal count
                with self._lock:
                    count += n
                    self.progress.update(count, epoch=_epoch + 1, epochs=epochs, **fields)

            summary = run_epoch(epoch, on_step)
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + time.monotonic() - t
            self.done[f"{phase}_summary"] = summary
            self.progress.update(count, force=True, epoch=epoch + 1, epochs=epochs, epoch_end=True, **summary)
            if self.stop.requested:
                self.checkpoint(phase, epoch + 1, state(), **extra)
                self.progress.message(f"stopped after {phase} epoch {epoch + 1}; run the same command again to resume")
                return False
            if time.monotonic() - self.last_checkpoint >= self.config.checkpoint_every_s and epoch + 1 < epochs:
                self.checkpoint(phase, epoch + 1, state(), **extra)
                self.last_checkpoint = time.monotonic()
        return True


_LOOP_KEYS = {"format", "config", "data_hash", "phase", "epoch", "state", "done", "phase_seconds", "elapsed_s",
              "modules", "losses", "rec_mse"}
