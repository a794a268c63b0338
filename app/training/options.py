"""Training methods as the engine the app runs describes them: `[engine] methods --json`.

The app never imports the engine's methods: the engine it is configured to run (the *engine
command*, possibly another environment or version) prints one JSON object describing every
method — data roles, options, presets, phases, loss series (the contract is written down in
the engine's ``methods`` command) — and :func:`parse_methods_json` turns it into
:class:`MethodCatalog` / :class:`MethodInfo` / :class:`Option` / :class:`Preset` objects,
refusing a malformed or newer-schema JSON with a :class:`MethodsJsonError` that says what is
wrong in one sentence. :func:`read_catalog` runs the engine (blocking: call it off the GUI
thread) and caches the catalog per engine command and engine version.

:func:`train_arguments` builds the `train` command line the engine accepts:
``train --method NAME [--preset P] --normal DIR [--unlabeled DIR] [--abnormal DIR] --out RUN
[--FLAG VALUE ...] --progress json`` — only the options that differ from the preset are passed.
With ``check=True`` it ends in ``--check``: the engine validates the data and settings without
training and prints one ``problem`` JSON line per problem (:class:`CheckProblem`).

No Qt.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, get_args

logger = logging.getLogger(__name__)

SCHEMA = 1  # the methods-JSON schema this app reads
OptionType = Literal["int", "float", "choice", "bool", "text", "path"]
OptionKind = Literal["trained", "run"]
PathKind = Literal["file", "folder"]
Requirement = Literal["required", "optional", "unused"]
RoleName = Literal["normal", "unlabeled", "abnormal"]
ROLES: tuple[str, ...] = get_args(RoleName)
# `train` flags the panel sets itself (data, run folder, progress): never a field of the form
PANEL_FLAGS = frozenset({"--method", "--preset", "--normal", "--unlabeled", "--abnormal", "--out", "--progress",
                         "--check", "--split", "--root", "--ar", "--help"})
METHODS_TIMEOUT_S = 120.0  # a cold engine imports numpy, pydicom...: seconds, not minutes
LABELS: dict[str, str] = {
    # what the form calls an option the engine names; anything else: its name, capitalised
    "epochs": "Epochs", "batch_size": "Batch size", "lr": "Learning rate", "seed": "Seed", "device": "Train on",
    "size": "Input size (px)", "intensity": "Intensity normalisation", "threads": "CPU threads",
    "calibration_fraction": "Held-out normals (fraction)", "workers": "Image-decoding threads",
    "checkpoint_every": "Checkpoint every (s)", "backbone": "Backbone", "members": "K (networks per module)",
    "latent_size": "Latent size", "score_type": "Score map", "precision": "Precision", "augment": "Augmentation",
    "test_time_views": "Test-time views",
    # the newer methods' options, whose names are abbreviations ("Dim", "Xi", "Msacl loss" otherwise)
    "encoder": "Encoder (finished run folder)", "backbone_checkpoint": "Backbone weights (file)",
    "pretrain": "Pre-train the encoder", "medmix": "MedMix lesions", "msacl_loss": "MSACL loss",
    "kappa": "κ (same-class negatives)", "temperature": "τ (contrastive temperature)",
    "in_lungs": "Lesions inside the lungs", "padim_dims": "PaDiM channels", "latent": "Descriptor latent size",
    "dim": "Decoder and critic width", "xi": "ξ (reconstruction share)", "memory_slots": "Memory slots per block",
    "long_skips": "Long skips", "multi_level": "Multi-level decoder", "warmup_epochs": "Warm-up epochs",
    "test_masks": "Test masks per image", "mae_size": "MAE size", "pretrain_epochs": "Pre-training epochs",
}


class MethodsJsonError(ValueError):
    """The engine's description of its methods cannot be used.

    Attributes:
        source: where it came from (the command line, or a file).
        reason: what is wrong, in one sentence.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{reason} (from {source})" if source else reason)


@dataclass(frozen=True)
class Option:
    """One `cxrscreen train` option.

    Attributes:
        name: the settings field ("batch_size"; also the key in preset values).
        flag: what the command line takes ("--batch-size").
        type: how it is edited: "int", "float", "choice", "bool", "text" or "path".
        choices: the allowed values of a "choice" option.
        default: the value the engine uses when the flag is not given (None: the preset's or the
            method's own, not known here).
        minimum, maximum: numeric bounds (None: none).
        help: the engine's help text (the field's tooltip).
        kind: "trained" (part of what is learnt) or "run" (how it runs: device, threads...;
            may differ on resume and does not change the preset).
        common: a `cxrscreen train` option of every method (else the method's own).
        path_kind: a "path" option's "file" or "folder" (what its Browse button opens; None: a file).
    """

    name: str
    flag: str
    type: OptionType
    choices: tuple[str, ...] = ()
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    kind: OptionKind = "trained"
    common: bool = False
    path_kind: PathKind | None = None

    @property
    def label(self) -> str:
        """The field's label ("Batch size")."""
        return LABELS.get(self.name, self.name.replace("_", " ").capitalize())

    @property
    def runtime(self) -> bool:
        """Whether it is a run option (changing it keeps the preset)."""
        return self.kind == "run"

    def check(self, value: Any) -> None:
        """Raise ValueError, naming the field, when ``value`` is not allowed (None always is: not passed)."""
        if value is None:
            return
        if self.type == "choice" and str(value) not in self.choices:
            raise ValueError(f"{self.label}: {value!r} is not one of {list(self.choices)}")
        if self.type in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.label} must be a number, got {value!r}")
            if self.type == "int" and int(value) != value:
                raise ValueError(f"{self.label} must be a whole number, got {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{self.label} must be at least {self.minimum:g}, got {value}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{self.label} must be at most {self.maximum:g}, got {value}")

    def arguments(self, value: Any) -> list[str]:
        """The command-line words for ``value`` ([] for None)."""
        if value is None or value == "":
            return []
        self.check(value)
        if self.type == "bool":
            return [self.flag] if value else ["--no-" + self.flag[2:]]
        if self.type == "float":
            return [self.flag, repr(float(value))]
        if self.type == "int":
            return [self.flag, str(int(value))]
        return [self.flag, str(value)]


@dataclass(frozen=True)
class Role:
    """What a method does with one kind of data.

    Attributes:
        role: "normal", "unlabeled" or "abnormal" (confirmed-abnormal images).
        requirement: "required", "optional" or "unused".
        min_count: the fewest readable images it trains with, when given.
        flag: the command-line flag ("--normal").
        help: the engine's description for this method.
    """

    role: str
    requirement: Requirement
    min_count: int
    flag: str
    help: str = ""

    @property
    def used(self) -> bool:
        return self.requirement != "unused"


@dataclass(frozen=True)
class Preset:
    """Named settings of a method.

    Attributes:
        name: what ``--preset`` takes ("paper", "small", ...).
        title: what the combo box shows.
        description: what it does and what it costs.
        as_published: True only when every trained setting is the paper's.
        deviations: how it differs from the paper, one item each (for an as-published preset,
            differences of protocol only, e.g. the calibration hold-out).
        values: option values by option name (options not named keep their defaults).
    """

    name: str
    title: str
    description: str
    as_published: bool
    deviations: tuple[str, ...]
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Phase:
    """A phase of training as the progress JSON lines name it ("train") and the panel shows it."""

    name: str
    title: str


@dataclass(frozen=True)
class LossSeries:
    """A field of the epoch-end progress events to plot.

    Attributes:
        key: the event field ("loss_a").
        title: the legend ("module A").
        phase: the one phase it belongs to (None: whichever phase reports it).
    """

    key: str
    title: str
    phase: str | None = None


@dataclass(frozen=True)
class MethodInfo:
    """A training method as the engine describes it.

    Attributes:
        name: what ``--method`` takes.
        title, paper, summary: what the panel shows.
        roles: the three data roles, in the order normal, unlabeled, abnormal.
        options: the common `train` options, then the method's own.
        presets: in display order; the first is the default.
        phases: the progress phases in order.
        loss_series: what the loss plot shows.
        default_preprocess: the method's preprocessing (size, aspect, intensity...).
    """

    name: str
    title: str
    paper: str
    summary: str
    roles: tuple[Role, ...]
    options: tuple[Option, ...]
    presets: tuple[Preset, ...]
    phases: tuple[Phase, ...]
    loss_series: tuple[LossSeries, ...]
    default_preprocess: Mapping[str, Any] = field(default_factory=dict)

    def role(self, name: str) -> Role:
        """The role of this name ("normal", "unlabeled", "abnormal")."""
        for r in self.roles:
            if r.role == name:
                return r
        raise KeyError(f"no data role {name!r}; roles are {list(ROLES)}")

    def option(self, name: str) -> Option:
        """The option of this name."""
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(f"{self.name} has no option {name!r}; it has {[o.name for o in self.options]}")

    def preset(self, name: str) -> Preset:
        """The preset of this name."""
        for p in self.presets:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no preset {name!r}; it has {[p.name for p in self.presets]}")

    def phase_title(self, name: str) -> str:
        """The title of a phase (its name when the method does not list it)."""
        return next((p.title for p in self.phases if p.name == name), name)

    def values_for(self, preset: str | None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value under a preset (None: the defaults), with ``overrides`` applied."""
        values = {o.name: o.default for o in self.options}
        if preset is not None:
            values.update(self.preset(preset).values)
        for k, v in (overrides or {}).items():
            self.option(k)  # unknown names are an error, not silently dropped
            values[k] = v
        return values


@dataclass(frozen=True)
class MethodCatalog:
    """Every method of one engine.

    Attributes:
        engine_version: the engine's version.
        methods: in display order; the first is the default method.
        command: the engine command it was read from (empty when parsed from text).
    """

    engine_version: str
    methods: tuple[MethodInfo, ...]
    command: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.methods]

    def method(self, name: str) -> MethodInfo:
        """The method of this name."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"the engine (version {self.engine_version}) has no method {name!r}; it has {self.names}")


@dataclass(frozen=True)
class CheckProblem:
    """One problem `train --check` found.

    The engine prints, with ``--progress json``, one line per problem:
    ``{"event": "problem", "severity": "error" | "warning" | "note", "option": NAME, "message": TEXT}``
    where NAME is the option to change (an option name of the methods JSON, or a data role:
    "normal", "unlabeled", "abnormal") or null; it exits 0 when there is no error.

    Attributes:
        severity: "error" (training would fail) or "warning".
        option: the option or data role to change (None: not one option).
        message: the engine's sentence.
    """

    severity: Literal["error", "warning", "note"]
    option: str | None
    message: str

    @classmethod
    def from_event(cls, ev: Mapping[str, Any]) -> "CheckProblem":
        severity = ev.get("severity", "error")
        option = ev.get("option")
        message = ev.get("message")
        if severity not in ("error", "warning", "note") or not isinstance(message, str) or not message:
            raise ValueError(f"a problem line of `train --check` needs severity error|warning|note and a message, "
                             f"got {dict(ev)}")
        return cls(severity, str(option).lstrip("-").replace("-", "_") if option else None, message)


# ---------------------------------------------------------------------- parsing
class _Reader:
    """Typed access to one JSON object, with its path for error messages ("methods[1].options[3]")."""

    def __init__(self, obj: Any, where: str, source: str) -> None:
        if not isinstance(obj, dict):
            raise MethodsJsonError(source, f"{where} must be a JSON object, got {type(obj).__name__}")
        self.obj, self.where, self.source = obj, where, source

    def fail(self, key: str, what: str) -> MethodsJsonError:
        return MethodsJsonError(self.source, f"{self.where}.{key}: {what}")

    def get(self, key: str, kinds: type | tuple[type, ...], optional: bool = False, default: Any = None) -> Any:
        if key not in self.obj:
            if optional:
                return default
            raise self.fail(key, "missing")
        v = self.obj[key]
        if v is None and optional:
            return default
        if isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise self.fail(key, f"expected {_kind_text(kinds)}, got {v!r}")
        if not isinstance(v, kinds):
            raise self.fail(key, f"expected {_kind_text(kinds)}, got {v!r}")
        return v

    def text(self, key: str, optional: bool = False) -> str:
        return self.get(key, str, optional, "")

    def items(self, key: str, optional: bool = False) -> list[Any]:
        return self.get(key, list, optional, [])

    def literal(self, key: str, allowed: tuple[str, ...], optional: bool = False, default: str = "") -> str:
        v = self.get(key, str, optional, default)
        if v not in allowed:
            raise self.fail(key, f"{v!r} is not one of {list(allowed)}")
        return v


def _kind_text(kinds: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", float: "a number", bool: "true/false", list: "a list", dict: "an object"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_option(obj: Any, where: str, source: str, common: bool) -> Option:
    r = _Reader(obj, where, source)
    name = r.text("name")
    flag = r.text("flag")
    if not flag.startswith("--") or len(flag) < 3:
        raise r.fail("flag", f"{flag!r} is not a long option (--name)")
    type_ = r.literal("type", get_args(OptionType))
    choices = tuple(r.items("choices", optional=True))
    if type_ == "choice":
        if not choices or not all(isinstance(c, str) for c in choices):
            raise r.fail("choices", "a choice option needs a list of strings")
    else:
        choices = ()
    default = r.obj.get("default")
    number = (int, float)
    option = Option(name=name, flag=flag, type=type_, choices=choices, default=default,  # type: ignore[arg-type]
                    minimum=r.get("minimum", number, optional=True), maximum=r.get("maximum", number, optional=True),
                    help=r.text("help", optional=True),
                    kind=r.literal("kind", get_args(OptionKind), optional=True, default="trained"),  # type: ignore[arg-type]
                    common=common,
                    path_kind=(r.literal("path_kind", get_args(PathKind), optional=True, default="file")  # type: ignore[arg-type]
                               if type_ == "path" else None))
    try:
        option.check(default)
    except ValueError as exc:
        raise r.fail("default", str(exc)) from None
    if type_ == "bool" and default is not None and not isinstance(default, bool):
        raise r.fail("default", f"a bool option's default must be true, false or null, got {default!r}")
    return option


def _parse_method(obj: Any, where: str, source: str, common: tuple[Option, ...]) -> MethodInfo:
    r = _Reader(obj, where, source)
    name = r.text("name")
    where = f"methods[{name!r}]"
    r.where = where
    roles = []
    for i, ro in enumerate(r.items("roles")):
        rr = _Reader(ro, f"{where}.roles[{i}]", source)
        min_count = rr.get("min_count", int)
        if min_count < 0:
            raise rr.fail("min_count", f"must be 0 or more, got {min_count}")
        roles.append(Role(rr.literal("role", ROLES), rr.literal("requirement", get_args(Requirement)),  # type: ignore[arg-type]
                          min_count, rr.text("flag"), rr.text("help", optional=True)))
    if tuple(x.role for x in roles) != ROLES:
        raise r.fail("roles", f"must list the roles {list(ROLES)} in this order, got {[x.role for x in roles]}")
    if roles[0].requirement != "required":
        raise r.fail("roles", "the normal role must be required")
    own = tuple(o for o in (_parse_option(o, f"{where}.options[{i}]", source, common=False)
                            for i, o in enumerate(r.items("options"))) if o.flag not in PANEL_FLAGS)
    options = common + own
    names = [o.name for o in options]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise r.fail("options", f"option names used twice (common and own included): {dup}")
    by_name = {o.name: o for o in options}
    presets = []
    for i, po in enumerate(r.items("presets")):
        pr = _Reader(po, f"{where}.presets[{i}]", source)
        values = pr.get("values", dict)
        for k, v in values.items():
            if k not in by_name:
                raise pr.fail("values", f"{k!r} is not an option of {name}")
            try:
                by_name[k].check(v)
            except ValueError as exc:
                raise pr.fail("values", str(exc)) from None
        deviations = pr.items("deviations", optional=True)
        if not all(isinstance(d, str) for d in deviations):
            raise pr.fail("deviations", "must be a list of strings")
        presets.append(Preset(pr.text("name"), pr.text("title"), pr.text("description", optional=True),
                              pr.get("as_published", bool, optional=True, default=False), tuple(deviations),
                              dict(values)))
    if not presets:
        raise r.fail("presets", "a method needs at least one preset (the first is its default)")
    phases = []
    for i, ph in enumerate(r.items("phases")):
        pr = _Reader(ph, f"{where}.phases[{i}]", source)
        phases.append(Phase(pr.text("name"), pr.text("title")))
    series = []
    for i, ls in enumerate(r.items("loss_series", optional=True)):
        lr = _Reader(ls, f"{where}.loss_series[{i}]", source)
        series.append(LossSeries(lr.text("key"), lr.text("title"), lr.get("phase", str, optional=True)))
    return MethodInfo(name=name, title=r.text("title"), paper=r.text("paper", optional=True),
                      summary=r.text("summary", optional=True), roles=tuple(roles), options=options,
                      presets=tuple(presets), phases=tuple(phases), loss_series=tuple(series),
                      default_preprocess=dict(r.get("default_preprocess", dict, optional=True, default={})))


def parse_methods_json(text: str | bytes, source: str = "") -> MethodCatalog:
    """Read the output of `[engine] methods --json`.

    Args:
        text: the JSON.
        source: where it came from (for the error message).

    Raises:
        MethodsJsonError: it is not JSON, has another schema, or lacks or mistypes a field.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        first = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).strip().splitlines()
        raise MethodsJsonError(source, f"the engine did not print JSON ({exc}; it printed "
                                       f"{(first[0][:120] if first else 'nothing')!r})") from None
    r = _Reader(data, "the methods JSON", source)
    schema = r.get("schema", int)
    if schema > SCHEMA:
        raise MethodsJsonError(source, f"the engine describes its methods with schema {schema}; this app reads "
                                       f"schema {SCHEMA}: update the app, or point it at an older engine")
    if schema != SCHEMA:
        raise MethodsJsonError(source, f"the methods JSON has schema {schema}; this app reads schema {SCHEMA}")
    version = r.text("engine_version")
    common = tuple(o for o in (_parse_option(o, f"common_options[{i}]", source, common=True)
                               for i, o in enumerate(r.items("common_options"))) if o.flag not in PANEL_FLAGS)
    methods = tuple(_parse_method(m, f"methods[{i}]", source, common) for i, m in enumerate(r.items("methods")))
    if not methods:
        raise MethodsJsonError(source, "the engine lists no training method")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise MethodsJsonError(source, f"method names used twice: {names}")
    return MethodCatalog(version, methods)


# ---------------------------------------------------------------------- reading from the engine
_cache: dict[tuple[tuple[str, ...], str], MethodCatalog] = {}
_cache_lock = threading.Lock()


def _run(command: Sequence[str], args: list[str], timeout_s: float) -> str:
    """Run ``[command] + args``; its stdout, or a MethodsJsonError that says why not."""
    line = " ".join([*command, *args])
    try:
        out = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout_s,
                             encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise MethodsJsonError(line, f"the engine command {command[0]!r} is not a program "
                                     "(Detector ▸ Engine command…)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise MethodsJsonError(line, f"the engine could not be run ({exc})") from None
    if out.returncode != 0:
        last = [ln for ln in out.stderr.splitlines() if ln.strip()]
        raise MethodsJsonError(line, f"the engine failed (exit code {out.returncode}: "
                                     f"{last[-1].strip() if last else 'no message'})")
    return out.stdout


def engine_version(command: Sequence[str], timeout_s: float = METHODS_TIMEOUT_S) -> str:
    """What ``[engine] --version`` prints ("cxrscreen 0.2.0")."""
    return _run(command, ["--version"], timeout_s).strip()


def read_catalog(command: Sequence[str], timeout_s: float = METHODS_TIMEOUT_S) -> MethodCatalog:
    """The methods of the engine ``command`` runs (blocking: seconds; call it off the GUI thread).

    Cached per engine command and engine version: ``[engine] --version`` is asked each time (an
    engine updated under the same command is read again), ``methods --json`` only once.

    Raises:
        MethodsJsonError: the engine cannot be run, fails, or its JSON cannot be used.
    """
    command = tuple(command)
    if not command or not all(isinstance(c, str) and c for c in command):
        raise MethodsJsonError("", f"the engine command must be non-empty strings, got {list(command)!r}")
    key = (command, engine_version(command, timeout_s))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    source = " ".join([*command, "methods", "--json"])
    try:
        text = _run(command, ["methods", "--json"], timeout_s)
    except MethodsJsonError as exc:
        if "invalid choice: 'methods'" in exc.reason:  # argparse's words: no such subcommand
            raise MethodsJsonError(source, f"this engine ({key[1]}) has no `methods` command: it is older than the "
                                           "app; update the engine, or point the app at a newer one") from None
        raise
    catalog = parse_methods_json(text, source)
    catalog = MethodCatalog(catalog.engine_version, catalog.methods, command)
    with _cache_lock:
        _cache[key] = catalog
    logger.info("engine %s (%s): methods %s", source, key[1], catalog.names)
    return catalog


def clear_cache() -> None:
    """Forget every catalog read (the next :func:`read_catalog` runs the engine again)."""
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------------- command lines
def train_arguments(info: MethodInfo, values: Mapping[str, Any], folders: Mapping[str, Path | None], run_dir: Path,
                    preset: str | None, check: bool = False) -> list[str]:
    """The `train` subcommand's arguments (the engine command goes before them).

    Args:
        info: the method.
        values: option values by name (None: not passed).
        folders: the data folders by role ("normal", "unlabeled", "abnormal"; None: not given).
        run_dir: the run folder.
        preset: the preset the values start from (passed as ``--preset``; only values that differ
            from it are passed), or None: every value that is not None is passed.
        check: end with ``--check`` (validate the data and settings, do not train).

    Raises:
        ValueError: a required folder is missing, a folder is given for a role the method does
            not use, or a value is out of its bounds (the message names the field).
    """
    args = ["train", "--method", info.name]
    base: dict[str, Any] = {}
    if preset is not None:
        base = info.values_for(preset)
        args += ["--preset", preset]
    for role in info.roles:
        folder = folders.get(role.role)
        if folder is None:
            if role.requirement == "required":
                raise ValueError(f"{info.title} needs the {role.role} folder ({role.flag})")
            continue
        if not role.used:
            raise ValueError(f"{info.title} does not use a {role.role} folder ({role.flag})")
        args += [role.flag, str(folder)]
    args += ["--out", str(run_dir)]
    for o in info.options:
        value = values.get(o.name, base.get(o.name, o.default))
        o.check(value)
        if preset is not None and _same(value, base.get(o.name)):
            continue
        args += o.arguments(value)
    args += ["--progress", "json"]
    if check:
        args.append("--check")
    return args


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b)
