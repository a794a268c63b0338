"""The registry of training methods: every subpackage of this package is a method.

A method declares itself where it is defined (``engine/methods/<name>/__init__.py``) with
:func:`engine.methods.base.register`; importing this package imports each subpackage (found with
:mod:`pkgutil`, never named here), so a new method needs no edit outside its own folder. The
PyInstaller spec collects ``engine.methods`` submodules for the same reason. Everything here is
torch-free; each method's torch code is reached through its ``hooks``.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from cxrscreen.engine.methods.base import _REGISTRY, Method

_NOT_METHODS = {"base"}


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg and info.name not in _NOT_METHODS:
            importlib.import_module(f"{__name__}.{info.name}")


def registry() -> dict[str, Method]:
    """Every registered method by name, in display order (the default first)."""
    _discover()
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def method(name: str) -> Method:
    """The declaration of method ``name``."""
    methods = registry()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def default_method() -> str:
    return next(iter(registry()))


def get_method(name: str) -> ModuleType:
    """The settings module of method ``name`` (its ``Config``, ``describe``, ``load_scorer``...)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


_discover()
# method name -> its settings module (kept for callers that list methods by name)
METHODS: dict[str, str] = {name: f"{__name__}.{name}" for name in registry()}
