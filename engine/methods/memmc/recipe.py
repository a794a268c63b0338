"""MemMC-MAE training and scoring (imports torch). The method and its choices: ``engine.methods.memmc``.

One phase, "train": the network (:class:`models.memmc_mae.MemMCMAE`) learns to reconstruct the
masked patches of the known normals, with AMAE's MAE trainer (``engine.methods.amae.recipe``:
AdamW, MAE's per-step warm-up and cosine schedule, random resized crops, a fresh random mask per
image and step, sampler and generator states checkpointed), on the engine's loop. A stop request
is honoured at the end of any epoch; a resumed run ends with the same weights as an
uninterrupted one. ``model.pt`` holds the network and the detector's test masks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import FINAL_MODEL, TrainingLoop, load_file
from cxrscreen.engine.methods.amae.recipe import _MAETrainer
from cxrscreen.engine.methods.memmc import SCORE_TYPES, Config, backbone_name
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.models.memmc_mae import MemMCMAE, MemMCScorer, covering_masks

# offsets of the seeds derived from Config.seed (one stream per use)
_SEED_MODEL, _SEED_TRAIN, _SEED_TEST_MASKS = range(3)


def _seed(config: Config, which: int) -> int:
    return config.seed * 1000 + which


def build_model(config: Config) -> MemMCMAE:
    """The network, initialised from the run's seed (MAE's initialisation, M2's for the memories)."""
    torch.manual_seed(_seed(config, _SEED_MODEL))
    return MemMCMAE(**config.model_kwargs())


def draw_test_masks(config: Config, num_patches: int) -> torch.Tensor:
    """The detector's T random masks (T, L) bool, drawn from the run's seed; every patch hidden at least once."""
    generator = torch.Generator().manual_seed(_seed(config, _SEED_TEST_MASKS))
    return covering_masks(config.test_masks, num_patches, config.mask_ratio, generator)


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Train on the known normals; resumes from ``run_dir/checkpoint.pt`` when present.

    Args:
        images: {"normal_train": (N, 1, S, S), ...} preprocessed; only the known normals are used.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    normal = images.get("normal_train")
    if normal is None or len(normal) == 0:
        raise DataError("MemMC-MAE needs known-normal images (--normal); none were given")
    if len(images.get("unlabeled", ())) or len(images.get("abnormal", ())):
        raise DataError("MemMC-MAE learns from known normals only; leave out --unlabeled and --abnormal")
    c = config
    device = resolve_device(c.device)
    loop = TrainingLoop(c, data.file_list_hash(), Path(run_dir), progress, stop)
    model = build_model(c)
    data_t = torch.from_numpy(normal)
    steps = max(1, len(data_t) // c.batch_size)
    trainer = _MAETrainer(model, data_t, c, lr=c.lr, warmup=c.warmup_epochs, epochs=c.epochs,
                          seed=_seed(c, _SEED_TRAIN), steps_per_epoch=steps, masks_per_image=1, augment=True,
                          device=device)
    start, state = loop.resuming("train", c.epochs)
    if state is not None:
        trainer.load_state(state)
    progress.phase("train", steps * c.epochs, epochs=c.epochs, images=len(data_t), device=str(device),
                   backbone=backbone_name(c))

    def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
        return {"loss": trainer.run_epoch(epoch, lambda loss: on_step(1, loss=loss))}

    if not loop.run_epochs("train", c.epochs, steps, run_epoch, trainer.state, start):
        return False
    loop.save_model({
        "config": c.to_dict(), "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "test_masks": draw_test_masks(c, model.num_patches), "summary": loop.done.get("train_summary"),
        "phase_seconds": loop.phase_seconds, "train_seconds": loop.elapsed(), "device": str(device),
    })
    return True


# ---------------------------------------------------------------------- scoring
def _load_saved(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained MemMC-MAE model (training not finished?)")
    saved = load_file(path, "MemMC-MAE model", "train the run again (delete the run folder) or choose another run")
    missing = [k for k in ("config", "model", "test_masks") if k not in saved]
    if missing:
        raise DataError(f"{path}: not a MemMC-MAE model (no {', '.join(missing)}); train the run again or choose "
                        "another run")
    return saved


def load_scorer(run_dir: Path, score_type: str | None = None) -> MemMCScorer:
    """The trained detector (CPU, eval mode): :class:`models.memmc_mae.MemMCScorer`; one score type, "ms-ssim"."""
    if score_type not in (None, *SCORE_TYPES):
        raise ValueError(f"MemMC-MAE score type must be one of {SCORE_TYPES}, got {score_type!r}")
    saved = _load_saved(run_dir)
    c = Config.from_dict(saved["config"])
    model = MemMCMAE(**c.model_kwargs())
    try:
        model.load_state_dict(saved["model"])
        low, high = c.preprocess.output_range
        scorer = MemMCScorer(model, saved["test_masks"], data_range=high - low)
    except (RuntimeError, ValueError) as exc:  # tensors of another shape, or masks that do not fit
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{Path(run_dir) / FINAL_MODEL}: does not fit its own settings ({first}); train the run "
                        "again") from None
    return scorer.eval()


@torch.no_grad()
def evaluate(run_dir: Path, images: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Image scores {"ms-ssim": (N,)} of the run's detector (for evaluation)."""
    scorer = load_scorer(run_dir)
    parts = [scorer(torch.from_numpy(images[i : i + batch_size]))[0].numpy() for i in range(0, len(images), batch_size)]
    return {SCORE_TYPES[0]: np.concatenate(parts) if parts else np.zeros(0, np.float32)}
