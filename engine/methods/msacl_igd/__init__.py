"""IGD on an MSACL encoder (Tian et al., MedIA 2023, the paper's second detector; IGD: Chen, Tian,
Pang, Liu, Wang, Carneiro, "Deep One-Class Classification via Interpolated Gaussian Descriptor",
AAAI 2022, code github.com/tianyu0207/IGD): settings, presets and options (torch-free). The recipe
is in ``recipe.py``, the networks in ``models.igd``; the encoder's pre-training is MSACL's
(``engine.methods.msacl``).

IGD's global model (``p256/ssim_main.py``), with the ImageNet ResNet18 replaced by a one-channel
ResNet18 encoder, frozen as IGD freezes its own:
- latent z = Linear(512 → 128)(encoder(x)); a decoder reconstructs x from z;
- loss (generator side) = 0.85·(1 − MS-SSIM) + 0.15·L1/range + mean(1 − exp(−‖z − c‖²/σ)) +
  0.1·mean(D(x̂_α)²), where x̂_α decodes α·z + (1 − α)·z_flip, α ~ U[0, 0.5]; the critic D is
  trained to predict α on those and 0 on x̂ + 0.2·(x − x̂);
- c (the mean latent, |c_i| < 0.1 pushed to ±0.1) and σ (the mean squared distance to c, at least 1)
  are set before training and every 10 epochs;
- Adam lr 1e-4, betas (0, 0.9) (weight decay 1e-6 for the generator side), polynomial decay
  (power 0.9) over every step, batches of 16, 256 epochs;
- score = ξ·rec + (1 − ξ)·(1 − h), h = exp(−‖z − c‖²/σ), ξ = 0.5 (paper Eq. 10-11; the code's 0.5).

The encoder: ``--encoder RUN`` (a finished MSACL run's: MSACL-IGD), ``--backbone-checkpoint FILE``
(a local timm ResNet18 state dict: IGD with the user's weights), or neither (a random frozen
encoder: the floor).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.methods.base import (
    LossSeries, Method, Phase, Preset, Problem, Role, preprocess_from, register, setting, settings_from_dict,
    settings_to_dict, settings_values, recipe_hooks, robust_preset,
)
from cxrscreen.engine.preprocess import PreprocessSpec

NAME = "msacl_igd"
DeviceChoice = Literal["auto", "cpu", "cuda"]
SCORE_TYPES: tuple[str, ...] = ("igd",)
DEFAULT_PREPROCESS = PreprocessSpec(size=64)


@dataclass(frozen=True)
class Config:
    """IGD settings; the defaults are the ``small`` preset.

    Attributes:
        encoder: a finished MSACL run folder whose encoder is used (None: see ``backbone_checkpoint``).
        backbone_checkpoint: a local timm ResNet18 state dict (None and no encoder: a random encoder).
        latent: L, the latent size (the code: 128).
        dim: the decoder's and critic's width (the code: 64).
        xi: ξ, the reconstruction's share of the score.
        ssim_weight: the MS-SSIM share of the reconstruction error (the code: 0.85).
        critic_weight: the interpolation critic's weight in the generator loss (the code: 0.1).
        interpolation_max: α ~ U[0, interpolation_max] (the code: 0.5).
        descriptor_every: epochs between re-estimates of c and σ (the code: 10).
        epochs, batch_size, lr, weight_decay: Adam's schedule (batch in images).
        blur_sigma_256: σ of the heatmap blur in pixels at 256 px, scaled to the size.
        seed: seeds the networks, the batch order and α.
        preprocess: the shared preprocessing (a power-of-two size >= 64).
        device, checkpoint_every_s: run settings.
    """

    encoder: str | None = setting(None, flag="--encoder", type="path",
                                  path_kind="folder", help="a finished MSACL run folder whose pre-trained encoder IGD uses (frozen)")
    backbone_checkpoint: str | None = setting(None, flag="--backbone-checkpoint", type="path",
                                              path_kind="file", help="local timm ResNet18 state dict used as the frozen encoder instead "
                                                   "(read as plain tensors only)")
    latent: int = setting(128, flag="--latent", minimum=1, help="latent size of the Gaussian descriptor (IGD: 128)")
    dim: int = setting(64, flag="--igd-width", minimum=1, option_default=None,
                       help="width of the decoder and critic (default: the preset's, 32 in small; IGD: 64)")
    xi: float = setting(0.5, flag="--xi", minimum=0.0, maximum=1.0,
                        help="ξ: the reconstruction's share of the score; 1 − ξ goes to the Gaussian descriptor")
    ssim_weight: float = 0.85
    critic_weight: float = 0.1
    interpolation_max: float = 0.5
    descriptor_every: int = 10
    epochs: int = setting(256, common=True, flag="--epochs")
    batch_size: int = setting(16, common=True, flag="--batch-size")
    lr: float = setting(1e-4, common=True, flag="--lr")
    weight_decay: float = 1e-6
    blur_sigma_256: float = 4.0
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")

    def __post_init__(self) -> None:
        if self.device not in get_args(DeviceChoice):
            raise ValueError(f"device must be one of {get_args(DeviceChoice)}, got {self.device!r}")
        size = self.preprocess.size
        if size < 64 or size & (size - 1):
            raise ValueError(f"IGD needs a power-of-two input size of at least 64 px (MS-SSIM's four "
                             f"downsamplings), got {size}")
        if self.encoder is not None and self.backbone_checkpoint is not None:
            raise ValueError("encoder (a run's encoder) and backbone_checkpoint (a weights file) exclude each other")
        for name in ("latent", "dim", "epochs", "batch_size", "descriptor_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "blur_sigma_256"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("xi", "ssim_weight", "interpolation_max"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.critic_weight < 0 or self.weight_decay < 0:
            raise ValueError(f"critic_weight and weight_decay must be >= 0, got {self.critic_weight}, "
                             f"{self.weight_decay}")
        for name in ("backbone_checkpoint", "encoder"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))

    @property
    def blur_sigma(self) -> float:
        return self.blur_sigma_256 * self.preprocess.size / 256

    @property
    def data_range(self) -> float:
        low, high = self.preprocess.output_range
        return high - low

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "MSACL-IGD")


def describe(config: Config) -> dict[str, str]:
    source = ("MSACL encoder" if config.encoder else "local weights" if config.backbone_checkpoint
              else "random encoder")
    return {"backbone": f"ResNet18 ({source}) IGD @{config.preprocess.size}", "score_type": "igd"}


_OWN = ("latent", "dim", "xi")


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the method's default)."""
    own = {k: values[k] for k in _OWN if values.get(k) is not None}
    for name in ("backbone_checkpoint", "encoder"):
        if values.get(name) is not None:
            own[name] = str(Path(values[name]).resolve())
    return Config(**settings_values(values), **own, preprocess=preprocess_from(DEFAULT_PREPROCESS, values))


def check(config: Config, counts: dict[str, int]) -> list[Problem]:
    problems = []
    if config.backbone_checkpoint is not None and not Path(config.backbone_checkpoint).is_file():
        problems.append(Problem("--backbone-checkpoint", f"{config.backbone_checkpoint}: no such file"))
    if config.encoder is not None and not (Path(config.encoder) / "model.pt").is_file():
        problems.append(Problem("--encoder", f"{config.encoder}: not a finished run folder (no model.pt)"))
    if config.encoder is None and config.backbone_checkpoint is None:
        problems.append(Problem("--encoder", "no --encoder and no --backbone-checkpoint: IGD runs on a random frozen "
                                             "encoder (a floor for comparison; train an MSACL run first)",
                                level="warning"))
    return problems


_COMMON_DEVIATIONS = (
    "10 % of the known normals are held out for calibration and never trained on",
    "the last epoch's networks are kept (the code evaluates on the test set every 5 epochs)",
    "no horizontal flip (the code flips; a chest is lateralised) and one grayscale channel",
    "the frozen encoder runs in eval mode, so its features are computed once (the code leaves its BatchNorm "
    "layers in training mode)",
    "the heatmap is the blurred absolute residual (IGD's global model has no map)",
)
_SMALL_VALUES: dict[str, Any] = {"size": 64, "epochs": 60, "batch_size": 16, "lr": 1e-4, "latent": 128, "dim": 32,
                                 "xi": 0.5}
_SMALL_DEVIATIONS = (*_COMMON_DEVIATIONS, "64 px, width 32 and 60 epochs (the code: 256 px, width 64, 256 epochs), for "
                                          "2 CPU cores; MS-SSIM window 3 (11 needs more than 160 px)")
PRESETS: tuple[Preset, ...] = (
    robust_preset("The default: the small preset with each image cropped to its exposed field and "
                  "histogram-equalised, the preprocessing of MSACL's robust preset (its default), so the encoder "
                  "sees what it was pre-trained on. Against the small preset on the small MSACL encoder (seed 0; "
                  "bench/RESULTS.md): dev_test AUROC 0.914 (0.883; 0.876 ± 0.007 over three seeds); over 10 "
                  "simulated acquisition shifts mean AUROC 0.848 (0.734) and specificity at the promised 95 % 0.690"
                  " (0.571).",
                  _SMALL_VALUES, _SMALL_DEVIATIONS,
                  title="Robust to acquisition (recommended; needs a robust MSACL run)"),
    Preset("small", "Small (2 CPU cores; needs an MSACL run)",
           "IGD's global model at 64 px on a frozen encoder: give a finished MSACL run folder as the Encoder "
           "(--encoder; MSACL-IGD) or a ResNet18 weights file (--backbone-checkpoint); without either the encoder is "
           "random (the floor). Width 32, 60 epochs. The encoder's run must have had the same preprocessing "
           "(MSACL's small preset).",
           _SMALL_VALUES, deviations=_SMALL_DEVIATIONS),
    Preset("paper", "IGD's code setting (for a GPU; needs an MSACL run)",
           "IGD's p256 setting on the MSACL encoder: 256 px, latent 128, width 64, Adam 1e-4 betas (0, 0.9), "
           "batch 16, 256 epochs, ξ = 0.5.",
           {"size": 256, "epochs": 256, "batch_size": 16, "lr": 1e-4, "latent": 128, "dim": 64, "xi": 0.5},
           deviations=_COMMON_DEVIATIONS),
    Preset("tiny", "Tiny (tests only)",
           "Tests only (and smoke checks): 64 px, latent 16, width 8, 2 epochs of 4 images on a random encoder.",
           {"size": 64, "epochs": 2, "batch_size": 4, "latent": 16, "dim": 8},
           deviations=("tests only: not IGD's size, width or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__)  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="MSACL + IGD (frozen encoder, reconstruction and Gaussian descriptor)",
        paper="Tian et al., Self-supervised multi-class pre-training for unsupervised anomaly detection and "
              "segmentation in medical images, MedIA 2023; IGD: Chen et al., Deep one-class classification via "
              "interpolated Gaussian descriptor, AAAI 2022",
        summary="A decoder reconstructs each image from a latent of the frozen encoder, and the latents of normal "
                "images are drawn to one Gaussian: the score mixes the reconstruction error with the distance "
                "to that Gaussian. Give a finished MSACL run folder as the Encoder (--encoder).",
        roles=(Role("normal", "required", 3, "known-normal radiographs; 10 % are held out for calibration"),
               Role("unlabeled", "unused", 0, "not used: a one-class method"),
               Role("abnormal", "unused", 0, "not used: a one-class method")),
        settings=Config, presets=PRESETS,
        phases=(Phase("load", "Reading images"), Phase("features", "Encoder features"),
                Phase("train", "Training the decoder, descriptor and critic"),
                Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss", "generator", phase="train"), LossSeries("critic", "critic", phase="train")),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=SCORE_TYPES, hooks=_hooks, check=check, order=41,
        # IGD p256/ssim_main.py: latent 128, width 64 (generator and critic), batch 16, 256 epochs, Adam lr 1e-4
        # betas (0, 0.9) and weight decay 1e-6 on the generator, MS-SSIM share 0.85, critic 0.1, alpha in
        # [0, 0.5], c and sigma every 10 epochs, score 0.5 / 0.5
        paper_stated={"latent": 128, "dim": 64, "batch_size": 16, "epochs": 256, "lr": 1e-4, "weight_decay": 1e-6,
                      "ssim_weight": 0.85, "critic_weight": 0.1, "interpolation_max": 0.5, "descriptor_every": 10,
                      "xi": 0.5, "preprocess.size": 256},
    )


METHOD: Method = _declare  # the registered declaration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """IGD's options on ``parser`` (see :func:`engine.train_cli.add_method_arguments`)."""
    from cxrscreen.engine.train_cli import add_method_arguments

    add_method_arguments(parser, METHOD)


def load_scorer(run_dir: Path, score_type: str | None = None) -> Any:
    """See :func:`engine.methods.msacl_igd.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
