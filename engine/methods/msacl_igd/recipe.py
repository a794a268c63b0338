"""MSACL-IGD training and scoring (imports torch). The method and its choices: ``engine.methods.msacl_igd``.

Phases, each reported to :class:`engine.progress.Progress` under its own name:
    "features"  the frozen encoder's pooled features of the training normals (once: the encoder
                is frozen, in eval mode, and there is no augmentation)
    "train"     the latent head, decoder and critic (IGD ``p256/ssim_main.py`` ``train``)
A stop request is honoured at the end of any epoch; the checkpoint holds the networks, both
optimisers, the random generator and the current c and σ.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import FINAL_MODEL, TrainingLoop, load_file
from cxrscreen.engine.methods.msacl.recipe import _file_sha256, encoder_from_run, encoder_state_from_file
from cxrscreen.engine.methods.msacl_igd import Config
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.models.igd import IGDCritic, IGDDecoder, IGDScorer, gaussian_normality, reconstruction_error, ssim_window
from cxrscreen.models.msacl import FEATURE_DIM, resnet18_encoder

_SEED_ENCODER, _SEED_NETS, _SEED_TRAIN = range(3)
_CENTRE_EPS = 0.1  # IGD init_c: |c_i| < eps is pushed to ±eps
_CRITIC_GAMMA = 0.2  # IGD: the critic sees x̂ + 0.2 (x − x̂) as "not interpolated"


def _seed(config: Config, which: int) -> int:
    return config.seed * 1000 + which


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """IGD's ``poly_lr_scheduler``: base · (1 − step / total) ** power."""
    return base * (1 - step / total) ** power


def descriptor_centre(latents: Tensor, eps: float = _CENTRE_EPS) -> Tensor:
    """c: the mean latent (L,), entries closer to 0 than ``eps`` pushed to ±eps (IGD ``init_c``; an exact 0 stays)."""
    c = latents.mean(0)
    c = torch.where((c.abs() < eps) & (c < 0), torch.full_like(c, -eps), c)
    return torch.where((c.abs() < eps) & (c > 0), torch.full_like(c, eps), c)


def descriptor_sigma(latents: Tensor, centre: Tensor, batch: int) -> Tensor:
    """σ: over batches of ``batch`` latents in order, the mean of max(1, mean ‖z − c‖²) (IGD ``init_sigma``)."""
    parts = []
    for i in range(0, len(latents), batch):
        d = ((latents[i : i + batch] - centre) ** 2).sum(1).mean()
        parts.append(torch.clamp(d, min=1.0))
    return torch.stack(parts).mean()


def _encoder_state(config: Config) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if config.encoder is not None:
        return encoder_from_run(Path(config.encoder), config.preprocess)
    if config.backbone_checkpoint is not None:
        return (encoder_state_from_file(Path(config.backbone_checkpoint)),
                {"checkpoint": config.backbone_checkpoint, "sha256": _file_sha256(Path(config.backbone_checkpoint))})
    torch.manual_seed(_seed(config, _SEED_ENCODER))
    return ({k: v.clone() for k, v in resnet18_encoder().state_dict().items()}, {"msacl": "random"})


def _stem(state: dict[str, Tensor]) -> nn.Module:
    stem = resnet18_encoder()
    stem.load_state_dict(state)
    return stem.eval().requires_grad_(False)


@torch.no_grad()
def stem_features(stem: nn.Module, images: Tensor, device: torch.device, batch: int = 64) -> Tensor:
    """The frozen encoder's pooled features (N, 512) on ``device``."""
    return torch.cat([stem(images[i : i + batch].to(device)) for i in range(0, len(images), batch)])


class IGDTrainer:
    """IGD's training on precomputed encoder features (see the module docstring of ``engine.methods.msacl_igd``)."""

    def __init__(self, config: Config, images: Tensor, features: Tensor, device: torch.device) -> None:
        c = config
        self.config, self.images, self.features, self.device = c, images, features, device
        torch.manual_seed(_seed(c, _SEED_NETS))
        self.head = nn.Linear(FEATURE_DIM, c.latent).to(device)
        self.decoder = IGDDecoder(c.latent, c.preprocess.size, c.dim).to(device)
        self.critic = IGDCritic(c.preprocess.size, c.dim).to(device)
        self.opt_g = torch.optim.Adam([*self.head.parameters(), *self.decoder.parameters()], lr=c.lr,
                                      betas=(0.0, 0.9), weight_decay=c.weight_decay)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=c.lr, betas=(0.0, 0.9))
        self.generator = torch.Generator().manual_seed(_seed(c, _SEED_TRAIN))
        self.steps = math.ceil(len(images) / c.batch_size)  # the code's loader keeps the last smaller batch
        self.window = ssim_window(c.preprocess.size)
        self.centre = torch.zeros(c.latent, device=device)
        self.sigma = torch.ones((), device=device)

    @torch.no_grad()
    def update_descriptor(self) -> None:
        """c and σ from every training latent (the head in eval mode, as the code's ``net.eval()``)."""
        self.head.eval()
        latents = self.head(self.features)
        self.centre = descriptor_centre(latents)
        self.sigma = descriptor_sigma(latents, self.centre, self.config.batch_size)

    def run_epoch(self, epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
        c = self.config
        if epoch % c.descriptor_every == 0:
            self.update_descriptor()
        self.head.train(), self.decoder.train(), self.critic.train()
        order = torch.randperm(len(self.images), generator=self.generator)
        sums = {"loss": 0.0, "reconstruction": 0.0, "descriptor": 0.0, "interpolation": 0.0, "critic": 0.0}
        total = self.steps * c.epochs
        for s in range(self.steps):
            step = epoch * self.steps + s
            for opt in (self.opt_g, self.opt_d):
                for group in opt.param_groups:
                    group["lr"] = poly_lr(c.lr, step, total)
            idx = order[s * c.batch_size : (s + 1) * c.batch_size]
            x, f = self.images[idx].to(self.device), self.features[idx.to(self.device)]
            alpha = (torch.rand(len(idx), 1, generator=self.generator) * c.interpolation_max).to(self.device)
            # generator side: reconstruction + Gaussian descriptor + interpolation critic
            z = self.head(f)
            rec = reconstruction_error(x, self.decoder(z), c.data_range, self.window, c.ssim_weight).mean()
            mixed = alpha * z + (1 - alpha) * torch.flip(z, dims=[0])
            interpolation = (self.critic(self.decoder(mixed)) ** 2).mean()
            descriptor = (1 - gaussian_normality(z, self.centre, self.sigma)).mean()
            loss = rec + descriptor + c.critic_weight * interpolation
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
            # critic: α on decoded interpolations, 0 on x̂ moved towards x
            with torch.no_grad():
                z = self.head(f)
                decoded = self.decoder(alpha * z + (1 - alpha) * torch.flip(z, dims=[0]))
                fake = self.decoder(z)
            critic_loss = ((self.critic(decoded) - alpha.reshape(-1)) ** 2).mean() + \
                (self.critic(fake + _CRITIC_GAMMA * (x - fake)) ** 2).mean()
            self.opt_d.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.opt_d.step()
            for k, v in (("loss", loss), ("reconstruction", rec), ("descriptor", descriptor),
                         ("interpolation", interpolation), ("critic", critic_loss)):
                sums[k] += float(v.detach())
            on_step(1, loss=float(loss.detach()))
        return {k: v / self.steps for k, v in sums.items()}

    def state(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "decoder": self.decoder.state_dict(),
                "critic": self.critic.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "generator": self.generator.get_state(), "centre": self.centre.cpu(), "sigma": self.sigma.cpu()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.decoder.load_state_dict(state["decoder"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.generator.set_state(state["generator"])
        self.centre, self.sigma = state["centre"].to(self.device), state["sigma"].to(self.device)


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Encoder features, then IGD; resumes from ``run_dir/checkpoint.pt``.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    c = config
    device = resolve_device(c.device)
    normal = torch.from_numpy(images["normal_train"])
    if len(normal) < 2:
        raise DataError(f"IGD needs at least 2 normal training images, got {len(normal)}")
    loop = TrainingLoop(c, data.file_list_hash(), Path(run_dir), progress, stop)
    if "encoder" not in loop.done:
        loop.done["encoder"], loop.done["encoder_source"] = _encoder_state(c)
    progress.phase("features", len(normal))
    features = stem_features(_stem(loop.done["encoder"]).to(device), normal, device)
    progress.update(len(normal), force=True)
    trainer = IGDTrainer(c, normal, features, device)
    start, state = loop.resuming("train", c.epochs)
    if state is not None:
        trainer.load_state(state)
    progress.phase("train", trainer.steps * c.epochs, epochs=c.epochs, images=len(normal), device=str(device))
    if not loop.run_epochs("train", c.epochs, trainer.steps, trainer.run_epoch, trainer.state, start):
        return False
    # scoring uses c and σ as last estimated (every descriptor_every epochs), as IGD's code does
    loop.save_model({
        "config": c.to_dict(), "encoder": loop.done["encoder"], "encoder_source": loop.done["encoder_source"],
        "head": {k: v.detach().cpu() for k, v in trainer.head.state_dict().items()},
        "decoder": {k: v.detach().cpu() for k, v in trainer.decoder.state_dict().items()},
        "critic": {k: v.detach().cpu() for k, v in trainer.critic.state_dict().items()},
        "centre": trainer.centre.cpu(), "sigma": trainer.sigma.cpu(),
        "summaries": {"train": loop.done.get("train_summary")},
        "phase_seconds": loop.phase_seconds, "train_seconds": loop.elapsed(),
    })
    return True


def load_scorer(run_dir: Path, score_type: str | None = None) -> IGDScorer:
    """The trained detector (CPU, eval mode): :class:`models.igd.IGDScorer`; one score type, "igd"."""
    if score_type not in (None, "igd"):
        raise ValueError(f"MSACL-IGD score type must be 'igd', got {score_type!r}")
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained MSACL-IGD model (training not finished?)")
    saved = load_file(path, "MSACL-IGD model", "train the run again (delete the run folder) or choose another run")
    c = Config.from_dict(saved["config"])
    head = nn.Linear(FEATURE_DIM, c.latent)
    head.load_state_dict(saved["head"])
    decoder = IGDDecoder(c.latent, c.preprocess.size, c.dim)
    decoder.load_state_dict(saved["decoder"])
    return IGDScorer(_stem(saved["encoder"]), head, decoder, saved["centre"], saved["sigma"], c.xi, c.preprocess.size,
                     c.data_range, ssim_window(c.preprocess.size), c.ssim_weight, c.blur_sigma).eval()


@torch.no_grad()
def evaluate(run_dir: Path, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Image scores {"igd": (N,)} of the run's detector (for evaluation)."""
    scorer = load_scorer(run_dir)
    parts = [scorer(torch.from_numpy(images[i : i + batch_size]))[0].numpy() for i in range(0, len(images), batch_size)]
    return {"igd": np.concatenate(parts) if parts else np.zeros(0, np.float32)}
