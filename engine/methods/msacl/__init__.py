"""MSACL (Tian, Liu, Pang, Wang, Chen, Shen, Verjans, Singh, Carneiro, "Self-supervised
Multi-class Pre-training for Unsupervised Anomaly Detection and Segmentation in Medical Images",
Medical Image Analysis 2023, arXiv:2109.01303) with the PaDiM detector: settings, presets and
command-line options (torch-free). The recipe is in ``recipe.py``, MedMix in ``medmix.py``, the
losses in ``losses.py``, the networks in ``models.msacl`` and ``models.padim``.

The paper's public repository holds only a README; its predecessor CCD (github.com/tianyu0207/CCD)
and anomalib's PaDiM (openvinotoolkit/anomalib) fill the defaults, cited where used.

1. Pre-training, on the known normals only: ResNet18 (timm, one input channel, random initial
   weights) with a projection head to 128-d, a 4-way augmentation classifier and an 8-way
   relative patch position head (``models.msacl``). Each image becomes four MedMix outputs,
   A0 (no lesion) to A3 (three lesions), each seen through two weak augmentations: 8 views per
   image. Loss = ℓ_ctr + ℓ_MSACL + ℓ_aug + ℓ_pos (Eq. 1, ``losses.py``): centre loss to frozen
   per-class centres, a contrastive loss on centred normalised features with same-class
   negatives weighted by κ, augmentation-class and patch-position cross-entropies. SGD lr 0.01,
   momentum 0.9, weight decay 3e-4, cosine schedule, batches of 32 images (paper §4.2, CCD
   ``colon_global/configs/pretext/simclr_global.yml``).
2. PaDiM on the pre-trained encoder (anomalib's defaults): layer1-3 features on layer1's grid,
   100 random channels, one Gaussian per grid position (covariance + 0.01·I), √Mahalanobis
   map, bilinear upsampling, Gaussian blur (σ = 4 px at 256 px), score = the map's maximum.
   One ONNX graph: encoder stages → Mahalanobis (vectorised over positions) → map → score.

The encoder has three sources, in this order: ``--encoder RUN`` (the encoder of another finished
MSACL run: one pre-training, several detectors), ``--backbone-checkpoint FILE`` (a local timm
ResNet18 state dict, read as plain tensors; three-channel input filters are summed to one,
timm's ``adapt_input_conv``), or pre-training here; ``--no-pretrain`` leaves it random (PaDiM on a
random encoder, the floor the paper's gain is measured against).

Choices (the paper is silent) and deviations: see the presets' deviations and
``medmix.py`` / ``losses.py``. IGD, the paper's second detector, is the method ``msacl_igd``
(``engine.methods.msacl_igd``), which takes this method's encoder with ``--encoder RUN``.
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

NAME = "msacl"
DeviceChoice = Literal["auto", "cpu", "cuda"]
SCORE_TYPES: tuple[str, ...] = ("max",)
DEFAULT_PREPROCESS = PreprocessSpec(size=64)
PADIM_CHANNELS = 448  # ResNet18 layer1 + layer2 + layer3: 64 + 128 + 256


@dataclass(frozen=True)
class Config:
    """MSACL + PaDiM settings; the defaults are the ``small`` preset.

    Attributes:
        encoder: a finished MSACL run folder whose encoder is reused (None: see ``backbone_checkpoint``).
        backbone_checkpoint: a local timm ResNet18 state dict (None: pre-train, or random).
        pretrain: pre-train the encoder with MSACL (False: PaDiM on a random encoder).
        medmix: MedMix classes A1-A3 (False: A0 only, the plain-contrastive ablation; no ℓ_aug).
        msacl_loss: centred features and the centre loss (False: SimCLR's NT-Xent, no ℓ_ctr).
        kappa: weight of same-class negatives (1: none down-weighted).
        temperature: τ of the contrastive loss.
        in_lungs: MedMix lesions only inside AnatPaste's lung mask.
        lesion_side: (min, max) lesion side as a fraction of the image side.
        patch_fraction: side of the position patches as a fraction of the image side (CCD: 32 / 256).
        epochs, batch_size, lr, momentum, weight_decay: the pre-training's SGD (batch in images;
            each gives 8 views), cosine schedule over every step.
        padim_dims: channels PaDiM keeps of ResNet18's 448 (anomalib: 100).
        padim_eps: the covariance regulariser ε·I (anomalib: 0.01).
        blur_sigma_256: σ of the heatmap blur in pixels at 256 px (anomalib: 4), scaled to the size.
        seed: seeds the network, MedMix, views, batch order and PaDiM's channels.
        preprocess: the shared preprocessing.
        device, checkpoint_every_s: run settings.
    """

    encoder: str | None = setting(None, flag="--encoder", type="path",
                                  path_kind="folder", help="a finished MSACL run folder whose pre-trained encoder is reused instead of "
                                       "pre-training one (same input size)")
    backbone_checkpoint: str | None = setting(None, flag="--backbone-checkpoint", type="path",
                                              path_kind="file", help="local timm ResNet18 state dict used as the encoder instead of "
                                                   "pre-training (read as plain tensors only)")
    pretrain: bool = setting(True, flag="--pretrain", help="pre-train the encoder with MSACL (--no-pretrain: PaDiM "
                                                            "on a random encoder, the floor for comparison)")
    medmix: bool = setting(True, flag="--medmix", help="MedMix lesion classes A1-A3 (--no-medmix: weak views only, "
                                                        "the plain-contrastive ablation)")
    msacl_loss: bool = setting(True, flag="--msacl-loss", help="centred features and the centre loss (--no-msacl-loss: "
                                                                "SimCLR's contrastive loss)")
    kappa: float = setting(0.05, flag="--kappa", minimum=0.0, maximum=1.0, exclusive_minimum=True,
                           help="κ: weight of same-class negatives in the contrastive loss (1: not down-weighted)")
    temperature: float = setting(0.2, flag="--temperature", minimum=0.0, exclusive_minimum=True,
                                 help="τ of the contrastive loss (CCD: 0.2)")
    in_lungs: bool = setting(True, flag="--in-lungs", help="paste MedMix lesions only inside the lungs (AnatPaste's "
                                                            "unsupervised lung mask)")
    lesion_side: tuple[float, float] = (0.08, 0.2)
    patch_fraction: float = 0.125
    epochs: int = setting(30, common=True, flag="--epochs")
    batch_size: int = setting(32, common=True, flag="--batch-size")
    lr: float = setting(0.01, common=True, flag="--lr")
    momentum: float = 0.9
    weight_decay: float = 3e-4
    padim_dims: int = setting(100, flag="--padim-dims", minimum=1, maximum=PADIM_CHANNELS,
                              help="PaDiM: channels kept (at random) of ResNet18's 448 layer1-3 channels")
    padim_eps: float = 0.01
    blur_sigma_256: float = 4.0
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")

    def __post_init__(self) -> None:
        if self.device not in get_args(DeviceChoice):
            raise ValueError(f"device must be one of {get_args(DeviceChoice)}, got {self.device!r}")
        if self.preprocess.size < 32:
            raise ValueError(f"the ResNet18 encoder needs an input size of at least 32 px, got {self.preprocess.size}")
        if self.encoder is not None and self.backbone_checkpoint is not None:
            raise ValueError("encoder (a run's encoder) and backbone_checkpoint (a weights file) exclude each other")
        if not self.pretrain and (self.encoder is not None or self.backbone_checkpoint is not None):
            raise ValueError("pretrain off means a random encoder; leave out --encoder / --backbone-checkpoint")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "temperature", "padim_eps", "blur_sigma_256"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.kappa <= 1.0:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if not 0.0 <= self.momentum < 1.0 or self.weight_decay < 0:
            raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum}, "
                             f"{self.weight_decay}")
        if not 1 <= self.padim_dims <= PADIM_CHANNELS:
            raise ValueError(f"padim_dims must be in [1, {PADIM_CHANNELS}], got {self.padim_dims}")
        low, high = (float(v) for v in self.lesion_side)
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"lesion_side must satisfy 0 < min <= max < 1, got {self.lesion_side}")
        if not 0.0 < self.patch_fraction <= 0.5:
            raise ValueError(f"patch_fraction must be in (0, 0.5], got {self.patch_fraction}")
        for name in ("backbone_checkpoint", "encoder"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        object.__setattr__(self, "lesion_side", (low, high))

    @property
    def blur_sigma(self) -> float:
        """σ of the heatmap blur in pixels at this input size."""
        return self.blur_sigma_256 * self.preprocess.size / 256

    @property
    def patch_side(self) -> int:
        """Side of the relative-position patches in pixels (at least 16, so ResNet18 keeps a 1 x 1 grid)."""
        return min(self.preprocess.size, max(16, round(self.patch_fraction * self.preprocess.size)))

    @property
    def source(self) -> Literal["run", "checkpoint", "msacl", "random"]:
        """Where the encoder comes from."""
        if self.encoder is not None:
            return "run"
        if self.backbone_checkpoint is not None:
            return "checkpoint"
        return "msacl" if self.pretrain else "random"

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "MSACL")


def backbone_name(config: Config) -> str:
    """The detector card's name of the backbone."""
    source = {"run": "reused MSACL encoder", "checkpoint": "local weights", "random": "random"}.get(config.source)
    if source is None:
        ablation = [name for name, on in (("no MedMix", config.medmix), ("no MSACL loss", config.msacl_loss)) if not on]
        if config.kappa == 1.0:
            ablation.append("κ = 1")
        source = "MSACL" + (f", {', '.join(ablation)}" if ablation else "")
    return f"ResNet18 ({source}) PaDiM @{config.preprocess.size}"


def describe(config: Config) -> dict[str, str]:
    return {"backbone": backbone_name(config), "score_type": "max"}


_OWN = ("pretrain", "medmix", "msacl_loss", "kappa", "temperature", "in_lungs", "padim_dims")


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the method's default)."""
    own = {k: values[k] for k in _OWN if values.get(k) is not None}
    for name in ("backbone_checkpoint", "encoder"):
        if values.get(name) is not None:
            own[name] = str(Path(values[name]).resolve())
    return Config(**settings_values(values), **own, preprocess=preprocess_from(DEFAULT_PREPROCESS, values))


def check(config: Config, counts: dict[str, int]) -> list[Problem]:
    """Settings the data cannot work with."""
    problems = []
    if config.backbone_checkpoint is not None and not Path(config.backbone_checkpoint).is_file():
        problems.append(Problem("--backbone-checkpoint", f"{config.backbone_checkpoint}: no such file"))
    if config.encoder is not None and not (Path(config.encoder) / "model.pt").is_file():
        problems.append(Problem("--encoder", f"{config.encoder}: not a finished run folder (no model.pt)"))
    if config.source == "random":
        problems.append(Problem("--pretrain", "no pre-training: PaDiM runs on a random encoder (a floor for "
                                              "comparison, not a detector)", level="warning"))
    n = counts.get("normal", 0)
    if config.source == "msacl" and 0 < n < config.batch_size:
        problems.append(Problem("--batch-size", f"a batch of {config.batch_size} images needs at least that many "
                                                f"training normals; {n} given", level="warning"))
    return problems


_COMMON_DEVIATIONS = (
    "10 % of the known normals are held out for calibration and never trained on (nor in PaDiM's Gaussians)",
    "MedMix lesion sizes and strengths, τ and κ are not in the paper: chosen (lesions 8-20 % of the side, "
    "τ = 0.2 as CCD, κ = 0.05 as MCL)",
    "grayscale input in [-1, 1] to a one-channel ResNet18 (the paper's channel handling is not stated)",
)
_SMALL_VALUES: dict[str, Any] = {
    "size": 64, "epochs": 30, "batch_size": 32, "lr": 0.01, "pretrain": True, "medmix": True, "msacl_loss": True,
    "kappa": 0.05, "temperature": 0.2, "in_lungs": True, "padim_dims": 100}
_SMALL_DEVIATIONS = (*_COMMON_DEVIATIONS, "64 px input (CCD: 256 px) and 30 epochs (CCD: 2000), for 2 CPU cores")
PRESETS: tuple[Preset, ...] = (
    robust_preset("The default: the small preset with each image cropped to its exposed field and "
                  "histogram-equalised, for the pre-training, PaDiM and scoring alike, so exposure, contrast "
                  "and borders matter less (a tighter or off-centre framing still does). Against the small preset "
                  "(seed 0; bench/RESULTS.md): dev_test AUROC 0.907 (0.878; 0.881 ± 0.011 over three seeds); "
                  "over 10 simulated acquisition shifts mean "
                  "AUROC 0.855 (0.725) and specificity at the promised 95 % 0.749 (0.546). Takes as long as the "
                  "small preset. MSACL-IGD on its encoder takes the same preprocessing (its robust preset).",
                  _SMALL_VALUES, _SMALL_DEVIATIONS),
    Preset("small", "Small (2 CPU cores)",
           "MSACL pre-training of a one-channel ResNet18 at 64 px on the known normals (MedMix inside the lungs, "
           "8 views per image, SGD lr 0.01, batch 32, 30 epochs), then PaDiM on its layer1-3 features (a 16 x 16 "
           "grid). An Encoder (a finished MSACL run folder, --encoder) reuses a pre-training; Pre-train the encoder "
           "off (--no-pretrain) gives PaDiM on a random encoder.",
           _SMALL_VALUES, deviations=_SMALL_DEVIATIONS),
    Preset("paper", "Paper protocol (for a GPU)",
           "The paper's recipe at CCD's 256 px: SGD lr 0.01, momentum 0.9, weight decay 3e-4, cosine, batch 32, "
           "loss weights 1; PaDiM with anomalib's defaults. Hours on a GPU.",
           {"size": 256, "epochs": 500, "batch_size": 32, "lr": 0.01, "pretrain": True, "medmix": True,
            "msacl_loss": True, "kappa": 0.05, "temperature": 0.2, "in_lungs": True, "padim_dims": 100},
           deviations=(*_COMMON_DEVIATIONS,
                       "500 pre-training epochs: the paper states none (CCD's configuration: 2000)",
                       "256 px input is CCD's (colon_local/lag_loader.py); the paper's own size is not stated")),
    Preset("tiny", "Tiny (tests only)",
           "Tests only (and smoke checks): 32 px, 2 pre-training epochs of 4 images, 16 PaDiM channels (seconds on "
           "a CPU; detects nothing real).",
           {"size": 32, "epochs": 2, "batch_size": 4, "padim_dims": 16},
           deviations=("tests only: not the paper's size or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__)  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="MSACL + PaDiM (self-supervised encoder, known normals only)",
        paper="Tian et al., Self-supervised multi-class pre-training for unsupervised anomaly detection and "
              "segmentation in medical images, Medical Image Analysis 2023 (arXiv:2109.01303); PaDiM: Defard et al., "
              "ICPR workshops 2021",
        summary="A ResNet18 pre-trained on the known normals to tell 0-3 synthetic lesions apart (MedMix, "
                "contrastive), then a Gaussian of its features at every position (PaDiM): the heatmap is each "
                "position's Mahalanobis distance.",
        roles=(Role("normal", "required", 3, "known-normal radiographs (pre-training and PaDiM's Gaussians); 10 % "
                                              "are held out for calibration"),
               Role("unlabeled", "unused", 0, "not used: a one-class method"),
               Role("abnormal", "unused", 0, "not used: a one-class method")),
        settings=Config, presets=PRESETS,
        phases=(Phase("load", "Reading images"), Phase("pretrain", "Pre-training the encoder (MSACL)"),
                Phase("fit", "PaDiM: Gaussians of the normal features"),
                Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss", "MSACL total", phase="pretrain"),
                     LossSeries("contrastive", "contrastive", phase="pretrain")),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=SCORE_TYPES, hooks=_hooks, check=check, order=40,
        # paper §4.2 (as the issue quotes it) and CCD colon_global/configs/pretext/simclr_global.yml: SGD lr 0.01,
        # momentum 0.9, weight decay 3e-4, batch 32, loss weights 1; anomalib PaDiM (torch_model.py): 100 channels,
        # covariance + 0.01 I, blur σ 4
        paper_stated={"lr": 0.01, "momentum": 0.9, "weight_decay": 3e-4, "batch_size": 32, "padim_dims": 100,
                      "padim_eps": 0.01, "blur_sigma_256": 4.0},
    )


METHOD: Method = _declare  # the registered declaration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """MSACL's options on ``parser`` (see :func:`engine.train_cli.add_method_arguments`)."""
    from cxrscreen.engine.train_cli import add_method_arguments

    add_method_arguments(parser, METHOD)


def load_scorer(run_dir: Path, score_type: str | None = None) -> Any:
    """See :func:`engine.methods.msacl.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
