"""A small engine for the app's tests: answers as `cxrscreen` does, without torch.

Run as ``python fake_engine.py --record FILE [SUBCOMMAND ...]`` (the app's engine command is
``[python, fake_engine.py, --record, FILE]``); every call is appended to FILE as one JSON line
(its arguments), so a test reads the exact command lines the app ran.

- ``--version``: ``cxrscreen 9.9.9-test``;
- ``methods --json``: three methods that mirror the contract of `cxrscreen methods --json`:
  ``dual`` (DDAD-like: normal and unlabeled required), ``oneclass`` (normals only; unlabeled
  unused, abnormal optional) and ``weak`` (weakly supervised: abnormal required, unlabeled
  unused);
- ``train ... --check --progress json``: counts the images of each role, checks the role
  minimums and one cross-field rule (batch size at most the known normals), prints one
  ``problem`` line per problem and exits 0 when none is an error, 1 otherwise;
- ``train ... --progress json``: the method's phases, two epochs with its loss fields, ``done``;
- ``export``: fails (this engine has no networks), so a job stops before the library.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VERSION = "9.9.9-test"
IMAGE_SUFFIXES = (".png", ".dcm", ".jpg", ".jpeg")


def _role(role: str, requirement: str, min_count: int, help_text: str) -> dict:
    return {"role": role, "requirement": requirement, "min_count": min_count, "flag": f"--{role}", "help": help_text}


def _opt(name: str, type_: str, default=None, help_text: str = "", kind: str = "trained", choices=None,
         minimum=None, maximum=None) -> dict:
    return {"name": name, "flag": "--" + name.replace("_", "-"), "type": type_, "choices": choices, "default": default,
            "minimum": minimum, "maximum": maximum, "help": help_text, "kind": kind}


COMMON = [
    _opt("epochs", "int", None, "training epochs (default: the preset's)", minimum=1),
    _opt("batch_size", "int", None, "images per step (default: the method's)", minimum=2),
    _opt("lr", "float", None, "learning rate (default: the method's)", minimum=0.0),
    _opt("seed", "int", 0, "random seed", minimum=0),
    _opt("calibration_fraction", "float", 0.1, "fraction of the known normals held out to calibrate scores",
         minimum=0.01, maximum=0.5),
    _opt("device", "choice", "auto", "auto: the GPU when one works, else the CPU", "run", ["auto", "cpu", "cuda"]),
    _opt("threads", "int", 0, "CPU threads (0: one per core)", "run", minimum=0),
    _opt("checkpoint_every", "float", None, "seconds between checkpoints (default: every epoch)", "run", minimum=1.0),
    # the panel sets these itself: it must not show them as fields
    _opt("out", "path", None, "run folder"),
    _opt("progress", "choice", "auto", "progress output", "run", ["auto", "json", "bar", "none"]),
]
LOAD = {"name": "load", "title": "Reading images"}
CALIBRATE = {"name": "calibrate", "title": "Calibrating on held-out normals"}

METHODS = [
    {
        "name": "dual", "title": "Dual (dual-distribution discrepancy, test)",
        "paper": "Cai et al., Dual-distribution discrepancy for anomaly detection in chest X-rays, MICCAI 2022",
        "summary": "Two ensembles of autoencoders, one on the normals, one on normals and unlabeled images.",
        "roles": [_role("normal", "required", 6, "radiographs read as normal"),
                  _role("unlabeled", "required", 4, "the everyday mix, not read"),
                  _role("abnormal", "unused", 0, "not used by this method")],
        "options": [_opt("backbone", "choice", "ae-u", "autoencoder", choices=["ae", "ae-u", "memae"]),
                    _opt("members", "int", 3, "networks per module (K)", minimum=2, maximum=16),
                    _opt("augment", "bool", False, "acquisition augmentation")],
        "presets": [
            {"name": "paper", "title": "Paper protocol", "description": "AE-U, K = 3, 250 epochs at 64 px.",
             "as_published": True, "deviations": [], "values": {"backbone": "ae-u", "members": 3, "epochs": 250}},
            {"name": "quick", "title": "Quick", "description": "50 epochs: a first look.", "as_published": False,
             "deviations": ["50 epochs instead of 250"], "values": {"backbone": "ae-u", "members": 3, "epochs": 50}},
        ],
        "phases": [LOAD, {"name": "train", "title": "Training modules A and B"}, CALIBRATE],
        "loss_series": [{"key": "loss_a", "title": "module A"}, {"key": "loss_b", "title": "module B"}],
        "default_preprocess": {"size": 64, "aspect": "stretch", "intensity": "none", "output_range": [-1, 1]},
    },
    {
        "name": "oneclass", "title": "One-class (PaDiM-like, test)",
        "paper": "Defard et al., PaDiM, ICPR 2020",
        "summary": "Learns the normals only; unlabeled images are not used.",
        "roles": [_role("normal", "required", 5, "radiographs read as normal"),
                  _role("unlabeled", "unused", 0, "not used"),
                  _role("abnormal", "optional", 0, "confirmed abnormal images, only to report a validation figure")],
        "options": [_opt("layers", "choice", "2-3", "feature layers", choices=["1-2", "2-3", "1-3"]),
                    _opt("features", "int", 100, "random feature dimensions", minimum=10, maximum=550)],
        "presets": [
            {"name": "paper", "title": "Paper protocol", "description": "ResNet-18 features at 224 px.",
             "as_published": False, "deviations": ["ImageNet weights replaced by weights trained on the normals",
                                                    "10 % of the normals held out for calibration"],
             "values": {"layers": "1-3", "features": 100}},
            {"name": "small", "title": "Small", "description": "Fewer features, faster.", "as_published": False,
             "deviations": ["50 feature dimensions instead of 100"], "values": {"layers": "2-3", "features": 50}},
        ],
        "phases": [LOAD, {"name": "fit", "title": "Fitting the normal distribution"}, CALIBRATE],
        "loss_series": [],
        "default_preprocess": {"size": 224, "aspect": "stretch", "intensity": "none", "output_range": [0, 1]},
    },
    {
        "name": "weak", "title": "Weakly supervised (WSCXR-like, test)",
        "paper": "Li et al., WSCXR, 2024",
        "summary": "Normals and a few confirmed abnormal images.",
        "roles": [_role("normal", "required", 5, "radiographs read as normal"),
                  _role("unlabeled", "unused", 0, "not used"),
                  _role("abnormal", "required", 2, "a few radiographs with confirmed findings")],
        "options": [_opt("margin", "float", 0.5, "contrastive margin", minimum=0.0, maximum=2.0),
                    _opt("hard_negatives", "bool", True, "mine hard negatives")],
        "presets": [
            {"name": "paper", "title": "Paper protocol", "description": "As published.", "as_published": True,
             "deviations": [], "values": {"margin": 0.5, "epochs": 30, "lr": 3.75e-05}},
        ],
        "phases": [LOAD, {"name": "pretrain", "title": "Pre-training on the normals"},
                   {"name": "stage2", "title": "Learning from the abnormal images"}, CALIBRATE],
        "loss_series": [{"key": "loss", "title": "pre-training", "phase": "pretrain"},
                        {"key": "loss", "title": "contrastive", "phase": "stage2"}],
        "default_preprocess": {"size": 128, "aspect": "stretch", "intensity": "none", "output_range": [0, 1]},
    },
]


def methods_json() -> dict:
    return {"schema": 1, "engine_version": VERSION, "common_options": COMMON, "methods": METHODS}


def _emit(**event) -> None:
    print(json.dumps(event), flush=True)


def _count(folder: str | None) -> int:
    if folder is None:
        return 0
    return sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _train_parser(method: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrscreen train")
    p.add_argument("--method", required=True)
    p.add_argument("--preset", choices=[x["name"] for x in method["presets"]])
    p.add_argument("--check", action="store_true")
    for r in method["roles"]:
        p.add_argument(r["flag"])
    for o in [*COMMON, *method["options"]]:
        if o["type"] == "bool":
            p.add_argument(o["flag"], action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float}.get(o["type"], str)
            p.add_argument(o["flag"], type=kind, choices=o["choices"])
    return p


def train(argv: list[str]) -> int:
    name = argv[argv.index("--method") + 1]
    method = next((m for m in METHODS if m["name"] == name), None)
    if method is None:
        print(f"cxrscreen train: unknown method {name!r}", file=sys.stderr)
        return 2
    a = _train_parser(method).parse_args(argv)
    values = dict(method["presets"][0]["values"] if a.preset is None else
                  next(p["values"] for p in method["presets"] if p["name"] == a.preset))
    for o in [*COMMON, *method["options"]]:
        v = getattr(a, o["name"])
        if v is not None:
            values[o["name"]] = v
    problems: list[tuple[str, str | None, str]] = []
    counts = {}
    for r in method["roles"]:
        folder = getattr(a, r["role"])
        counts[r["role"]] = _count(folder)
        if r["requirement"] == "unused" and folder is not None:
            problems.append(("error", r["role"], f"{name} does not use {r['flag']}"))
        elif r["requirement"] == "required" and folder is None:
            problems.append(("error", r["role"], f"{name} needs {r['flag']}"))
        elif folder is not None and counts[r["role"]] < r["min_count"]:
            problems.append(("error", r["role"], f"{counts[r['role']]} {r['role']} images; {name} needs at least "
                                                 f"{r['min_count']}"))
    held_out = max(1, round(counts["normal"] * values.get("calibration_fraction", 0.1)))
    batch = values.get("batch_size")
    if batch is not None and batch > counts["normal"] - held_out:
        problems.append(("error", "batch_size", f"batch size {batch} is larger than the {counts['normal'] - held_out} "
                                                "known normals left for training"))
    if values.get("epochs") is not None and values["epochs"] > 1000:
        problems.append(("warning", "epochs", f"{values['epochs']} epochs will take long"))
    if a.check:
        for severity, option, message in problems:
            _emit(event="problem", severity=severity, option=option, message=message)
        return 1 if any(s == "error" for s, _, _ in problems) else 0
    errors = [m for s, _, m in problems if s == "error"]
    if errors:
        _emit(event="error", message=errors[0])
        return 1
    phases = [p["name"] for p in method["phases"]]
    for phase in phases:
        _emit(event="phase", phase=phase, total=2, device="cpu")
        keys = {s["key"] for s in method["loss_series"] if s.get("phase") in (None, phase)}
        if phase in ("load", "calibrate"):
            keys = set()
        for epoch in (1, 2):
            event = {"event": "progress", "phase": phase, "step": epoch, "total": 2, "epoch": epoch, "epochs": 2,
                     "epoch_end": True}
            event.update({k: phases.index(phase) / epoch for k in keys})  # each phase its own curve
            _emit(**event)
    _emit(event="done")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--record":
        print("usage: fake_engine.py --record FILE SUBCOMMAND ...", file=sys.stderr)
        return 2
    with open(argv[1], "a", encoding="utf-8") as f:
        f.write(json.dumps(argv[2:]) + "\n")
    argv = argv[2:]
    if argv == ["--version"]:
        print(f"cxrscreen {VERSION}")
        return 0
    if argv == ["methods", "--json"]:
        print(json.dumps(methods_json(), indent=1))
        return 0
    if argv and argv[0] == "train":
        return train(argv[1:])
    if argv and argv[0] == "export":
        print("cxrscreen export: the test engine has no networks to export", file=sys.stderr)
        return 1
    print(f"cxrscreen: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
