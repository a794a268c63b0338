"""AMAE training and scoring (imports torch). Settings, paper recipe and deviations: see ``engine.methods.amae``.

Phases, each reported to :class:`engine.progress.Progress` under its own name:
    "pretrain"      MAE self-supervised pre-training on normal ∪ unlabeled (skipped at 0 epochs)
    "stage1"        the MLP head on frozen encoder features, normal vs AnatPaste
    "pseudo-label"  stage 1 scores the unlabeled images; per-class percentile thresholds
    "stage2"        modules A (normal ∪ pseudo-normal) and B (pseudo-abnormal)
A stop request is honoured at the end of any epoch of any phase; the checkpoint then holds the
finished phases' results and the current phase's full state (networks, optimisers, samplers,
random generators), so a resumed run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.engine.augment import AcquisitionAugment
from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import TrainingLoop, load_file
from cxrscreen.engine.methods.amae import FINAL_MODEL, Config, ScoreType, backbone_name
from cxrscreen.engine.methods.amae.anatpaste import anatpaste, lung_mask
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.engine.preprocess import EQUALIZED
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.models.amae import AMAEScorer, MLPHead, Stage1Scorer, pooled_tokens
from cxrscreen.models.mae import LoadReport, MaskedAutoencoder, load_pretrained, partition_masks, random_masks

logger = logging.getLogger(__name__)

# offsets of the seeds derived from Config.seed (one stream per use)
_SEED_MAE, _SEED_HEAD, _SEED_PRETRAIN, _SEED_STAGE1, _SEED_A, _SEED_B, _SEED_TEST_MASKS = range(7)


def _seed(config: Config, which: int) -> int:
    return config.seed * 1000 + which


# ---------------------------------------------------------------------- building blocks
def lr_at(epoch: float, base: float, warmup: int, total: int) -> float:
    """The official MAE schedule (``util/lr_sched.py``): linear warm-up, then half-cycle cosine to 0.

    Args:
        epoch: fractional epoch (epoch + step / steps_per_epoch).
    """
    if epoch < warmup:
        return base * epoch / warmup
    if total <= warmup:
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (total - warmup)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as MAE's ``param_groups_weight_decay``: no decay on biases, norms and tokens."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name in ("cls_token", "mask_token") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def random_resized_crop(x: Tensor, scale: tuple[float, float], generator: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    """Per-image random resized crop of (N, C, S, S) back to S x S (bilinear), torchvision's draw:
    area fraction uniform in ``scale``, aspect log-uniform in ``ratio``, position uniform."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _Sampler:
    """Batches of indices from repeated random permutations of ``n`` items (the remainder of a
    permutation smaller than a batch is dropped); batches of all ``n`` when ``n < batch``."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        if n < 1:
            raise DataError("a training set is empty")
        self.n, self.batch = n, min(batch, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self) -> Tensor:
        if self.pos + self.batch > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state(self, s: dict[str, Any]) -> None:
        self.generator.set_state(s["generator"])
        self.perm, self.pos = s["perm"].clone(), int(s["pos"])


class _MAETrainer:
    """One MAE in training: data, sampler, AdamW, schedule and the mask generator.

    Args:
        masks_per_image: each batch image is reconstructed under this many independent masks.
        augment: random resized crops (pre-training), the acquisition augmentation (stage 2 with
            ``config.augment == "acquisition"``) or none.
    """

    def __init__(self, model: MaskedAutoencoder, data: Tensor, config: Config, *, lr: float, warmup: int, epochs: int,
                 seed: int, steps_per_epoch: int, masks_per_image: int, augment: Literal["crop", "acquisition", "none"],
                 device: torch.device) -> None:
        self.model, self.data, self.config, self.device = model.to(device).train(), data, config, device
        self.lr, self.warmup, self.epochs = lr, warmup, epochs
        self.steps_per_epoch, self.masks_per_image, self.augment = steps_per_epoch, masks_per_image, augment
        self.sampler = _Sampler(len(data), config.batch_size, seed)
        self.mask_generator = torch.Generator().manual_seed(seed + 500_000)
        self.acquisition = None
        if augment == "acquisition":  # its own generator: the masks stay those of an unaugmented run
            self.acquisition = AcquisitionAugment(config.preprocess.output_range,
                                                  photometric=config.preprocess.intensity not in EQUALIZED)
            self.augment_generator = torch.Generator().manual_seed(seed + 700_000)
        fused = device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=lr, betas=config.betas, fused=fused)

    def run_epoch(self, epoch: int, on_step: Callable[[float], None]) -> float:
        """One epoch of ``steps_per_epoch`` steps; returns the mean loss."""
        losses = []
        for s in range(self.steps_per_epoch):
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(epoch + s / self.steps_per_epoch, self.lr, self.warmup, self.epochs)
            x = self.data[self.sampler.next()].to(self.device)
            if self.augment == "crop":
                x = random_resized_crop(x, self.config.crop_scale, self.mask_generator)
            elif self.acquisition is not None:
                x = self.acquisition(x, self.augment_generator)
            x = x.repeat(self.masks_per_image, 1, 1, 1)
            mask = random_masks(len(x), self.model.num_patches, self.config.mask_ratio, self.mask_generator, self.device)
            out = self.model(x, mask)
            loss = self.model.loss(x, out.pred, mask)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
            on_step(float(losses[-1]))
        return float(torch.stack(losses).mean())

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state(), "masks": self.mask_generator.get_state(),
                **({"augment": self.augment_generator.get_state()} if self.acquisition is not None else {})}

    def load_state(self, s: dict[str, Any]) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.sampler.load_state(s["sampler"])
        self.mask_generator.set_state(s["masks"])
        if self.acquisition is not None:
            self.augment_generator.set_state(s["augment"])


# ---------------------------------------------------------------------- pseudo-labels
@dataclass(frozen=True)
class PseudoLabels:
    """Pseudo-labelled subsets of the unlabeled images.

    Attributes:
        normal, abnormal: indices into the unlabeled images (ascending).
        threshold_normal, threshold_abnormal: the confidence thresholds of the two classes.
        split: "classifier" (classes by P >= 0.5) or "median" (the fallback: classes by the median P).
    """

    normal: tuple[int, ...]
    abnormal: tuple[int, ...]
    threshold_normal: float
    threshold_abnormal: float
    split: Literal["classifier", "median"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pseudo_labels(p_abnormal: np.ndarray, percentile: float = 50.0, min_class: int = 2) -> PseudoLabels:
    """AMAE's pseudo-labels from stage-1 probabilities P(abnormal) of the unlabeled images.

    Predicted class: abnormal when P >= 0.5, else normal; confidence = P for abnormal, 1 − P for
    normal. Per class, the threshold is the ``percentile`` of its confidences (numpy's linear
    interpolation); images with confidence >= their class threshold are kept. When a class has
    fewer than ``min_class`` images, the classes are the images below / at-or-above the median P.

    Raises:
        DataError: fewer than 2 unlabeled images.
    """
    p = np.asarray(p_abnormal, dtype=np.float64).ravel()
    if len(p) < 2:
        raise DataError(f"AMAE needs at least 2 unlabeled images for pseudo-labels, got {len(p)}")
    abnormal = p >= 0.5
    split: Literal["classifier", "median"] = "classifier"
    if min(int(abnormal.sum()), int((~abnormal).sum())) < min_class:
        split = "median"
        order = np.argsort(p, kind="stable")
        abnormal = np.zeros(len(p), dtype=bool)
        abnormal[order[len(p) // 2 :]] = True
    conf = np.where(abnormal, p, 1.0 - p)
    t_n = float(np.percentile(conf[~abnormal], percentile))
    t_a = float(np.percentile(conf[abnormal], percentile))
    normal_idx = np.flatnonzero(~abnormal & (conf >= t_n))
    abnormal_idx = np.flatnonzero(abnormal & (conf >= t_a))
    return PseudoLabels(tuple(int(i) for i in normal_idx), tuple(int(i) for i in abnormal_idx), t_n, t_a, split)


# ---------------------------------------------------------------------- helpers
def _build_mae(config: Config) -> MaskedAutoencoder:
    torch.manual_seed(_seed(config, _SEED_MAE))
    return MaskedAutoencoder(**config.mae_kwargs())


def _build_head(config: Config) -> MLPHead:
    torch.manual_seed(_seed(config, _SEED_HEAD))
    return MLPHead(config.embed_dim, config.head_hidden)


def read_checkpoint_file(path: Path) -> dict[str, Any]:
    """The contents of a local checkpoint file: .safetensors, or a torch pickle read with
    ``weights_only`` (tensors, containers and numbers; also the ``argparse.Namespace`` that the
    official MAE training script stores under "args" — never arbitrary code)."""
    import argparse

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--mae-checkpoint {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with other objects than tensors, or not a torch file
        raise DataError(f"--mae-checkpoint {path}: not a readable weights file ({exc.__class__.__name__}: {exc})") from exc


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, device: torch.device, batch: int = 128) -> Tensor:
    """``fn`` over ``x`` in batches, results concatenated on the CPU."""
    return torch.cat([fn(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


def _to_unit(x: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    low, high = output_range
    return (x - low) / (high - low)


def _from_unit(x: np.ndarray, output_range: tuple[float, float]) -> np.ndarray:
    low, high = output_range
    return x * (high - low) + low


# ---------------------------------------------------------------------- training
class _Run:
    """One training run: the finished phases' results (``done``), the phase being resumed, the
    checkpoints and the per-phase timing."""

    def __init__(self, config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
                 progress: Progress, stop: StopRequest) -> None:
        if len(images["unlabeled"]) < 2:
            raise DataError(f"AMAE needs unlabeled images (stage 2 pseudo-labels them); got {len(images['unlabeled'])}")
        self.config, self.data, self.run_dir, self.progress, self.stop = config, data, Path(run_dir), progress, stop
        self.device = resolve_device(config.device)
        self.normal_np, self.unlabeled_np = images["normal_train"], images["unlabeled"]
        self.normal = torch.from_numpy(self.normal_np).to(self.device)
        self.unlabeled = torch.from_numpy(self.unlabeled_np).to(self.device)
        self.loop = TrainingLoop(config, data.file_list_hash(), self.run_dir, progress, stop)
        self.done = self.loop.done  # results of finished phases (and the last epoch's losses)
        self.phase_seconds = self.loop.phase_seconds
        self.mae = _build_mae(config)  # the pre-trained MAE (stage 1's frozen encoder)
        self.head = _build_head(config).to(self.device)

    # ------------------------------------------------------------ bookkeeping
    def elapsed(self) -> float:
        return self.loop.elapsed()

    def _resuming(self, phase: str) -> tuple[int, Any]:
        """(first epoch, saved state or None) of ``phase``."""
        return self.loop.resuming(phase)

    def _epochs(self, phase: str, epochs: int, steps_per_epoch: int,
                run_epoch: Callable[[int, Callable[..., None]], dict[str, float]],
                state: Callable[[], dict[str, Any]], start: int) -> bool:
        """Epochs ``start`` .. ``epochs`` - 1 of a phase on the engine's loop; ``run_epoch(epoch,
        on_step)`` returns the epoch's summary fields (with "loss"). False when stopped."""
        def run(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
            return run_epoch(epoch, lambda **fields: on_step(1, **fields))

        return self.loop.run_epochs(phase, epochs, steps_per_epoch, run, state, start)

    # ------------------------------------------------------------ phases
    def pretrain(self) -> bool:
        """Start from the checkpoint file, if any, then MAE pre-training on normal ∪ unlabeled."""
        c = self.config
        if "pretrained" not in self.done:
            if c.mae_checkpoint is not None:
                try:
                    report = load_pretrained(self.mae, read_checkpoint_file(Path(c.mae_checkpoint)))
                except DataError:
                    raise
                except ValueError as exc:  # the checkpoint does not fit the preset's architecture
                    raise DataError(f"--mae-checkpoint {c.mae_checkpoint}: {exc}") from exc
                self.done["mae_checkpoint"] = {"path": c.mae_checkpoint, "sha256": _file_sha256(Path(c.mae_checkpoint)),
                                               **asdict(report)}
                _report_checkpoint(report, self.progress)
            elif c.pretrain_epochs == 0:
                self.progress.message("no pre-training and no --mae-checkpoint: the MAE starts from random weights",
                                      level="warning")
            if c.pretrain_epochs > 0:
                union = torch.cat([self.normal, self.unlabeled])
                steps = max(1, len(union) // c.batch_size)
                trainer = _MAETrainer(self.mae, union, c, lr=c.pretrain_lr, warmup=c.pretrain_warmup_epochs,
                                      epochs=c.pretrain_epochs, seed=_seed(c, _SEED_PRETRAIN), steps_per_epoch=steps,
                                      masks_per_image=1, augment="crop", device=self.device)
                start, state = self._resuming("pretrain")
                if state is not None:
                    trainer.load_state(state)
                self.progress.phase("pretrain", steps * c.pretrain_epochs, epochs=c.pretrain_epochs, images=len(union),
                                    device=str(self.device), preset=c.preset, backbone=backbone_name(c))

                def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
                    return {"loss": trainer.run_epoch(epoch, lambda loss: on_step(loss=loss))}

                if not self._epochs("pretrain", c.pretrain_epochs, steps, run_epoch, trainer.state, start):
                    return False
            self.done["pretrained"] = {k: v.detach().cpu().clone() for k, v in self.mae.state_dict().items()}
        self.mae.load_state_dict(self.done["pretrained"])
        self.mae = self.mae.to(self.device).eval().requires_grad_(False)
        return True

    def stage1(self) -> bool:
        """The MLP head on the frozen encoder's pooled tokens: known normals vs their AnatPaste copies."""
        c, spec, mae, head = self.config, self.config.preprocess, self.mae, self.head
        if "head" not in self.done:
            t = time.monotonic()
            unit = _to_unit(self.normal_np[:, 0], spec.output_range)
            lungs = [lung_mask(img) for img in unit]  # depends on the image only: computed once
            optimizer = torch.optim.AdamW(head.parameters(), lr=c.stage1_lr, weight_decay=0.0)
            sampler = _Sampler(len(unit), c.batch_size, _seed(c, _SEED_STAGE1))
            rng = np.random.default_rng(_seed(c, _SEED_STAGE1))
            start, state = self._resuming("stage1")
            normal_feats = _batched(lambda x: pooled_tokens(mae, x), self.normal, self.device).to(self.device)
            head.set_feature_statistics(normal_feats)  # the known normals' pooled features (fixed)
            if state is not None:
                head.load_state_dict(state["head"])
                optimizer.load_state_dict(state["optimizer"])
                sampler.load_state(state["sampler"])
                rng.bit_generator.state = state["rng"]
            self.phase_seconds["stage1"] = self.phase_seconds.get("stage1", 0.0) + time.monotonic() - t
            steps = max(1, len(unit) // c.batch_size)
            bce = nn.BCEWithLogitsLoss()

            def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
                head.train()
                losses, correct, seen = [], 0, 0
                for _ in range(steps):
                    idx = sampler.next()
                    synth = np.stack([anatpaste(unit[i], rng, lungs=lungs[i]).image for i in idx.tolist()])
                    synth_t = torch.from_numpy(_from_unit(synth, spec.output_range)[:, None].astype(np.float32))
                    with torch.no_grad():
                        synth_feats = pooled_tokens(mae, synth_t.to(self.device))
                    feats = torch.cat([normal_feats[idx.to(self.device)], synth_feats])
                    target = torch.cat([torch.zeros(len(idx)), torch.ones(len(idx))]).to(self.device)
                    logits = head(feats)
                    loss = bce(logits, target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()))
                    correct += int(((logits.detach() >= 0) == (target > 0.5)).sum())
                    seen += len(target)
                    on_step(loss=losses[-1])
                return {"loss": float(np.mean(losses)), "accuracy": correct / seen}

            def s1_state() -> dict[str, Any]:
                return {"head": head.state_dict(), "optimizer": optimizer.state_dict(), "sampler": sampler.state(),
                        "rng": rng.bit_generator.state}

            self.progress.phase("stage1", steps * c.stage1_epochs, epochs=c.stage1_epochs, images=len(unit))
            if not self._epochs("stage1", c.stage1_epochs, steps, run_epoch, s1_state, start):
                return False
            self.done["head"] = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        head.load_state_dict(self.done["head"])
        head.eval().requires_grad_(False)
        return True

    def pseudo_label(self) -> None:
        """Stage 1 scores the unlabeled images; :func:`pseudo_labels` splits them."""
        if "pseudo" in self.done:
            return
        t = time.monotonic()
        n = len(self.unlabeled_np)
        self.progress.phase("pseudo-label", n)
        p = torch.sigmoid(_batched(lambda x: self.head(pooled_tokens(self.mae, x)), self.unlabeled, self.device)).numpy()
        labels = pseudo_labels(p, self.config.pseudo_percentile)
        self.done["pseudo"] = {**labels.to_dict(), "p_abnormal": torch.from_numpy(p.astype(np.float32))}
        self.phase_seconds["pseudo-label"] = time.monotonic() - t
        self.progress.update(n, force=True, pseudo_normal=len(labels.normal), pseudo_abnormal=len(labels.abnormal),
                             split=labels.split, threshold_normal=labels.threshold_normal,
                             threshold_abnormal=labels.threshold_abnormal)
        if labels.split == "median":
            self.progress.message("stage 1 put fewer than 2 unlabeled images in one class: pseudo-classes split at "
                                  "the median probability instead", level="warning")

    def stage2(self) -> dict[str, MaskedAutoencoder] | None:
        """Modules A and B from the pre-trained MAE; returns them (None when stopped)."""
        c, pseudo = self.config, self.done["pseudo"]
        set_a = torch.cat([self.normal, self.unlabeled[list(pseudo["normal"])]])
        set_b = self.unlabeled[list(pseudo["abnormal"])]
        if c.module_b == "normal+pseudo-abnormal":
            set_b = torch.cat([self.normal, set_b])
        steps = max(1, len(set_a) // c.batch_size)
        trainers: dict[str, _MAETrainer] = {}
        for name, subset, which in (("a", set_a, _SEED_A), ("b", set_b, _SEED_B)):
            module = _build_mae(c)
            module.load_state_dict(self.done["pretrained"])  # both modules start from the pre-trained MAE
            trainers[name] = _MAETrainer(module, subset, c, lr=c.lr, warmup=c.warmup_epochs, epochs=c.epochs,
                                         seed=_seed(c, which), steps_per_epoch=steps, masks_per_image=c.train_masks,
                                         augment=c.augment, device=self.device)
        start, state = self._resuming("stage2")
        if state is not None:
            for name, t in trainers.items():
                t.load_state(state[name])

        def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
            loss = {name: t.run_epoch(epoch, lambda v, _m=name.upper(): on_step(loss=v, module=_m))
                    for name, t in trainers.items()}
            return {"loss": (loss["a"] + loss["b"]) / 2, "loss_a": loss["a"], "loss_b": loss["b"]}

        self.progress.phase("stage2", 2 * steps * c.epochs, epochs=c.epochs, images_a=len(set_a), images_b=len(set_b),
                            masks_per_image=c.train_masks)
        if not self._epochs("stage2", c.epochs, 2 * steps, run_epoch, lambda: {n: t.state() for n, t in trainers.items()},
                            start):
            return None
        return {name: t.model for name, t in trainers.items()}

    def save_model(self, modules: dict[str, MaskedAutoencoder]) -> None:
        c = self.config
        test_masks = partition_masks(self.mae.num_patches, c.test_masks, c.mask_ratio,
                                     torch.Generator().manual_seed(_seed(c, _SEED_TEST_MASKS)))
        cpu = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}
        summaries = {phase: self.done.get(f"{phase}_summary") for phase in ("pretrain", "stage1", "stage2")}
        self.loop.save_model({
            "config": c.to_dict(), "pretrained": self.done["pretrained"], "head": self.done["head"],
            "module_a": cpu["a"], "module_b": cpu["b"], "test_masks": test_masks,
            "pseudo": self.done["pseudo"], "mae_checkpoint": self.done.get("mae_checkpoint"),
            "summaries": summaries, "phase_seconds": self.phase_seconds, "train_seconds": self.elapsed(),
            "device": str(self.device),
        })


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Pre-train, stage 1, pseudo-labels, stage 2; resumes from ``run_dir/checkpoint.pt`` when present.

    Args:
        images: {"normal_train": (N_n, 1, S, S), "unlabeled": (N_u, 1, S, S)} preprocessed.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    run = _Run(config, data, images, run_dir, progress, stop)
    if not run.pretrain() or not run.stage1():
        return False
    run.pseudo_label()
    modules = run.stage2()
    if modules is None:
        return False
    run.save_model(modules)
    return True


def _report_checkpoint(report: LoadReport, progress: Progress) -> None:
    progress.message(f"MAE checkpoint ({report.format} format): {len(report.loaded)} tensors loaded, "
                     f"{len(report.missing)} left as initialised, {len(report.ignored)} unused")
    for line in report.adapted:
        progress.message(line)


# ---------------------------------------------------------------------- scoring
def _load_saved(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained AMAE model (training not finished?)")
    return load_file(path, "AMAE model", "train the run again (delete the run folder) or choose another run")


def _scorer(saved: dict[str, Any], score_type: ScoreType) -> nn.Module:
    c = Config.from_dict(saved["config"])
    if score_type == "stage1":
        mae = MaskedAutoencoder(**c.mae_kwargs())
        mae.load_state_dict(saved["pretrained"])
        head = MLPHead(c.embed_dim, c.head_hidden)
        head.load_state_dict(saved["head"])
        return Stage1Scorer(mae, head).eval()
    if score_type == "inter":
        a, b = MaskedAutoencoder(**c.mae_kwargs()), MaskedAutoencoder(**c.mae_kwargs())
        a.load_state_dict(saved["module_a"])
        b.load_state_dict(saved["module_b"])
        return AMAEScorer(a, b, saved["test_masks"]).eval()
    raise ValueError(f"AMAE score type must be one of ('inter', 'stage1'), got {score_type!r}")


def load_scorer(run_dir: Path, score_type: ScoreType | None = None) -> nn.Module:
    """The trained detector (CPU, eval mode) from ``run_dir/model.pt``; ``score_type`` overrides the run's.

    "inter": stage 2's |μ_A − μ_B| (:class:`models.amae.AMAEScorer`); "stage1": the stage-1
    classifier (:class:`models.amae.Stage1Scorer`).
    """
    saved = _load_saved(run_dir)
    return _scorer(saved, score_type or Config.from_dict(saved["config"]).score_type)


@torch.no_grad()
def all_scores(run_dir: Path, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Image scores of both detectors: {"stage1", "inter"} -> (N,) (for evaluation)."""
    saved = _load_saved(run_dir)
    out: dict[str, np.ndarray] = {}
    for score_type in ("stage1", "inter"):
        scorer = _scorer(saved, score_type)
        parts = [scorer(torch.from_numpy(images[i : i + batch_size]))[0].numpy() for i in range(0, len(images), batch_size)]
        out[score_type] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return out
