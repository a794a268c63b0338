"""Training methods as the New-detector panel offers them: the engine's registry, each method's
options, the shared `cxrscreen train` options, and presets.

The method list is :data:`engine.methods.METHODS`; each method's options are read from its own
torch-free settings module (``add_arguments`` on a throw-away parser, and ``Config()`` for
defaults), so a method the engine gains appears here without app changes. What the app adds
per method is presets (:data:`PRESETS`: quick / paper protocol) and a display title; a method
without presets gets one, "Method defaults". A method whose options include ``--abnormal``
(a confirmed-abnormal folder: weakly supervised methods) gets the third drop zone.

No Qt.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Mapping

from engine.methods import METHODS, get_method

OptionKind = Literal["choice", "int", "float", "text", "path", "flag"]
DEFAULT_METHOD = "ddad"


@dataclass(frozen=True)
class Option:
    """One `cxrscreen train` option the panel can set.

    Attributes:
        dest: the argparse destination ("members").
        flag: the option string passed to the engine ("--members").
        kind: how it is edited.
        default: the value the engine uses when the option is not passed (None: "the method's
            or the preset's").
        choices: allowed values of a "choice" option.
        help: the engine's help text (the tooltip).
        shared: a `cxrscreen train` option of every method (else the method's own).
        minimum: smallest allowed value of a number (None: no bound).
        hint: what the method uses when the option is not passed, where known (shown, not passed).
        runtime: where and how fast it runs, not what is trained (CPU threads, device): changing it
            keeps the preset.
    """

    dest: str
    flag: str
    kind: OptionKind
    default: Any = None
    choices: tuple[str, ...] = ()
    help: str = ""
    shared: bool = False
    minimum: float | None = None
    hint: Any = None
    runtime: bool = False

    @property
    def label(self) -> str:
        """The field's label ("Batch size")."""
        return LABELS.get(self.dest, self.flag.lstrip("-").replace("-", " ").capitalize())


@dataclass(frozen=True)
class Preset:
    """Named settings of a method.

    Attributes:
        name: "quick", "paper", ...
        title: what the combo box shows.
        description: what it does and what it costs, in a sentence or two.
        values: option values by ``dest`` (options not named keep their defaults).
    """

    name: str
    title: str
    description: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class MethodInfo:
    """A training method as the panel shows it.

    Attributes:
        name: the registry name ("ddad").
        title: the display title.
        options: the shared options, then the method's own.
        presets: the method's presets (the first is the default).
        phases: the engine's progress phases in order (for "phase 2 of 4").
        uses_abnormal: whether it takes a confirmed-abnormal folder (``--abnormal``).
    """

    name: str
    title: str
    options: tuple[Option, ...]
    presets: tuple[Preset, ...]
    phases: tuple[str, ...]
    uses_abnormal: bool

    def option(self, dest: str) -> Option:
        """The option with this destination."""
        for o in self.options:
            if o.dest == dest:
                return o
        raise KeyError(f"{self.name} has no option {dest!r}; it has {[o.dest for o in self.options]}")

    def preset(self, name: str) -> Preset:
        """The preset of this name."""
        for p in self.presets:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no preset {name!r}; it has {[p.name for p in self.presets]}")

    def values_for(self, preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value under a preset, with ``overrides`` (by dest) applied."""
        values = {o.dest: o.default for o in self.options}
        values.update(self.preset(preset).values)
        for k, v in (overrides or {}).items():
            self.option(k)  # unknown names are an error, not silently dropped
            values[k] = v
        return values


TITLES: dict[str, str] = {
    "ddad": "DDAD — dual-distribution discrepancy (Cai et al., MICCAI 2022)",
    "amae": "AMAE — adapted masked autoencoder (Bozorgtabar et al., MICCAI 2023)",
}
LABELS: dict[str, str] = {
    "epochs": "Epochs", "batch_size": "Batch size", "lr": "Learning rate", "seed": "Seed", "device": "Train on",
    "size": "Input size (px)", "intensity": "Intensity normalisation", "threads": "CPU threads", "calibration_fraction": "Held-out normals",
    "backbone": "Autoencoder", "members": "K (networks per module)", "latent_size": "Latent size",
    "score_type": "Score map", "precision": "Precision", "layout": "Member layout", "augment": "Augmentation",
    "reuse_normal_module": "Reuse module B from run", "amae_preset": "Architecture preset",
    "mae_checkpoint": "MAE checkpoint", "pretrain_epochs": "Pre-training epochs", "stage1_epochs": "Stage-1 epochs",
    "amae_score": "Exported detector", "amae_module_b": "Module B learns",
}
PRESETS: dict[str, tuple[Preset, ...]] = {
    "ddad": (
        Preset("paper", "Paper protocol",
               "DDAD with AE-U, K = 3, 250 epochs at 64 px, as published (Cai et al. 2022). On 2 CPU cores about "
               "20 min for 1,100 images (measured: 19 min for 600 normals + 500 unlabeled); minutes on a GPU.",
               {"backbone": "ae-u", "members": 3, "epochs": 250}),
        Preset("robust", "Robust to acquisition (recommended for other sites' images)",
               "The paper protocol plus histogram equalisation and acquisition augmentation (zoom, shift, rotation, "
               "exposure, blur, noise). On the dev protocol: dev_test AUROC 0.971 "
               "(paper 0.965), mean over 10 simulated acquisition shifts 0.940 (paper 0.874), real images of "
               "another batch 0.875 (paper 0.672; 16 images). Takes longer to train than the paper protocol.",
               {"backbone": "ae-u", "members": 3, "epochs": 250, "intensity": "equalize", "augment": "acquisition"}),
        Preset("quick", "Quick",
               "DDAD with AE-U, K = 3, 50 epochs: a fifth of the paper's training, for a first look at a site's "
               "data. Usually a little less accurate.",
               {"backbone": "ae-u", "members": 3, "epochs": 50}),
    ),
    "amae": (
        # the small MAE with the paper's module B inverts on the Kermany dev protocol (AUROC 0.467); with
        # module B also on the known normals it reaches 0.940-0.946 (bench/RESULTS.md, "AMAE")
        Preset("quick", "Quick (small MAE)",
               "AMAE with a small ViT at 64 px (pre-training 100, stage 1 40, stage 2 30 epochs): about 25 minutes "
               "on 2 CPU cores with one thread. Module B also learns the known normals (not the paper's choice: "
               "with this small model the paper's module B ranked normals above pneumonia).",
               {"amae_preset": "small", "amae_module_b": "normal+pseudo-abnormal"}),
        Preset("paper", "Paper protocol",
               "AMAE with ViT-S/16 at 224 px (pre-training 400, stage 1 50, stage 2 100 epochs), as published "
               "(Bozorgtabar et al. 2023): for a GPU (days on a CPU).",
               {"amae_preset": "paper", "amae_module_b": "pseudo-abnormal"}),
    ),
}
# shared `cxrscreen train` options the panel offers (the data, output and progress options are its own)
SHARED: tuple[Option, ...] = (
    Option("epochs", "--epochs", "int", None, help="training epochs (default: the method's or the preset's)", shared=True,
           minimum=1),
    Option("batch_size", "--batch-size", "int", None, help="images per step (default: the method's)", shared=True,
           minimum=2),
    Option("lr", "--lr", "float", None, help="learning rate (default: the method's)", shared=True, minimum=0.0),
    Option("size", "--size", "int", None, help="input size in pixels (default: the method's)", shared=True, minimum=16),
    Option("intensity", "--intensity", "choice", "none", ("none", "percentile", "equalize"),
           help="intensity normalisation before the network, in training and scoring alike: none (the papers'), "
           "percentile (1-99 % stretch) or equalize (histogram equalisation: exposure and contrast no longer "
           "matter)", shared=True),
    Option("seed", "--seed", "int", 0, help="random seed (same data and seed: the same detector)", shared=True, minimum=0),
    Option("device", "--device", "choice", "auto", ("auto", "cpu", "cuda"),
           help="auto: the GPU (CUDA) when one works, else the CPU", shared=True, runtime=True),
    Option("threads", "--threads", "int", 0, help="torch CPU threads (0: one per core; on a CPU busy with other "
           "jobs 1 can be much faster)", shared=True, minimum=0, runtime=True),
    Option("calibration_fraction", "--calibration-fraction", "float", 0.1,
           help="fraction of the known normals held out (never trained on) to calibrate scores", shared=True,
           minimum=0.01),
)
_SHARED_DESTS = {o.dest for o in SHARED}
# `cxrscreen train` options that are the panel's business, never a method option shown to the user
_NOT_SHOWN = {"help", "normal", "unlabeled", "abnormal", "out", "progress", "split", "ar", "root", "method", "workers",
              "checkpoint_every"}


def method_names() -> list[str]:
    """The engine's methods, the default first."""
    names = sorted(METHODS)
    return sorted(names, key=lambda n: n != DEFAULT_METHOD)


def method_info(name: str) -> MethodInfo:
    """A method's options, presets and phases, from its torch-free settings module."""
    module = get_method(name)
    own, uses_abnormal = _own_options(module)
    shared = tuple(_shared_default(o, module) for o in SHARED)
    presets = PRESETS.get(name) or (Preset("defaults", "Method defaults", "The method's own default settings.", {}),)
    phases = tuple(getattr(module, "PHASES", ("train",)))
    return MethodInfo(name, TITLES.get(name, name.upper()), shared + own, presets, ("load", *phases, "calibrate"),
                      uses_abnormal)


def _shared_default(option: Option, module: ModuleType) -> Option:
    """The shared option with the method's own default as a hint (epochs, batch size...).

    The default stays None (not passed to the engine): a method's presets may change these
    (AMAE's paper preset trains at 224 px for 100 epochs), so only a value the user or the
    app's preset chose is passed.
    """
    if option.default is not None:
        return option
    if option.dest == "size":
        pre = getattr(module, "DEFAULT_PREPROCESS", None)
        return dataclasses.replace(option, hint=getattr(pre, "size", None))
    try:
        config = module.Config()
    except (TypeError, ValueError):
        return option
    return dataclasses.replace(option, hint=getattr(config, option.dest, None))


def _own_options(module: ModuleType) -> tuple[tuple[Option, ...], bool]:
    parser = argparse.ArgumentParser(add_help=False)
    module.add_arguments(parser)
    out: list[Option] = []
    uses_abnormal = False
    # argparse keeps no public list of its options: _actions is the documented-by-use way to read them
    for action in parser._actions:
        if action.dest == "abnormal":
            uses_abnormal = True
        if not action.option_strings or action.dest in _NOT_SHOWN or action.dest in _SHARED_DESTS:
            continue
        flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        help_text = (action.help or "").replace("%(default)s", str(action.default))
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            kind: OptionKind = "flag"
        elif action.choices:
            kind = "choice"
        elif action.type is int:
            kind = "int"
        elif action.type is float:
            kind = "float"
        elif action.type is Path:
            kind = "path"
        else:
            kind = "text"
        out.append(Option(action.dest, flag, kind, action.default, tuple(str(c) for c in action.choices or ()),
                          help_text, minimum=1 if kind == "int" and action.dest.endswith(("members", "epochs")) else None))
    return tuple(out), uses_abnormal


def train_arguments(info: MethodInfo, values: Mapping[str, Any], normal: Path, unlabeled: Path, run_dir: Path,
                    abnormal: Path | None = None) -> list[str]:
    """The `train` subcommand's arguments for these settings (the engine command goes before them).

    Options whose value is None ("the method's default") are not passed; every other value is,
    so the run records exactly what was asked.
    """
    if abnormal is not None and not info.uses_abnormal:
        raise ValueError(f"{info.name} does not take a confirmed-abnormal folder")
    args = ["train", "--method", info.name, "--normal", str(normal), "--unlabeled", str(unlabeled)]
    if abnormal is not None:
        args += ["--abnormal", str(abnormal)]
    args += ["--out", str(run_dir), "--progress", "json"]
    for o in info.options:
        value = values.get(o.dest, o.default)
        if value is None or value == "":
            continue
        if o.kind == "flag":
            if value:
                args.append(o.flag)
            continue
        if o.kind == "choice" and str(value) not in o.choices:
            raise ValueError(f"{o.label}: {value!r} is not one of {list(o.choices)}")
        if o.minimum is not None and o.kind in ("int", "float") and float(value) < o.minimum:
            raise ValueError(f"{o.label} must be at least {o.minimum:g}, got {value}")
        args += [o.flag, _format(value)]
    return args


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
