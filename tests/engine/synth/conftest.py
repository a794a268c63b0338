"""Make `engine` importable when this folder is collected on its own with plain `pytest`.

Same workaround as tests/engine/io/conftest.py (see the reason there): without the repository
root on sys.path, pytest's `tests/` entry turns `engine` into a namespace package rooted at
tests/engine. Remove both once pyproject's pytest configuration sets `pythonpath = ["."]`.
"""
from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:
    sys.path.append(str(_REPO))
