"""Methods from the engine's registry, their options and presets, and the train command line."""
from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.training import options
from app.training.options import method_info, method_names, train_arguments
from engine.methods import METHODS


def test_every_registered_method_is_offered_with_its_own_options() -> None:
    assert set(method_names()) == set(METHODS) and method_names()[0] == "ddad"
    ddad = method_info("ddad")
    assert ddad.presets[0].name == "paper" and ddad.option("backbone").choices == ("ae", "ae-u", "memae")
    assert ddad.option("members").default == 3 and ddad.option("epochs").hint == 250
    assert ddad.phases == ("load", "train", "calibrate") and not ddad.uses_abnormal
    amae = method_info("amae")
    assert {p.name for p in amae.presets} == {"quick", "paper"} and "pretrain" in amae.phases
    assert amae.option("amae_preset").choices[:2] == ("small", "paper")


def test_presets_become_exact_command_lines() -> None:
    ddad = method_info("ddad")
    args = train_arguments(ddad, ddad.values_for("paper"), Path("N"), Path("U"), Path("R"))
    assert args[:10] == ["train", "--method", "ddad", "--normal", "N", "--unlabeled", "U", "--out", "R", "--progress"]
    pairs = dict(zip(args[11::2], args[12::2]))
    assert (pairs["--backbone"], pairs["--members"], pairs["--epochs"]) == ("ae-u", "3", "250")
    assert "--batch-size" not in pairs and "--lr" not in pairs  # None: the method's own default
    # AMAE's paper preset must not get the small preset's epochs or size from the app
    amae = method_info("amae")
    pairs = dict(zip(*[iter(train_arguments(amae, amae.values_for("paper"), Path("N"), Path("U"), Path("R"))[11:])] * 2))
    assert pairs["--amae-preset"] == "paper" and "--epochs" not in pairs and "--size" not in pairs
    assert pairs["--amae-module-b"] == "pseudo-abnormal"  # as published
    quick = dict(zip(*[iter(train_arguments(amae, amae.values_for("quick"), Path("N"), Path("U"), Path("R"))[11:])] * 2))
    assert (quick["--amae-preset"], quick["--amae-module-b"]) == ("small", "normal+pseudo-abnormal")  # measured better
    # the command line parses with the engine's own parser
    from engine.cli import build_parser
    parsed = build_parser().parse_args(train_arguments(ddad, ddad.values_for("quick", {"epochs": 2}), Path("N"),
                                                       Path("U"), Path("R")))
    assert parsed.epochs == 2 and parsed.backbone == "ae-u" and parsed.members == 3
    # the robust preset: the paper's networks, equalised and augmented, in training and in the detector
    parsed = build_parser().parse_args(train_arguments(ddad, ddad.values_for("robust"), Path("N"), Path("U"), Path("R")))
    assert (parsed.intensity, parsed.augment, parsed.epochs, parsed.backbone) == ("equalize", "acquisition", 250, "ae-u")
    assert dict(zip(args[11::2], args[12::2]))["--intensity"] == "none"  # the paper preset: as published


def test_bad_values_are_refused_by_name() -> None:
    ddad = method_info("ddad")
    with pytest.raises(KeyError, match="no option 'colour'"):
        ddad.values_for("paper", {"colour": 1})
    with pytest.raises(ValueError, match="Autoencoder"):
        train_arguments(ddad, ddad.values_for("paper", {"backbone": "vit"}), Path("N"), Path("U"), Path("R"))
    with pytest.raises(ValueError, match="Epochs must be at least 1"):
        train_arguments(ddad, ddad.values_for("paper", {"epochs": 0}), Path("N"), Path("U"), Path("R"))
    with pytest.raises(ValueError, match="confirmed-abnormal"):
        train_arguments(ddad, ddad.values_for("paper"), Path("N"), Path("U"), Path("R"), abnormal=Path("A"))


def test_a_new_engine_method_appears_without_app_changes(monkeypatch) -> None:
    @dataclass(frozen=True)
    class Config:
        epochs: int = 7

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("weak options")
        g.add_argument("--abnormal", type=Path, help="confirmed-abnormal folder")
        g.add_argument("--margin", type=float, default=0.5, help="a margin (default: %(default)s)")
        g.add_argument("--hard", action="store_true", help="hard negatives")

    module = types.ModuleType("fake_weak_method")
    module.Config, module.add_arguments = Config, add_arguments
    monkeypatch.setitem(sys.modules, "fake_weak_method", module)
    monkeypatch.setitem(METHODS, "weak", "fake_weak_method")
    info = method_info("weak")
    assert info.uses_abnormal and info.presets[0].name == "defaults" and info.title == "WEAK"
    assert info.option("margin").kind == "float" and info.option("margin").help == "a margin (default: 0.5)"
    assert info.option("hard").kind == "flag" and info.option("epochs").hint == 7
    args = train_arguments(info, info.values_for("defaults", {"hard": True}), Path("N"), Path("U"), Path("R"),
                           abnormal=Path("A"))
    assert args[7:9] == ["--abnormal", "A"] and "--hard" in args and "--margin" in args
    assert "weak" in method_names()


def test_the_training_modules_never_load_torch() -> None:
    code = textwrap.dedent("""
        import sys
        from app.training import options, folders, job, panel  # noqa: F401
        from app import library_view, compare, model_tools  # noqa: F401
        for name in options.method_names():
            options.method_info(name)
        print("torch" in sys.modules, any(m.endswith(".recipe") for m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(options.__file__).resolve().parents[2], env={**__import__("os").environ,
                                                                                "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
