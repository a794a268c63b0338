"""The registry of training methods: one explicit table, one module per method.

Every method module provides:
    NAME: str
    Config: a frozen dataclass with ``to_dict()`` / ``from_dict()`` (its training settings,
        including ``preprocess``)
    DEFAULT_PREPROCESS: the method's input preprocessing (a PreprocessSpec)
    add_arguments(parser): the method's own command-line options (the shared ones, --epochs,
        --batch-size, --lr, --seed, --device, are `cxrscreen train`'s and default to None)
    config_from_args(args, preprocess) -> Config
    train(config, data, images, run_dir, progress, stop) -> bool
        trains; returns False when stopped early (a checkpoint was written)
    load_scorer(run_dir, score_type=None) -> torch.nn.Module
        image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)), in eval mode
    describe(config) -> dict with "backbone", "score_type"
These modules are torch-free (the CLI parser and the app import them); training code lives in
a submodule that imports torch when called.
"""
from __future__ import annotations

import importlib
from types import ModuleType

METHODS: dict[str, str] = {
    "ddad": "engine.methods.ddad",
    "amae": "engine.methods.amae",
}


def get_method(name: str) -> ModuleType:
    """The module implementing method ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])
