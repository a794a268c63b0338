"""cxrscreen: chest X-ray anomaly screening. The distribution's one top-level package.

Its subpackages are the repository's top-level folders: ``cxrscreen.app`` (app/),
``cxrscreen.engine`` (engine/) and ``cxrscreen.models`` (models/). An installed wheel holds
them under ``cxrscreen/`` (pyproject.toml maps the folders with ``package-dir``), so nothing else
lands at the top of site-packages. In a source checkout this file lives at
``packaging/src/cxrscreen/__init__.py`` and adds the checkout's root to the package's path, so
that ``packaging/src`` on ``sys.path`` (tests/conftest.py puts it there, and into
``PYTHONPATH`` for the processes the tests start) imports that checkout's code, whatever else
is installed (README, "Development notes").
"""
from __future__ import annotations

from pathlib import Path

_here = Path(__file__).resolve().parent
if _here.parent.name == "src" and _here.parent.parent.name == "packaging":
    _root = _here.parents[2]
    if (_root / "pyproject.toml").is_file() and (_root / "engine" / "__init__.py").is_file():
        __path__.append(str(_root))  # noqa: F821 (a package's __path__): cxrscreen.engine is <root>/engine
