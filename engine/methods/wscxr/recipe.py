"""WSCXR training and scoring (imports torch). The method and its choices: ``engine.methods.wscxr``.

Phases, each reported to :class:`engine.progress.Progress` under its own name:
    "pretrain"  the MAE encoder's self-supervised pre-training (AMAE's code), unless a timm
                backbone, ``--encoder RUN`` or 0 epochs
    "features"  patch features of the known normals (the normal bank M_n) and of the labelled
                anomalies; anomaly mining keeps the prototypes
    "train"     the discriminator: normal patch features vs their mixes with prototypes
A stop request is honoured at the end of any epoch; the checkpoint holds the finished phases'
results (the encoder, the prototypes) and the current phase's state (networks, optimiser,
random generators), so a resumed run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import FINAL_MODEL, TrainingLoop, load_file
from cxrscreen.engine.methods.amae import Config as AMAEConfig
from cxrscreen.engine.methods.amae.recipe import _file_sha256, _MAETrainer
from cxrscreen.engine.methods.wscxr import MAE, MSACL, MSACL_LAYER, Config
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.models.mae import MaskedAutoencoder, unwrap_state_dict
from cxrscreen.models.wscxr import Discriminator, MAEPatchBackbone, TimmPatchBackbone, WSCXRScorer, neighbourhood_mean

# offsets of the seeds derived from Config.seed (one stream per use)
_SEED_MAE, _SEED_PRETRAIN, _SEED_DISCRIMINATOR, _SEED_TRAIN = range(4)


def _seed(config: Config, which: int) -> int:
    return config.seed * 1000 + which


# ---------------------------------------------------------------------- the method's steps
@torch.no_grad()
def nearest_distances(queries: Tensor, bank: Tensor, chunk: int = 2048) -> Tensor:
    """Euclidean distance of each query (M, C) to its nearest neighbour in ``bank`` (N, C): (M,)."""
    if len(bank) == 0:
        raise ValueError("the normal bank is empty")
    best = torch.full((len(queries),), float("inf"), dtype=queries.dtype, device=queries.device)
    for i in range(0, len(bank), chunk):
        d = torch.cdist(queries, bank[i : i + chunk], compute_mode="donot_use_mm_for_euclid_dist")
        best = torch.minimum(best, d.min(dim=1).values)
    return best


def mine_prototypes(abnormal: Tensor, bank: Tensor, ratio: float) -> tuple[Tensor, Tensor]:
    """Anomaly mining: the abnormal patch features (M, C) farthest from the normal bank (N, C).

    Keeps ``max(1, floor(ratio * M))`` features, the largest 1-NN distances first (ties: the
    earlier feature first).

    Returns:
        (prototypes (k, C), indices (k,) into ``abnormal``).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if len(abnormal) == 0:
        raise ValueError("no abnormal patch features to mine")
    k = max(1, int(len(abnormal) * ratio))
    distances = nearest_distances(abnormal, bank)
    order = torch.sort(distances, descending=True, stable=True).indices[:k]
    return abnormal[order], order


def draw_mixing(n: int, n_prototypes: int, generator: torch.Generator, alpha_range: tuple[float, float],
                mixing: bool = True) -> tuple[Tensor, Tensor]:
    """One random prototype index (n,) and one α (n, 1) per normal feature; α ~ U[alpha_range]
    (α = 1 without mixing: the prototype itself)."""
    index = torch.randint(n_prototypes, (n,), generator=generator)
    lo, hi = alpha_range
    alpha = torch.rand(n, 1, generator=generator) * (hi - lo) + lo if mixing else torch.ones(n, 1)
    return index, alpha


def mix(normal: Tensor, prototypes: Tensor, index: Tensor, alpha: Tensor) -> Tensor:
    """Linear mixing: α · prototypes[index] + (1 − α) · normal, row by row ((n, C) each)."""
    return alpha * prototypes[index] + (1.0 - alpha) * normal


def hinge_loss(normal_logits: Tensor, synthetic_logits: Tensor, margin: float) -> Tensor:
    """The code's loss: mean(relu(margin − D(normal))) + mean(relu(margin + D(synthetic)))."""
    return torch.relu(margin - normal_logits).mean() + torch.relu(margin + synthetic_logits).mean()


# ---------------------------------------------------------------------- backbones
def _amae_config(config: Config) -> AMAEConfig:
    """The settings AMAE's pre-training code reads (batch, mask ratio, crops, AdamW) from ours."""
    return replace(AMAEConfig(), preset="tiny" if config.mae_size == "tiny" else "small",
                   batch_size=max(2, config.pretrain_batch_size), mask_ratio=config.mask_ratio,
                   crop_scale=config.crop_scale, seed=config.seed, device=config.device,
                   preprocess=config.preprocess, **{k: v for k, v in config.mae_kwargs().items()
                                                   if k not in ("img_size", "in_chans")})


def _build_mae(config: Config) -> MaskedAutoencoder:
    torch.manual_seed(_seed(config, _SEED_MAE))
    return MaskedAutoencoder(**config.mae_kwargs())


def read_state_dict(path: Path, option: str = "--backbone-checkpoint") -> dict[str, Tensor]:
    """A local weights file as a state dict: .safetensors, or a torch file read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{option} {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file as load_safetensors

            obj: Any = load_safetensors(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        return unwrap_state_dict(obj)
    except Exception as exc:  # not a weights file, or a pickle of other objects (refused, never run)
        raise DataError(f"{option} {path}: not a readable state dict ({exc.__class__.__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def encoder_from_run(run_dir: Path, config: Config) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The pre-trained MAE of a finished WSCXR run (its "encoder") or AMAE run (its "pretrained").

    Raises:
        DataError: no finished run there, or its MAE is not this architecture and size.
    """
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise DataError(f"--encoder {run_dir}: not a finished run folder (no {FINAL_MODEL})")
    saved = load_file(path, "model", "choose another --encoder run")
    state = saved.get("encoder") if isinstance(saved.get("encoder"), dict) else saved.get("pretrained")
    if not isinstance(state, dict):
        raise DataError(f"--encoder {run_dir}: its model holds no pre-trained MAE (a WSCXR or AMAE run is needed)")
    theirs = (saved.get("config") or {}).get("preprocess")
    if theirs is not None and theirs != config.preprocess.to_dict():
        raise DataError(f"--encoder {run_dir}: its MAE was pre-trained on other preprocessing ({theirs}); give the "
                        f"same --size, --intensity and --crop")
    probe = MaskedAutoencoder(**config.mae_kwargs())
    try:
        probe.load_state_dict(state)
    except RuntimeError:
        raise DataError(f"--encoder {run_dir}: its MAE is not the {config.mae_size} architecture at "
                        f"{config.preprocess.size} px (--mae-size / --size must match the run's)") from None
    return ({k: v.clone() for k, v in state.items()},
            {"run": str(Path(run_dir).resolve()), "model_sha256": _file_sha256(path)})


def msacl_backbone(run_dir: Path, config: Config) -> tuple[TimmPatchBackbone, dict[str, Any]]:
    """The ResNet18 of a finished MSACL run as a patch backbone, and where it came from.

    Raises:
        DataError: not a finished MSACL run, or its preprocessing is not this detector's.
    """
    from cxrscreen.engine.methods.msacl.recipe import encoder_from_run as msacl_encoder_from_run

    state, source = msacl_encoder_from_run(Path(run_dir), config.preprocess)
    try:
        net = TimmPatchBackbone("resnet18", config.backbone_layer or MSACL_LAYER, state,
                                input_range=config.preprocess.output_range, in_chans=1)
    except ValueError as exc:
        raise DataError(f"--encoder {run_dir}: {exc}") from None
    return net, {"msacl_run": source, "layer": net.layer}


def _backbone(config: Config, saved: dict[str, Any]) -> nn.Module:
    """The frozen backbone from a run's results (``done`` or ``model.pt``), in eval mode."""
    if config.backbone == MAE:
        mae = MaskedAutoencoder(**config.mae_kwargs())
        mae.load_state_dict(saved["encoder"])
        backbone: nn.Module = MAEPatchBackbone(mae)
    elif config.backbone == MSACL:
        backbone = TimmPatchBackbone("resnet18", config.backbone_layer or MSACL_LAYER,
                                     input_range=config.preprocess.output_range, in_chans=1)
        backbone.load_state_dict(saved["timm_backbone"])
    else:
        backbone = TimmPatchBackbone(config.backbone, config.backbone_layer,
                                     input_range=config.preprocess.output_range)
        backbone.load_state_dict(saved["timm_backbone"])
    return backbone.eval().requires_grad_(False)


@torch.no_grad()
def patch_features(backbone: nn.Module, images: Tensor, neighbourhood: int, device: torch.device,
                   batch: int = 64) -> Tensor:
    """Aggregated patch features of images (N, 1, S, S): (N, h·w, C) on ``device`` (row-major grid)."""
    parts = []
    for i in range(0, len(images), batch):
        grid = neighbourhood_mean(backbone(images[i : i + batch].to(device)), neighbourhood)
        parts.append(grid.flatten(2).transpose(1, 2))
    return torch.cat(parts)


# ---------------------------------------------------------------------- training
class _Run:
    """One training run on the engine's loop: phases, checkpoints, timing."""

    def __init__(self, config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
                 progress: Progress, stop: StopRequest) -> None:
        abnormal = images.get("abnormal")
        if abnormal is None or len(abnormal) == 0:
            raise DataError("WSCXR needs confirmed-abnormal images (--abnormal); none were given")
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)
        self.normal = torch.from_numpy(images["normal_train"])
        self.abnormal = torch.from_numpy(abnormal)
        unlabeled = images.get("unlabeled")
        self.unlabeled = torch.from_numpy(unlabeled) if unlabeled is not None else self.normal[:0]
        self.loop = TrainingLoop(config, data.file_list_hash(), Path(run_dir), progress, stop)
        self.done = self.loop.done

    def backbone(self) -> bool:
        """The frozen backbone's weights into ``done``: a timm checkpoint, another run's encoder, or pre-training."""
        c = self.config
        if "encoder" in self.done or "timm_backbone" in self.done:
            return True
        if c.backbone == MSACL:
            if c.encoder is None:
                raise DataError("--backbone msacl needs --encoder MSACL_RUN (a finished MSACL run folder)")
            net, self.done["backbone_source"] = msacl_backbone(Path(c.encoder), c)
            self.done["timm_backbone"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            self.progress.message(f"MSACL encoder ({net.layer}) reused from {c.encoder}")
            return True
        if c.backbone != MAE:
            if c.backbone_checkpoint is None:
                raise DataError(f"the {c.backbone} backbone needs --backbone-checkpoint FILE (nothing is downloaded)")
            try:
                net = TimmPatchBackbone(c.backbone, c.backbone_layer, read_state_dict(Path(c.backbone_checkpoint)),
                                        input_range=c.preprocess.output_range)
            except ValueError as exc:
                raise DataError(f"--backbone-checkpoint {c.backbone_checkpoint}: {exc}") from None
            self.done["timm_backbone"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            self.done["backbone_source"] = {"checkpoint": c.backbone_checkpoint, "layer": net.layer,
                                            "sha256": _file_sha256(Path(c.backbone_checkpoint))}
            return True
        if c.encoder is not None:
            self.done["encoder"], self.done["backbone_source"] = encoder_from_run(Path(c.encoder), c)
            self.progress.message(f"MAE encoder reused from {c.encoder}")
            return True
        mae = _build_mae(c)
        if c.pretrain_epochs > 0:
            # unlabeled images when given, else the labelled anomalies without their labels
            union = torch.cat([self.normal, self.unlabeled if len(self.unlabeled) else self.abnormal])
            steps = max(1, len(union) // c.pretrain_batch_size)
            trainer = _MAETrainer(mae, union, _amae_config(c), lr=c.pretrain_lr, warmup=c.pretrain_warmup_epochs,
                                  epochs=c.pretrain_epochs, seed=_seed(c, _SEED_PRETRAIN), steps_per_epoch=steps,
                                  masks_per_image=1, augment=True, device=self.device)
            start, state = self.loop.resuming("pretrain", c.pretrain_epochs)
            if state is not None:
                trainer.load_state(state)
            self.progress.phase("pretrain", steps * c.pretrain_epochs, epochs=c.pretrain_epochs, images=len(union),
                                device=str(self.device))

            def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
                return {"loss": trainer.run_epoch(epoch, lambda loss: on_step(1, loss=loss))}

            if not self.loop.run_epochs("pretrain", c.pretrain_epochs, steps, run_epoch, trainer.state, start):
                return False
            source = "pre-trained on normal + " + ("unlabeled" if len(self.unlabeled) else "abnormal (labels unused)")
        else:
            self.progress.message("no pre-training and no --encoder: the MAE encoder stays random", level="warning")
            source = "random"
        self.done["encoder"] = {k: v.detach().cpu().clone() for k, v in mae.state_dict().items()}
        self.done["backbone_source"] = {"mae": source}
        return True

    def features(self) -> tuple[Tensor, Tensor]:
        """(normal patch features (N, h·w, C), prototypes (k, C)), both on the device."""
        c = self.config
        t = time.monotonic()
        backbone = _backbone(c, self.done).to(self.device)
        self.progress.phase("features", len(self.normal) + len(self.abnormal))
        normal = patch_features(backbone, self.normal, c.neighbourhood, self.device)
        if "prototypes" not in self.done:
            abnormal = patch_features(backbone, self.abnormal, c.neighbourhood, self.device).reshape(-1, normal.shape[-1])
            bank = normal.reshape(-1, normal.shape[-1])
            if c.mining:
                prototypes, kept = mine_prototypes(abnormal, bank, c.mining_ratio)
            else:
                prototypes, kept = abnormal, torch.arange(len(abnormal))
            self.done["prototypes"] = prototypes.cpu()
            self.done["mining"] = {"abnormal_patches": len(abnormal), "prototypes": len(prototypes),
                                   "bank": len(bank), "kept": kept.cpu()}
            self.loop.phase_seconds["features"] = time.monotonic() - t
        self.progress.update(len(self.normal) + len(self.abnormal), force=True,
                             prototypes=self.done["mining"]["prototypes"],
                             abnormal_patches=self.done["mining"]["abnormal_patches"])
        return normal, self.done["prototypes"].to(self.device)

    def train_discriminator(self, normal: Tensor, prototypes: Tensor) -> Discriminator | None:
        """The discriminator on normal patch features vs their mixes with prototypes (None when stopped)."""
        c = self.config
        torch.manual_seed(_seed(c, _SEED_DISCRIMINATOR))
        disc = Discriminator(normal.shape[-1], c.head, c.mlp_hidden).to(self.device)
        optimizer = torch.optim.Adam(disc.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(_seed(c, _SEED_TRAIN))
        n, channels = len(normal), normal.shape[-1]
        steps = math.ceil(n / c.batch_size)  # the last smaller batch is kept (the code's DataLoader)
        start, state = self.loop.resuming("train", c.epochs)
        if state is not None:
            disc.load_state_dict(state["discriminator"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])

        def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
            disc.train()
            order = torch.randperm(n, generator=generator)
            losses, right_normal, right_synthetic, seen = [], 0, 0, 0
            for s in range(steps):
                true = normal[order[s * c.batch_size : (s + 1) * c.batch_size].to(self.device)].reshape(-1, channels)
                index, alpha = draw_mixing(len(true), len(prototypes), generator, (c.alpha_min, c.alpha_max), c.mixing)
                fake = mix(true, prototypes, index.to(self.device), alpha.to(self.device))
                logits = disc(torch.cat([true, fake]))
                loss = hinge_loss(logits[: len(true)], logits[len(true) :], c.margin)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                right_normal += int((logits[: len(true)] > 0).sum())
                right_synthetic += int((logits[len(true) :] < 0).sum())
                seen += len(true)
                on_step(1, loss=losses[-1])
            return {"loss": float(np.mean(losses)), "normal_correct": right_normal / seen,
                    "synthetic_correct": right_synthetic / seen}

        def state_now() -> dict[str, Any]:
            return {"discriminator": disc.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state()}

        self.progress.phase("train", steps * c.epochs, epochs=c.epochs, images=n, prototypes=len(prototypes),
                            head=c.head)
        if not self.loop.run_epochs("train", c.epochs, steps, run_epoch, state_now, start):
            return None
        return disc

    def save_model(self, disc: Discriminator) -> None:
        c = self.config
        self.loop.save_model({
            "config": c.to_dict(), "channels": disc.in_dim,
            "discriminator": {k: v.detach().cpu() for k, v in disc.state_dict().items()},
            **{k: self.done[k] for k in ("encoder", "timm_backbone") if k in self.done},
            "prototypes": self.done["prototypes"], "mining": self.done["mining"],
            "backbone_source": self.done.get("backbone_source", {}),
            "summaries": {p: self.done.get(f"{p}_summary") for p in ("pretrain", "train")},
            "phase_seconds": self.loop.phase_seconds, "train_seconds": self.loop.elapsed(),
        })


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Backbone (pre-training), features and mining, discriminator; resumes from ``run_dir/checkpoint.pt``.

    Args:
        images: {"normal_train", "abnormal", optionally "unlabeled"}: (N, 1, S, S) preprocessed.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    run = _Run(config, data, images, run_dir, progress, stop)
    if not run.backbone():
        return False
    normal, prototypes = run.features()
    disc = run.train_discriminator(normal, prototypes)
    if disc is None:
        return False
    run.save_model(disc)
    return True


# ---------------------------------------------------------------------- scoring
def _load_saved(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained WSCXR model (training not finished?)")
    return load_file(path, "WSCXR model", "train the run again (delete the run folder) or choose another run")


def load_scorer(run_dir: Path, score_type: str | None = None) -> WSCXRScorer:
    """The trained detector (CPU, eval mode): :class:`models.wscxr.WSCXRScorer`; one score type, "max"."""
    if score_type not in (None, "max"):
        raise ValueError(f"WSCXR score type must be 'max', got {score_type!r}")
    saved = _load_saved(run_dir)
    c = Config.from_dict(saved["config"])
    disc = Discriminator(int(saved["channels"]), c.head, c.mlp_hidden)
    disc.load_state_dict(saved["discriminator"])
    return WSCXRScorer(_backbone(c, saved), disc, c.neighbourhood, c.preprocess.size, c.blur_sigma).eval()


@torch.no_grad()
def evaluate(run_dir: Path, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Image scores {"max": (N,)} of the run's detector (for evaluation)."""
    scorer = load_scorer(run_dir)
    parts = [scorer(torch.from_numpy(images[i : i + batch_size]))[0].numpy() for i in range(0, len(images), batch_size)]
    return {"max": np.concatenate(parts) if parts else np.zeros(0, np.float32)}
