"""The method contract: what a training method declares, and the registry (torch-free).

A method is declared once, where it is defined (``engine/methods/<name>/__init__.py``), with
:func:`register`::

    @register
    def _declare() -> Method:
        return Method(name="ddad", title=..., paper=..., summary=..., roles=(...),
                      settings=Config, presets=(...), phases=(...), loss_series=(...),
                      default_preprocess=PreprocessSpec(size=64), make_config=...,
                      hooks=recipe_hooks(__name__))  # its recipe.py: train, load_scorer, evaluate

Its settings class is a frozen dataclass whose fields carry :func:`setting` metadata (help,
flag, kind "trained" / "run", bounds, choices): the `cxrscreen train` options, `cxrscreen methods
--json`, the presets and the detector card all come from it. The torch code (training, scoring,
evaluation) is reached through ``hooks``, a callable returning a :class:`Hooks` (imported
only when training or scoring: this module and the settings modules never import torch).

:mod:`engine.methods` imports every subpackage of itself, so a new method is found without
editing any shared file (the PyInstaller spec collects ``engine.methods`` submodules).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from cxrscreen.engine.preprocess import Crop, Intensity, PreprocessSpec

Requirement = Literal["required", "optional", "unused"]
OptionType = Literal["int", "float", "choice", "bool", "text", "path"]
Kind = Literal["trained", "run"]
PathKind = Literal["file", "folder"]
ROLES: tuple[str, ...] = ("normal", "unlabeled", "abnormal")
ROLE_FLAGS = {"normal": "--normal", "unlabeled": "--unlabeled", "abnormal": "--abnormal"}


class SettingsError(ValueError):
    """A setting (option) has a value its method cannot use; the message names the option."""


@dataclass(frozen=True)
class Option:
    """One `cxrscreen train` option (the ``OPTION`` object of ``methods --json``).

    Attributes:
        name: the settings field (and the key in preset values).
        flag: the command-line option string.
        type: "int", "float", "choice", "bool", "text" or "path".
        help: one line for --help and the app's tooltip.
        kind: "trained" (part of what is learnt; a resume must match) or "run" (how it runs).
        default: the value used when the flag is not given (None: the preset's / method's).
        choices: allowed values of a "choice".
        minimum, maximum: numeric bounds (None: none); ``exclusive_minimum``: value must be > minimum.
        aliases: further (deprecated, hidden) option strings.
        field: the settings dataclass field this option sets, when it differs from ``name``.
        path_kind: for a "path" option, "file" or "folder" (what the app's Browse button opens).
    """

    name: str
    flag: str
    type: OptionType
    help: str
    kind: Kind = "trained"
    default: Any = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    aliases: tuple[str, ...] = ()
    field: str | None = None
    path_kind: PathKind | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "flag": self.flag, "type": self.type,
             "choices": list(self.choices) if self.choices is not None else None, "default": _plain(self.default),
             "minimum": self.minimum, "maximum": self.maximum, "help": self.help, "kind": self.kind}
        if self.exclusive_minimum:
            d["exclusive_minimum"] = True
        if self.path_kind is not None:
            d["path_kind"] = self.path_kind
        return d

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's type; :class:`SettingsError` naming the flag when not allowed."""
        if value is None:
            return None
        try:
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif self.type == "float":
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            elif self.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError
            elif self.type in ("text", "path", "choice"):
                value = str(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{self.flag} must be {'a finite ' if self.type == 'float' else 'an ' if self.type == 'int' else 'a '}"
                                f"{self.type}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise SettingsError(f"{self.flag} must be one of {', '.join(self.choices)}; got {value!r}")
        if self.minimum is not None:
            if self.exclusive_minimum and not value > self.minimum:
                raise SettingsError(f"{self.flag} must be > {self.minimum:g}, got {value!r}")
            if not self.exclusive_minimum and not value >= self.minimum:
                raise SettingsError(f"{self.flag} must be >= {self.minimum:g}, got {value!r}")
        if self.maximum is not None and not value <= self.maximum:
            raise SettingsError(f"{self.flag} must be <= {self.maximum:g}, got {value!r}")
        return value


def setting(default: Any = dataclasses.MISSING, *, help: str = "", flag: str | None = None, kind: Kind = "trained",
            type: OptionType | None = None, choices: Sequence[str] | None = None, minimum: float | None = None,
            maximum: float | None = None, exclusive_minimum: bool = False, option_default: Any = "same",
            aliases: Sequence[str] = (), option_name: str | None = None, common: bool = False,
            default_factory: Callable[[], Any] | None = None, path_kind: PathKind | None = None) -> Any:
    """A settings dataclass field with its option metadata.

    Args:
        default: the field's default.
        help: the option's help line.
        flag: the option string ("--members"); None: a setting with no command-line option.
        kind: "trained" or "run".
        type: the option type (default: from the default's Python type; "choice" with ``choices``).
        option_default: what ``methods --json`` reports as the default ("same": the field's;
            None: "the preset's / method's").
        option_name: the option's name when it differs from the field's.
        common: the field is set by a common `cxrscreen train` option (--epochs, --device, ...),
            not listed among the method's own.
        path_kind: a "path" option's "file" or "folder" (the app's Browse button).
    """
    meta = {"cxr": dict(help=help, flag=flag, kind=kind, type=type, choices=tuple(choices) if choices else None,
                        minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum,
                        option_default=option_default, aliases=tuple(aliases), option_name=option_name, common=common,
                        path_kind=path_kind)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _infer_type(default: Any, choices: tuple[str, ...] | None) -> OptionType:
    if choices:
        return "choice"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "text"


def field_kinds(settings_cls: type) -> dict[str, Kind]:
    """Every field of a settings class -> "trained" or "run" (fields without metadata are trained)."""
    return {f.name: f.metadata.get("cxr", {}).get("kind", "trained") for f in dataclasses.fields(settings_cls)}


def trained_dict(config: Any) -> dict[str, Any]:
    """``config.to_dict()`` without its run settings: what a resume must match."""
    kinds = field_kinds(type(config))
    return {k: v for k, v in config.to_dict().items() if kinds.get(k, "trained") == "trained"}


def own_options(settings_cls: type) -> tuple[Option, ...]:
    """The method's own options (fields with a flag that are not set by a common option)."""
    out = []
    defaults = settings_cls()
    for f in dataclasses.fields(settings_cls):
        meta = f.metadata.get("cxr")
        if not meta or not meta["flag"] or meta["common"]:
            continue
        value = getattr(defaults, f.name)
        default = value if meta["option_default"] == "same" else meta["option_default"]
        out.append(Option(name=meta["option_name"] or f.name, flag=meta["flag"],
                          type=meta["type"] or _infer_type(value, meta["choices"]), help=meta["help"], kind=meta["kind"],
                          default=_plain(default), choices=meta["choices"], minimum=meta["minimum"],
                          maximum=meta["maximum"], exclusive_minimum=meta["exclusive_minimum"], aliases=meta["aliases"],
                          field=f.name if meta["option_name"] else None, path_kind=meta.get("path_kind")))
    return tuple(out)


# the options of every method: their names are the keys a method's make_config receives
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("epochs", "--epochs", "int", "training epochs (default: the preset's or the method's)", minimum=1),
    Option("batch_size", "--batch-size", "int", "images per optimiser step (default: the preset's or the method's)",
           minimum=2),
    Option("lr", "--lr", "float", "learning rate (default: the preset's or the method's)", minimum=0.0,
           exclusive_minimum=True),
    Option("seed", "--seed", "int", "random seed (same data, settings and seed: the same detector)", default=0,
           minimum=0),
    Option("size", "--size", "int", "input size in pixels (default: the method's)", minimum=16, maximum=1024),
    Option("aspect", "--aspect", "choice", "how a non-square image becomes square", default="stretch",
           choices=("stretch", "center_crop", "pad")),
    # intensity and crop: no single default (DDAD's default preset equalises and crops, the papers' presets do not)
    Option("intensity", "--intensity", "choice", "intensity normalisation before the network, in training and "
           "scoring alike: none (the papers'), percentile (1-99 % stretch), equalize (histogram equalisation) or "
           "equalize-bands (equalisation with the strength of four detail bands fixed: less sensitive to another "
           "system's sharpening or softening) (default: the preset's or the method's)",
           choices=get_args(Intensity)),
    Option("crop", "--crop", "choice", "crop before the network, in training and scoring alike: none (the papers') "
           "or field (to the exposed field: no black or white borders, collimation or empty background) "
           "(default: the preset's or the method's)", choices=get_args(Crop)),
    Option("calibration_fraction", "--calibration-fraction", "float",
           "fraction of the known normals held out (never trained on) to calibrate scores", default=0.1,
           minimum=0.0, maximum=0.9, exclusive_minimum=True),
    Option("device", "--device", "choice", "auto: the GPU (CUDA) when one works, else the CPU", kind="run",
           default="auto", choices=("auto", "cpu", "cuda")),
    Option("threads", "--threads", "int", "torch CPU threads (0: one per core; 1 can be much faster on a CPU busy "
           "with other jobs)", kind="run", default=0, minimum=0),
    Option("workers", "--workers", "int", "image-decoding threads", kind="run", default=2, minimum=1),
    Option("checkpoint_every", "--checkpoint-every", "float", "seconds between checkpoints (and always when "
           "stopped)", kind="run", default=60.0, minimum=0.0),
)
# common options that are settings fields of every method's Config (others are the driver's or preprocess)
COMMON_FIELDS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "seed": "seed", "device": "device",
                 "checkpoint_every": "checkpoint_every_s"}
PREPROCESS_OPTIONS = ("size", "aspect", "intensity", "crop")
# The acquisition-robust preprocessing (issue 22): each image cropped to its exposed field and histogram-equalised,
# in training and scoring alike: the robust presets (robust_preset) and the dev benches' --robust. (DDAD's
# robust-field preset reaches the same two values through its own robust recipe.)
ROBUST_PREPROCESS: Mapping[str, str] = MappingProxyType({"crop": "field", "intensity": "equalize"})

TestTimeViews = Literal["none", "framing"]  # the names of engine.export.VIEW_SETS (a test keeps them equal)


def views_setting() -> Any:
    """The ``test_time_views`` run setting of a method whose detector file may score each image as the
    mean over it and a few re-framings (:data:`engine.export.VIEW_SETS`, read by
    :func:`engine.export.run_views`): a run setting, since it changes the exported file, not the
    networks. The default is "none" (as read); a preset sets "framing" where it was measured to help."""
    return setting("none", flag="--test-time-views", kind="run", choices=get_args(TestTimeViews), option_default=None,
                   help="score each image as read (none) or as the mean over it and six re-framings (framing; the "
                        "detector file runs every view); default: the preset's")


@dataclass(frozen=True)
class Role:
    """A data role of a method: "normal", "unlabeled" or "abnormal"."""

    role: str
    requirement: Requirement
    min_count: int = 0
    help: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "requirement": self.requirement, "min_count": self.min_count,
                "flag": ROLE_FLAGS[self.role], "help": self.help}


@dataclass(frozen=True)
class Preset:
    """Named settings of a method.

    Attributes:
        values: option name -> value (common or own options).
        as_published: every trained setting is the paper's (then ``deviations`` lists what
            still differs from the paper's protocol, e.g. the held-out calibration normals).
        deviations: each way the preset differs from the paper (empty only when it does not).
        tests_only: a configuration for tests (hidden from the app's form).
    """

    name: str
    title: str
    description: str
    values: Mapping[str, Any]
    as_published: bool = False
    deviations: tuple[str, ...] = ()
    tests_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "description": self.description,
                "as_published": self.as_published, "deviations": list(self.deviations),
                "values": {k: _plain(v) for k, v in self.values.items()}, "tests_only": self.tests_only}


def robust_preset(description: str, values: Mapping[str, Any], deviations: tuple[str, ...],
                  title: str = "Robust to acquisition (recommended)", name: str = "robust") -> Preset:
    """The ``robust`` preset of a method (or another of that kind, ``name``): ``values`` (another
    preset's) with :data:`ROBUST_PREPROCESS`, and that preset's deviations plus this one."""
    return Preset(name, title, description, {**values, **ROBUST_PREPROCESS},
                  deviations=(*deviations, "each image cropped to its exposed field and histogram-equalised (the "
                                            "paper: the whole frame, no intensity normalisation)"))


@dataclass(frozen=True)
class Phase:
    name: str
    title: str


@dataclass(frozen=True)
class LossSeries:
    key: str
    title: str
    phase: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"key": self.key, "title": self.title}
        if self.phase is not None:
            d["phase"] = self.phase
        return d


@dataclass(frozen=True)
class Problem:
    """Something in the data or settings a training cannot work with (``train --check``)."""

    option: str  # the flag to change ("--batch-size", "--normal", ...)
    message: str
    level: Literal["error", "warning", "note"] = "error"  # a note informs (what calibration will support)

    def to_json(self) -> dict[str, Any]:
        return {"option": self.option, "message": self.message, "level": self.level}


@dataclass(frozen=True)
class Hooks:
    """A method's torch code (built on demand by ``Method.hooks``).

    Attributes:
        train: (config, data, images, run_dir, progress, stop) -> bool; False when stopped.
        load_scorer: (run_dir, score_type=None) -> module: (N, 1, S, S) -> (score (N,), heatmap (N, S, S)).
        evaluate: (run_dir, images) -> {score type: (N,) scores}: every score type the method has.
    """

    train: Callable[..., bool]
    load_scorer: Callable[..., Any]
    evaluate: Callable[[Path, Any], dict[str, Any]]


def recipe_hooks(package: str, evaluate: str = "evaluate") -> Callable[[], Hooks]:
    """A method's ``hooks``: its ``<package>.recipe`` module (imported only when called: it imports
    torch), whose ``train``, ``load_scorer`` and ``evaluate`` (or the function named ``evaluate``) are
    the hooks."""

    def hooks() -> Hooks:
        import importlib

        recipe = importlib.import_module(f"{package}.recipe")
        return Hooks(train=recipe.train, load_scorer=recipe.load_scorer, evaluate=getattr(recipe, evaluate))

    return hooks


@dataclass(frozen=True)
class Method:
    """One training method's declaration.

    Attributes:
        make_config: option values (common and own, by option name; absent = not given) -> settings.
        describe: settings -> {"backbone", "score_type"} (the detector card's names).
        check: (settings, role counts) -> problems beyond the generic ones (batch vs images...).
        score_types: every score type the evaluation hook returns (the default first).
        hooks: () -> :class:`Hooks` (imports torch).
        paper_stated: the numbers the paper states, by settings path ("lr", "preprocess.size"),
            with the source in ``paper``: a preset named "paper" must hold every one of them
            (tests/engine/test_paper_presets.py checks every registered method).
        heatmap_tolerance: how closely the exported graph's heatmap must match PyTorch's
            (``engine.export``; scores are always held to the export's own tolerance): a method
            whose map is ill-conditioned in float32 states it, with the reason, in its declaration.
    """

    name: str
    title: str
    paper: str
    summary: str
    roles: tuple[Role, ...]
    settings: type
    presets: tuple[Preset, ...]
    phases: tuple[Phase, ...]
    loss_series: tuple[LossSeries, ...]
    default_preprocess: PreprocessSpec
    make_config: Callable[[dict[str, Any]], Any]
    describe: Callable[[Any], dict[str, str]]
    score_types: tuple[str, ...]
    hooks: Callable[[], Hooks]
    check: Callable[[Any, dict[str, int]], list[Problem]] = lambda config, counts: []
    order: int = 100  # display order (the lowest is the default method)
    paper_stated: Mapping[str, Any] = field(default_factory=dict)
    heatmap_tolerance: float = 1e-4

    @property
    def options(self) -> tuple[Option, ...]:
        return own_options(self.settings)

    @property
    def short_title(self) -> str:
        """The method's name for messages: its title before the parenthesis ("MemMC-MAE", "MSACL + IGD"),
        not the registry key ("memmc", "msacl_igd")."""
        return self.title.split(" (", 1)[0]

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.role == name)

    def preset(self, name: str | None) -> Preset:
        """The preset of this name (None: the default, the first)."""
        if name is None:
            return self.presets[0]
        for p in self.presets:
            if p.name == name:
                return p
        raise SettingsError(f"--preset must be one of {', '.join(p.name for p in self.presets)} for method "
                            f"{self.name}; got {name!r}")

    def option(self, name: str) -> Option:
        for o in (*COMMON_OPTIONS, *self.options):
            if o.name == name:
                return o
        raise SettingsError(f"method {self.name} has no option {name!r}")

    def config(self, preset: str | None = None, **given: Any) -> Any:
        """Settings from a preset (None: none, the method's defaults) with ``given`` option values
        (None: not given). `cxrscreen train` without --preset uses the default preset (the first)."""
        base = self.preset(preset).values if preset is not None else {}
        values = {**base, **{k: v for k, v in given.items() if v is not None}}
        checked = {k: self.option(k).check(v) for k, v in values.items()}
        return build_config(self, checked)

    def to_json(self) -> dict[str, Any]:
        if [r.role for r in self.roles] != list(ROLES):
            raise ValueError(f"method {self.name} must declare the roles {ROLES} in this order")
        return {
            "name": self.name, "title": self.title, "paper": self.paper, "summary": self.summary,
            "roles": [r.to_json() for r in self.roles],
            "options": [o.to_json() for o in self.options],
            "presets": [p.to_json() for p in self.presets],
            "phases": [{"name": p.name, "title": p.title} for p in self.phases],
            "loss_series": [s.to_json() for s in self.loss_series],
            "default_preprocess": self.default_preprocess.to_dict(),
            "score_types": list(self.score_types),
        }


def build_config(method: Method, values: dict[str, Any]) -> Any:
    """``method.make_config(values)`` with its settings errors naming the option."""
    try:
        return method.make_config(values)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        text = str(exc)
        for o in (*COMMON_OPTIONS, *method.options):
            fname = o.field or COMMON_FIELDS.get(o.name, o.name)
            if text.startswith(f"{fname} "):
                text = f"{o.flag}{text[len(fname):]}"
                break
        raise SettingsError(text) from None


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as plain JSON values: its PreprocessSpec as a dict, tuples as lists."""
    d = dataclasses.asdict(settings)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, PreprocessSpec):
            d[f.name] = value.to_dict()
        elif isinstance(value, tuple):
            d[f.name] = list(value)
    return d


def settings_from_dict(cls: type, d: Mapping[str, Any], what: str) -> Any:
    """The settings dataclass ``cls`` from :func:`settings_to_dict`'s values; unknown names are refused.

    A field whose default is a PreprocessSpec or a tuple gets its value back as one.
    """
    d = dict(d)
    fields = dataclasses.fields(cls)
    unknown = set(d) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}; known: {sorted(f.name for f in fields)}")
    for f in fields:
        if f.name not in d:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, PreprocessSpec):
            d[f.name] = PreprocessSpec.from_dict(d[f.name])
        elif isinstance(default, tuple):
            d[f.name] = tuple(d[f.name])
    return cls(**d)


def preprocess_from(d: PreprocessSpec, values: Mapping[str, Any], size: int | None = None) -> PreprocessSpec:
    """The input preprocessing: the method's default ``d`` (or ``size``), with --size / --aspect / --intensity /
    --crop applied."""
    return PreprocessSpec(size=values.get("size") or size or d.size, aspect=values.get("aspect") or d.aspect,
                          intensity=values.get("intensity") or d.intensity, output_range=d.output_range,
                          crop=values.get("crop") or d.crop)


def settings_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values -> settings field values for the common settings fields (epochs -> epochs, ...)."""
    return {COMMON_FIELDS[k]: v for k, v in values.items() if k in COMMON_FIELDS and v is not None}


def generic_problems(method: Method, config: Any, counts: Mapping[str, int]) -> list[Problem]:
    """Data roles against the declaration, and the held-out normals against the reported specificities."""
    problems = []
    for r in method.roles:
        n = counts.get(r.role, 0)
        flag = ROLE_FLAGS[r.role]
        who = method.short_title
        if r.requirement == "unused" and n:
            problems.append(Problem(flag, f"{who} does not use {r.role} images ({n} given); leave out {flag}"))
        elif r.requirement == "required" and n < r.min_count:
            problems.append(Problem(flag, f"{who} needs {r.role} images ({flag}): at least {r.min_count}, {n} given"))
        elif r.requirement == "optional" and 0 < n < r.min_count:
            problems.append(Problem(flag, f"{who} needs at least {r.min_count} {r.role} images when {flag} is "
                                          f"given; {n} given"))
    n_cal = counts.get("normal_calibration", 0)
    if "normal_calibration" in counts and n_cal < 20:
        problems.append(Problem("--calibration-fraction", f"only {n_cal} known normals are held out for calibration: "
                                f"a threshold at 95 % specificity needs at least 20 (raise --calibration-fraction or "
                                f"give more normals)", level="error" if n_cal < 1 else "warning"))
    if n_cal >= 1:  # before training: what the held-out normals will support (a threshold at s needs 1/(1-s))
        supported = [f"{100 * s:g} %" for s in (0.90, 0.95, 0.99) if n_cal >= math.ceil(round(1 / (1 - s), 6))]
        problems.append(Problem("--calibration-fraction", f"{n_cal} known normals will be held out to calibrate: "
                                + (f"thresholds at {', '.join(supported)} specificity rest on enough of them"
                                   if supported else "too few for any threshold at 90 % specificity or more")
                                + ("" if "99 %" in supported else " (99 % needs at least 100)"), level="note"))
    return problems


_REGISTRY: dict[str, Method] = {}


def register(declare: Callable[[], Method]) -> Method:
    """Decorator: registers the :class:`Method` that ``declare()`` returns and returns it (the
    decorated name is bound to the declaration)."""
    method = declare()
    if method.name in _REGISTRY:
        raise ValueError(f"two methods are named {method.name!r} ({_REGISTRY[method.name].settings.__module__}, "
                         f"{method.settings.__module__})")
    method.to_json()  # the declaration is complete and serialisable
    _REGISTRY[method.name] = method
    return method
