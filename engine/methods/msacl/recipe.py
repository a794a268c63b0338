"""MSACL + PaDiM training and scoring (imports torch). The method and its choices: ``engine.methods.msacl``.

Phases, each reported to :class:`engine.progress.Progress` under its own name:
    "pretrain"  the encoder's MSACL pre-training on the known normals (unless ``--encoder``,
                ``--backbone-checkpoint`` or ``--no-pretrain``)
    "fit"       PaDiM: one Gaussian per grid position of the encoder's layer1-3 features
A stop request is honoured at the end of any pre-training epoch; the checkpoint holds the
network, the optimiser, the random generator and the frozen class centres, so a resumed run ends
with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import FINAL_MODEL, TrainingLoop, load_file
from cxrscreen.engine.methods.amae.recipe import _file_sha256  # the one file hash of the methods (as WSCXR)
from cxrscreen.engine.methods.msacl import Config
from cxrscreen.engine.methods.msacl.losses import centre_loss, class_centres, msacl_loss
from cxrscreen.engine.methods.msacl.medmix import MedMixSettings, lung_masks, medmix_batch, position_pairs, weak_views
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.models.msacl import AUG_CLASSES, MSACLNet, resnet18_encoder
from cxrscreen.models.padim import PaDiMScorer, ResNetStages

# offsets of the seeds derived from Config.seed (one stream per use)
_SEED_NET, _SEED_TRAIN, _SEED_CENTRES, _SEED_PADIM = range(4)
# SCAN's cosine schedule as CCD runs it (colon_global/utils/common_config.py adjust_learning_rate):
# per epoch, from lr down to lr * 0.1 ** 3
_COSINE_FLOOR = 0.1**3


def _seed(config: Config, which: int) -> int:
    return config.seed * 1000 + which


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (0-based) of ``epochs`` (CCD's cosine, floor ``base * 1e-3``)."""
    floor = base * _COSINE_FLOOR
    return floor + (base - floor) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def medmix_settings(config: Config) -> MedMixSettings:
    return MedMixSettings(side_min=config.lesion_side[0], side_max=config.lesion_side[1], in_lungs=config.in_lungs)


# ---------------------------------------------------------------------- the encoder's sources
def encoder_state_from_file(path: Path) -> dict[str, Tensor]:
    """A local timm ResNet18 state dict as the one-channel encoder's weights.

    Three-channel ``conv1`` filters become one (timm's ``adapt_input_conv``: their sum); a
    classifier (``fc.*``) is ignored.

    Raises:
        DataError: not a readable state dict, or not a ResNet18's weights.
    """
    from timm.models import adapt_input_conv

    from cxrscreen.engine.methods.wscxr.recipe import read_state_dict

    state = read_state_dict(Path(path))
    own = resnet18_encoder().state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise DataError(f"--backbone-checkpoint {path}: lacks {len(missing)} of ResNet18's weights (e.g. {missing[0]}); "
                        f"is it a timm resnet18 state dict?")
    if usable["conv1.weight"].ndim == 4 and usable["conv1.weight"].shape[1] != 1:
        usable["conv1.weight"] = adapt_input_conv(1, usable["conv1.weight"].float())
    wrong = [k for k, v in usable.items() if v.shape != own[k].shape]
    if wrong:
        raise DataError(f"--backbone-checkpoint {path}: {wrong[0]} has shape {tuple(usable[wrong[0]].shape)}, "
                        f"ResNet18 {tuple(own[wrong[0]].shape)}")
    return {k: v.float().clone() for k, v in usable.items()}


def encoder_from_run(run_dir: Path, preprocess: Any = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The encoder of a finished MSACL run folder and where it came from.

    Args:
        preprocess: the :class:`engine.preprocess.PreprocessSpec` the encoder will be fed (None: not
            checked); an encoder pre-trained on other inputs is refused.

    Raises:
        DataError: no finished run there, its model holds no encoder, or it saw other preprocessing.
    """
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise DataError(f"--encoder {run_dir}: not a finished run folder (no {FINAL_MODEL})")
    saved = load_file(path, "model", "choose another --encoder run")
    state = saved.get("encoder")
    if not isinstance(state, dict):
        raise DataError(f"--encoder {run_dir}: its model holds no ResNet18 encoder (an MSACL run is needed)")
    theirs = (saved.get("config") or {}).get("preprocess")
    if preprocess is not None and theirs != preprocess.to_dict():
        raise DataError(f"--encoder {run_dir}: the MSACL run was trained on other preprocessing ({theirs}); "
                        f"give the same --size and preprocessing options")
    try:
        resnet18_encoder().load_state_dict(state)
    except RuntimeError:
        raise DataError(f"--encoder {run_dir}: its encoder is not a one-channel ResNet18") from None
    return ({k: v.clone() for k, v in state.items()},
            {"run": str(Path(run_dir).resolve()), "model_sha256": _file_sha256(path),
             "source": saved.get("encoder_source")})


# ---------------------------------------------------------------------- pre-training
class Pretrainer:
    """MSACL's pre-training of :class:`models.msacl.MSACLNet` on normal images (N, 1, S, S).

    Args:
        net: the network (its encoder is what is kept).
        images: the training normals; ``masks``: their lung masks (N, S, S) bool.
        config: the settings; ``device``: where the network runs.
    """

    def __init__(self, net: MSACLNet, images: Tensor, masks: Tensor, config: Config, device: torch.device) -> None:
        if len(images) < 2:
            raise DataError(f"MSACL pre-training needs at least 2 normal images, got {len(images)}")
        self.net, self.images, self.masks, self.config, self.device = net.to(device), images, masks, config, device
        self.optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(_seed(config, _SEED_TRAIN))
        self.batch = min(config.batch_size, len(images))
        self.steps = max(1, len(images) // self.batch)  # the last incomplete batch is dropped (SimCLR's loader)
        self.settings = medmix_settings(config)
        self.range = config.preprocess.output_range
        self.centres: Tensor | None = None

    def views(self, images: Tensor, masks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Two weak views of every MedMix output: (views (2M, 1, S, S), classes (2M,), twins (2M,))."""
        if self.config.medmix:
            mixed, labels = medmix_batch(images, masks, generator, self.settings, self.range, AUG_CLASSES)
        else:
            mixed, labels = images, torch.zeros(len(images), dtype=torch.long)
        m = len(mixed)
        views = torch.cat([weak_views(mixed, generator, self.range), weak_views(mixed, generator, self.range)])
        twins = torch.cat([torch.arange(m) + m, torch.arange(m)])
        return views, labels.repeat(2), twins

    @torch.no_grad()
    def compute_centres(self) -> Tensor:
        """The class centres of the initial network (eval mode) over one MedMix draw of every image (Eq. 3)."""
        generator = torch.Generator().manual_seed(_seed(self.config, _SEED_CENTRES))
        self.net.eval()
        projections, labels = [], []
        for i in range(0, len(self.images), self.batch):
            views, classes, _ = self.views(self.images[i : i + self.batch], self.masks[i : i + self.batch], generator)
            projections.append(self.net(views.to(self.device)).projection)
            labels.append(classes)
        self.net.train()
        return class_centres(torch.cat(projections), torch.cat(labels).to(self.device), AUG_CLASSES)

    def losses(self, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
        """The loss terms of one batch (every weight 1, Eq. 1)."""
        c = self.config
        views, labels, twins = self.views(images, masks, self.generator)
        views, labels, twins = views.to(self.device), labels.to(self.device), twins.to(self.device)
        out = self.net(views)
        centres = self.centres if c.msacl_loss else None
        terms = {"contrastive": msacl_loss(out.projection, labels, twins, c.temperature, c.kappa, centres)}
        if c.msacl_loss and self.centres is not None:
            terms["centre"] = centre_loss(out.projection, labels, self.centres)
        if c.medmix:
            terms["aug"] = F.cross_entropy(out.aug_logits, labels)
        first, second, pos = position_pairs(images, c.patch_side, self.generator)
        terms["pos"] = F.cross_entropy(self.net.position_logits(first.to(self.device), second.to(self.device)),
                                       pos.to(self.device))
        terms["loss"] = sum(terms.values())
        return terms

    def run_epoch(self, epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(c.lr, epoch, c.epochs)
        self.net.train()
        order = torch.randperm(len(self.images), generator=self.generator)
        sums: dict[str, float] = {}
        for s in range(self.steps):
            idx = order[s * self.batch : (s + 1) * self.batch]
            terms = self.losses(self.images[idx], self.masks[idx])
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            on_step(1, loss=float(terms["loss"].detach()))
        return {k: v / self.steps for k, v in sums.items()}

    def state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------- PaDiM
def padim_index(config: Config, channels: int) -> Tensor:
    """The kept channels: ``padim_dims`` of ``channels`` drawn at random (seeded), in increasing order
    (anomalib draws ``sample(range(448), 100)``; the order does not change a Mahalanobis distance)."""
    generator = torch.Generator().manual_seed(_seed(config, _SEED_PADIM))
    return torch.randperm(channels, generator=generator)[: config.padim_dims].sort().values


@torch.no_grad()
def fit_gaussians(stages: nn.Module, images: Tensor, eps: float, device: torch.device,
                  batch: int = 32) -> tuple[Tensor, Tensor]:
    """PaDiM's Gaussians (anomalib ``torch_model.py`` / ``multi_variate_gaussian.py``).

    Args:
        images: (N, 1, S, S) normal images, N >= 2.

    Returns:
        (mean (d, h·w), inverse covariance (h·w, d, d)): the unbiased covariance + eps·I, inverted
        in float64 (sums accumulated in float64 batch by batch, so memory does not grow with N).
    """
    n = len(images)
    if n < 2:
        raise DataError(f"PaDiM needs at least 2 normal images for a covariance, got {n}")
    total = outer = None
    for i in range(0, n, batch):
        e = stages(images[i : i + batch].to(device)).double()
        e = e.reshape(e.shape[0], e.shape[1], -1)  # (b, d, P)
        s1 = e.sum(0)
        s2 = torch.einsum("bdp,bep->pde", e, e)
        total, outer = (s1, s2) if total is None else (total + s1, outer + s2)
    mean = total / n  # (d, P)
    m = mean.T  # (P, d)
    covariance = (outer - n * m.unsqueeze(2) * m.unsqueeze(1)) / (n - 1)
    covariance = covariance + eps * torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
    return mean.float().cpu(), torch.linalg.inv(covariance).float().cpu()


# ---------------------------------------------------------------------- training
class _Run:
    """One training run on the engine's loop: pre-training, then PaDiM."""

    def __init__(self, config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
                 progress: Progress, stop: StopRequest) -> None:
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)
        self.normal = torch.from_numpy(images["normal_train"])
        self.loop = TrainingLoop(config, data.file_list_hash(), Path(run_dir), progress, stop)
        self.done = self.loop.done

    def encoder(self) -> bool:
        """The encoder's weights into ``done``: another run's, a local file, pre-training or random."""
        c = self.config
        if "encoder" in self.done:
            return True
        if c.source == "run":
            self.done["encoder"], self.done["encoder_source"] = encoder_from_run(Path(c.encoder), c.preprocess)
            self.progress.message(f"encoder reused from {c.encoder}")
            return True
        if c.source == "checkpoint":
            self.done["encoder"] = encoder_state_from_file(Path(c.backbone_checkpoint))
            self.done["encoder_source"] = {"checkpoint": c.backbone_checkpoint,
                                           "sha256": _file_sha256(Path(c.backbone_checkpoint))}
            return True
        torch.manual_seed(_seed(c, _SEED_NET))
        net = MSACLNet()
        if c.source == "random":
            self.progress.message("no pre-training: PaDiM runs on a random encoder", level="warning")
            self.done["encoder"] = {k: v.detach().cpu().clone() for k, v in net.encoder.state_dict().items()}
            self.done["encoder_source"] = {"msacl": "random"}
            return True
        masks = torch.from_numpy(lung_masks(self.normal.numpy(), c.preprocess.output_range))
        trainer = Pretrainer(net, self.normal, masks, c, self.device)
        start, state = self.loop.resuming("pretrain", c.epochs)
        if state is not None:
            trainer.load_state(state)
        if "centres" not in self.done:
            self.done["centres"] = trainer.compute_centres().cpu()
        trainer.centres = self.done["centres"].to(self.device)
        self.progress.phase("pretrain", trainer.steps * c.epochs, epochs=c.epochs, images=len(self.normal),
                            device=str(self.device), lung_fraction=float(masks.float().mean()))
        if not self.loop.run_epochs("pretrain", c.epochs, trainer.steps, trainer.run_epoch, trainer.state, start):
            return False
        self.done["encoder"] = {k: v.detach().cpu().clone() for k, v in net.encoder.state_dict().items()}
        self.done["encoder_source"] = {"msacl": "pre-trained on the known normals"}
        return True

    def fit(self) -> dict[str, Tensor]:
        """PaDiM's channel index and Gaussians on the training normals."""
        c = self.config
        self.progress.phase("fit", len(self.normal))
        stages = _stages(c, self.done["encoder"]).to(self.device)
        index = padim_index(c, stages.channels)
        stages = _stages(c, self.done["encoder"], index).to(self.device)
        mean, inv_covariance = fit_gaussians(stages, self.normal, c.padim_eps, self.device)
        self.progress.update(len(self.normal), force=True)
        return {"index": index, "mean": mean, "inv_covariance": inv_covariance}

    def save_model(self, padim: dict[str, Tensor]) -> None:
        self.loop.save_model({
            "config": self.config.to_dict(), "encoder": self.done["encoder"], "padim": padim,
            "encoder_source": self.done.get("encoder_source", {}),
            **({"centres": self.done["centres"]} if "centres" in self.done else {}),
            "summaries": {"pretrain": self.done.get("pretrain_summary")},
            "phase_seconds": self.loop.phase_seconds, "train_seconds": self.loop.elapsed(),
        })


def _stages(config: Config, encoder_state: dict[str, Tensor], index: Tensor | None = None) -> ResNetStages:
    """The frozen PaDiM embedding network (eval mode) on the encoder's weights."""
    encoder = resnet18_encoder()
    encoder.load_state_dict(encoder_state)
    return ResNetStages(encoder, index).eval().requires_grad_(False)


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Encoder (pre-training), then PaDiM; resumes from ``run_dir/checkpoint.pt``.

    Args:
        images: {"normal_train", ...}: (N, 1, S, S) preprocessed; only the normals are used.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    run = _Run(config, data, images, run_dir, progress, stop)
    if not run.encoder():
        return False
    run.save_model(run.fit())
    return True


# ---------------------------------------------------------------------- scoring
def _load_saved(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained MSACL model (training not finished?)")
    return load_file(path, "MSACL model", "train the run again (delete the run folder) or choose another run")


def load_scorer(run_dir: Path, score_type: str | None = None) -> PaDiMScorer:
    """The trained detector (CPU, eval mode): :class:`models.padim.PaDiMScorer`; one score type, "max"."""
    if score_type not in (None, "max"):
        raise ValueError(f"MSACL score type must be 'max', got {score_type!r}")
    saved = _load_saved(run_dir)
    c = Config.from_dict(saved["config"])
    padim = saved["padim"]
    return PaDiMScorer(_stages(c, saved["encoder"], padim["index"]), padim["mean"], padim["inv_covariance"],
                       c.preprocess.size, c.blur_sigma).eval()


@torch.no_grad()
def evaluate(run_dir: Path, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Image scores {"max": (N,)} of the run's detector (for evaluation)."""
    scorer = load_scorer(run_dir)
    parts = [scorer(torch.from_numpy(images[i : i + batch_size]))[0].numpy() for i in range(0, len(images), batch_size)]
    return {"max": np.concatenate(parts) if parts else np.zeros(0, np.float32)}
