"""The install profiles' modules, as pyproject.toml's ``[tool.cxrscreen.profiles]`` declares them.

A module needs the ``[engine]`` extra when it matches one of ``engine-modules`` (fnmatch
patterns over installed names, such as ``cxrscreen.models.*`` or
``cxrscreen.engine.methods.*.recipe``); every other module under ``app/``, ``engine/`` and
``models/`` (installed as ``cxrscreen.app`` etc.) belongs to the base profile. Read from the source tree
(nothing is imported), so the PyInstaller spec, the tests and the benchmarks agree. Loaded by
file path (``runpy.run_path``), not imported: this folder is not a package.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("app", "engine", "models")  # the folders, installed as NAMESPACE.<folder>
NAMESPACE = "cxrscreen"


def profiles_table(repo: Path = REPO) -> dict[str, Any]:
    """``[tool.cxrscreen.profiles]`` of ``repo``'s pyproject.toml."""
    data = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return data["tool"]["cxrscreen"]["profiles"]


def all_modules(repo: Path = REPO) -> list[str]:
    """Every first-party module of the source tree by its installed name (packages by their own
    name, the parent package ``cxrscreen`` included), sorted."""
    names = []
    for top in FIRST_PARTY:
        for f in (repo / top).rglob("*.py"):
            parts = f.relative_to(repo).with_suffix("").parts
            if parts[-1] == "__main__":
                continue  # runs the program when imported (`python -m cxrscreen.engine`)
            names.append(".".join((NAMESPACE, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return sorted({NAMESPACE, *names})


def is_engine_module(name: str, patterns: list[str]) -> bool:
    """Whether module ``name`` needs the [engine] extra (matches one of ``patterns``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def engine_modules(repo: Path = REPO) -> list[str]:
    """The first-party modules that need the [engine] extra."""
    patterns = profiles_table(repo)["engine-modules"]
    return [m for m in all_modules(repo) if is_engine_module(m, patterns)]


def base_modules(repo: Path = REPO) -> list[str]:
    """The first-party modules of the base profile (importable without the [engine] extra)."""
    patterns = profiles_table(repo)["engine-modules"]
    return [m for m in all_modules(repo) if not is_engine_module(m, patterns)]


def base_commands(repo: Path = REPO) -> list[str]:
    """The `cxrscreen` commands the base profile runs."""
    return list(profiles_table(repo)["base-commands"])
