"""`cxrscreen train`: train a detector from folders (normal, unlabeled, abnormal) or a split file.

Examples:
    cxrscreen train --method ddad --normal NORMAL_DIR --unlabeled UNLABELED_DIR --out runs/site1
    cxrscreen train --method ddad --preset robust --normal NORMAL_DIR --unlabeled UNLABELED_DIR --out runs/site1
    cxrscreen train --method amae --preset quick --threads 1 --normal NORMAL_DIR --unlabeled UNLABELED_DIR --out runs/amae
    cxrscreen train --method ddad --split ../shared/data/kermany/splits/dev.json --ar 0.6 --out runs/dev
    cxrscreen train --method wscxr --split ../shared/data/kermany/splits/dev.json --shots 16 --seed 1 --out runs/ws
    cxrscreen train --method ddad --normal NORMAL_DIR --unlabeled UNLABELED_DIR --out runs/site1 --check

``cxrscreen train --method NAME --help`` lists the common options and only that method's options
and presets (``cxrscreen methods`` lists the methods). Every option not given takes the preset's
value (``--preset``; the method's first preset by default), else the method's default.

``--check`` validates the data and the settings together (a batch larger than a module's images,
too few held-out normals, a data role the method does not use...) without training: it prints
the problems, each naming the option to change (JSON with ``--progress json``), and exits 0 when
none is an error, 1 otherwise. With unlabeled images it also takes a first look (200 images of
each set, :func:`engine.train.unlabeled_precheck`; the answer is kept in the user's cache folder,
so a settings change re-reads nothing) at whether they were acquired like the known
normals, and warns when not (training itself checks up to 600 of each, before the first step).

Progress: a bar on a terminal, JSON lines on stdout otherwise (``--progress json`` forces them;
see :mod:`engine.progress`). Ctrl-C (or SIGTERM) stops after the current epoch with a
checkpoint; the same command resumes (run options such as --device, --threads or
--checkpoint-every may differ). Exit codes: 0 done, 1 error, 2 bad option, 3 stopped.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cxrscreen.engine.cli_args import positive_int
from cxrscreen.engine.methods import default_method, registry
from cxrscreen.engine.methods.base import COMMON_OPTIONS, Method, Option, SettingsError

logger = logging.getLogger(__name__)
EXIT_STOPPED = 3
EXIT_USAGE = 2
_NOT_GIVEN = None


def _method_in(argv: list[str]) -> str | None:
    """The --method value of a command line (None when absent)."""
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return None


def _add_option(group: argparse._ArgumentGroup, parser: argparse.ArgumentParser, o: Option, shared: bool = False) -> None:
    """One option (default None: "not given"); a flag another method already added is shared
    (``shared``: its choices are then checked when the chosen method's settings are built)."""
    taken = {s for a in parser._actions for s in a.option_strings}
    strings = [s for s in (o.flag, *o.aliases) if s not in taken]
    if not strings:
        return
    if o.default is None:
        default_text = ""
    elif o.type == "bool":  # say which of the two flags applies, not "True"
        default_text = f" (default: {o.flag if o.default else '--no-' + o.flag[2:]})"
    else:
        default_text = f" (default: {o.default})"
    kwargs: dict[str, Any] = dict(dest=o.name, default=_NOT_GIVEN, help=o.help.replace("%", "%%") + default_text)
    if o.type == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = {"int": int, "float": float}.get(o.type, str)
        if o.type == "choice":
            kwargs["metavar"] = "{" + ",".join(o.choices or ()) + "}"
            if not shared:
                kwargs["choices"] = o.choices
        else:
            kwargs["metavar"] = {"int": "N", "float": "X", "path": "PATH"}.get(o.type, "TEXT")
    if strings[0] == o.flag:
        group.add_argument(o.flag, **kwargs)
    for alias in (s for s in strings if s != o.flag):  # other spellings (-K; deprecated --amae-*): accepted, not shown
        group.add_argument(alias, **{**kwargs, "help": argparse.SUPPRESS})


def add_method_arguments(parser: argparse.ArgumentParser, method: Method, shared: frozenset[str] = frozenset()) -> None:
    """The options of ``method`` and a list of its presets, as one argument group (``shared``:
    flags other methods also have, registered once without argparse choices)."""
    presets = "; ".join(f"{p.name}{' (default)' if i == 0 else ''}: {p.title}" for i, p in enumerate(method.presets))
    group = parser.add_argument_group(f"{method.name} options ({method.title})", f"presets (--preset): {presets}")
    for o in method.options:
        _add_option(group, parser, o, shared=o.flag in shared)


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    """`cxrscreen train`'s options: the common ones, and the chosen method's.

    Args:
        argv: the command line; its ``--method`` selects whose options are added (the default
            method's when absent). None: every method's options (a flag two methods share is one
            option, validated against the chosen method when the settings are built).
    """
    methods = registry()
    chosen = _method_in(argv) if argv is not None else None
    if argv is not None and chosen is None:
        chosen = default_method()
    parser.add_argument("--method", choices=list(methods), default=default_method(),
                        help="training method (default: %(default)s; `cxrscreen methods` describes them)")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="the method's named settings (default: its first preset; listed with the method's options)")
    data = parser.add_argument_group("data (folders, or a split file)")
    data.add_argument("--normal", type=Path, metavar="DIR", help="folder of known-normal radiographs (D_n)")
    data.add_argument("--unlabeled", type=Path, metavar="DIR", help="folder of unlabeled radiographs (D_u)")
    data.add_argument("--abnormal", type=Path, metavar="DIR",
                      help="folder of confirmed-abnormal radiographs (weakly supervised methods only)")
    data.add_argument("--split", type=Path, metavar="JSON", help="split file of the development protocol")
    data.add_argument("--ar", type=float, default=0.6, metavar="RATE",
                      help="anomaly rate of D_u drawn from the split's unlabeled pool (default: %(default)s)")
    data.add_argument("--root", type=Path, metavar="DIR", help="folder the split's paths are relative to "
                      "(default: the parent of its 'splits' folder)")
    data.add_argument("--shots", type=positive_int, metavar="K",
                      help="with --split, for methods that learn from confirmed-abnormal images: K of the split's "
                           "fewshot.abnormal, drawn across patients with --seed (one image per patient in turn; "
                           "a seed's smaller K are subsets of its larger K)")
    common = parser.add_argument_group("common options (every method)")
    for o in COMMON_OPTIONS:
        _add_option(common, parser, o)
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder (resumed if it exists)")
    run.add_argument("--progress", choices=("auto", "json", "bar", "none"), default="auto", help="default: %(default)s")
    run.add_argument("--check", action="store_true",
                     help="validate the data and settings without training; print the problems (exit 0: none)")
    flags = [o.flag for m in methods.values() for o in m.options]
    shared = frozenset(f for f in flags if flags.count(f) > 1) if chosen is None else frozenset()
    for name, method in methods.items():
        if chosen is None or name == chosen:
            add_method_arguments(parser, method, shared)


def given_values(method: Method, args: argparse.Namespace) -> dict[str, Any]:
    """The option values given on the command line (common and the method's own)."""
    values = {}
    for o in (*COMMON_OPTIONS, *method.options):
        v = getattr(args, o.name, None)
        if v is not None:
            values[o.name] = v
    own = {o.name for o in method.options} | {o.name for o in COMMON_OPTIONS}
    for other in registry().values():  # a flag of another method (union parser): refuse, do not ignore
        for o in other.options:
            if o.name not in own and getattr(args, o.name, None) is not None:
                raise SettingsError(f"{o.flag} is not an option of method {method.name}")
    return values


def config_from_namespace(method: Method, args: argparse.Namespace, default_preset: bool = False) -> Any:
    """Settings from parsed options: ``--preset`` (with ``default_preset``, the method's first
    when absent) and every option given."""
    preset = getattr(args, "preset", None)
    if preset is None and default_preset:
        preset = method.presets[0].name
    return method.config(preset, **given_values(method, args))


def _run_value(args: argparse.Namespace, name: str) -> Any:
    o = next(o for o in COMMON_OPTIONS if o.name == name)
    v = getattr(args, name, None)
    return o.default if v is None else o.check(v)


def _usage_error(message: str) -> int:
    """One line on stderr and exit 2 (as argparse's own usage errors)."""
    print(f"cxrscreen train: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run(args: argparse.Namespace) -> int:
    from cxrscreen.engine.datasets import DataError
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.train import RunFolderError, check_training, run_training

    method = registry()[args.method]
    try:
        config = config_from_namespace(method, args, default_preset=True)
        threads, workers = _run_value(args, "threads"), _run_value(args, "workers")
        fraction = _run_value(args, "calibration_fraction")
    except SettingsError as exc:
        return _usage_error(str(exc))
    if args.split is not None and (args.normal is not None or args.unlabeled is not None or args.abnormal is not None):
        return _usage_error("give either --split or --normal/--unlabeled/--abnormal, not both")
    if args.split is None and args.normal is None:
        return _usage_error("give the data: --normal DIR (and --unlabeled DIR / --abnormal DIR as the method needs), "
                            "or --split JSON")
    abnormal_role = next(r.requirement for r in method.roles if r.role == "abnormal")
    shots = getattr(args, "shots", None)
    if shots is not None and args.split is None:
        return _usage_error("--shots draws from a split file's fewshot.abnormal: give --split JSON, or the "
                            "confirmed-abnormal images as --abnormal DIR")
    if shots is not None and abnormal_role == "unused":
        return _usage_error(f"--shots: {method.short_title} does not use confirmed-abnormal images; leave it out")
    if args.split is not None and shots is None and abnormal_role == "required":
        return _usage_error(f"{method.short_title} needs confirmed-abnormal images: with --split, give --shots K "
                            "(K of the split's fewshot.abnormal)")
    if args.out.exists() and not args.out.is_dir():
        return _usage_error(f"--out {args.out} is a file; give a run folder (new, or a run to resume)")
    progress = Progress(args.progress, log_path=None)
    if args.check:
        from cxrscreen.engine.methods.base import Problem

        try:
            data = _data(args, fraction, config)
        except DataError as exc:  # the data itself: the problem is the folder (or split) it names
            given = [(f"--{r}", getattr(args, r)) for r in ("normal", "unlabeled", "abnormal", "split")]
            option = "--shots" if "--shots" in str(exc) else next(
                (flag for flag, path in given if path is not None and str(path) in str(exc)),
                "--split" if args.split is not None else "--normal")
            return _report_check([Problem(option, str(exc))], args.progress)
        problems = check_training(args.method, config, data)
        if data.unlabeled and not any(p.level == "error" for p in problems):
            from cxrscreen.engine.acquisition import MAX_REFERENCE
            from cxrscreen.engine.train import PRECHECK_IMAGES, unlabeled_precheck

            import platformdirs

            mix = unlabeled_precheck(data, workers=workers,
                                     cache=Path(platformdirs.user_cache_dir("cxrscreen")) / "unlabeled-precheck")
            if mix is not None and mix.differs:
                problems.append(Problem("--unlabeled", f"{mix.message} (A first look at {PRECHECK_IMAGES} images of "
                                                       f"each set; training checks up to {MAX_REFERENCE}.)", "warning"))
        return _report_check(problems, args.progress)
    try:
        data = _data(args, fraction, config)
        args.out.mkdir(parents=True, exist_ok=True)
        progress = Progress(args.progress, log_path=args.out / "log.jsonl")
        whole = " as whole patients" if data.source.get("hold_out", {}).get("unit") == "patient" else ""
        progress.message(f"{args.method}: {len(data.normal_train)} normal (+{len(data.normal_calibration)} held out for "
                         f"calibration{whole}), {len(data.unlabeled)} unlabeled, {len(data.abnormal)} abnormal images -> "
                         f"{args.out}")
        from cxrscreen.engine.torch_runtime import set_threads

        set_threads(threads)
        stop = StopRequest()
        stop.on_first_request = lambda: progress.message("stop requested: finishing the current epoch, then saving a checkpoint "
                                                         "(Ctrl-C again aborts at once)", level="warning")
        with stop:
            outcome = run_training(args.method, config, data, args.out, progress, stop, workers=workers)
    except (DataError, RunFolderError, OSError) as exc:
        progress.finish("error", message=str(exc))
        if progress.mode != "json":
            logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        progress.finish("stopped", message="aborted; the last checkpoint is kept")
        return EXIT_STOPPED
    if outcome.status == "stopped":
        return EXIT_STOPPED
    if progress.mode != "json":
        print(f"trained in {outcome.summary.get('train_seconds', 0):.0f} s -> {args.out}\n"
              f"export it with: cxrscreen export {args.out} --out detector.onnx")
    return 0


def _data(args: argparse.Namespace, fraction: float, config: Any) -> Any:
    from cxrscreen.engine.datasets import from_folders, from_split

    if args.split is not None:
        data = from_split(args.split, args.ar, root=args.root, calibration_fraction=fraction,
                          shots=getattr(args, "shots", None), shots_seed=config.seed)
        if next(r.requirement for r in registry()[args.method].roles if r.role == "unlabeled") == "unused":
            # a one-class method: the split's D_u is not drawn (not refused as if --unlabeled had been given)
            data = data.without_unlabeled()
        return data
    return from_folders(args.normal, args.unlabeled, calibration_fraction=fraction, abnormal_dir=args.abnormal)


def _report_check(problems: list[Any], mode: str) -> int:
    errors = [p for p in problems if p.level == "error"]
    if mode == "json":
        for p in problems:  # one line per problem (the app's panel reads these), then the summary
            print(json.dumps({"event": "problem", "severity": p.level, "option": p.option, "message": p.message}), flush=True)
        print(json.dumps({"event": "check", "ok": not errors, "problems": [p.to_json() for p in problems]}), flush=True)
    else:
        for p in problems:
            print(f"{p.level}: {p.option}: {p.message}")
        if not problems:
            print("ok: the data and settings can be trained")
    return 1 if errors else 0
