"""`cxrscreen methods`: the training methods this engine has, their data roles, options and presets.

Examples:
    cxrscreen methods
    cxrscreen methods --json

``--json`` prints the contract the app builds its New-detector form, command lines and progress
view from (schema in /work/wt/METHODS_JSON.md, summarised here): ``{"schema": 1,
"engine_version", "common_options": [OPTION], "methods": [METHOD]}``; a METHOD has its name,
title, paper, summary, roles (normal, unlabeled, abnormal: required / optional / unused with a
minimum count), own options, presets (with ``as_published`` and ``deviations``), phases, loss
series and default preprocessing. Torch-free.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

SCHEMA = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object for programs (the app)")
    parser.add_argument("--tests", action="store_true", help="also list presets meant for tests only (text listing)")


def describe_methods() -> dict[str, Any]:
    """The JSON contract (``cxrscreen methods --json``)."""
    from cxrscreen.engine import __version__
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.base import COMMON_OPTIONS

    return {"schema": SCHEMA, "engine_version": __version__,
            "common_options": [o.to_json() for o in COMMON_OPTIONS],
            "methods": [m.to_json() for m in registry().values()]}


def _text(d: dict[str, Any], tests: bool) -> str:
    lines = []
    for i, m in enumerate(d["methods"]):
        lines.append(f"{m['name']}{' (default)' if i == 0 else ''}: {m['title']}")
        lines.append(f"  {m['paper']}")
        lines.append(f"  {m['summary']}")
        roles = ", ".join(f"{r['flag']} {r['requirement']}" + (f" (>= {r['min_count']})" if r["min_count"] else "")
                          for r in m["roles"])
        lines.append(f"  data: {roles}")
        lines.append("  presets (--preset):")
        for j, p in enumerate(m["presets"]):
            if p["tests_only"] and not tests:
                continue
            tag = "as published" if p["as_published"] else f"{len(p['deviations'])} deviations from the paper"
            lines.append(f"    {p['name']}{' (default)' if j == 0 else ''}: {p['title']} [{tag}]")
        lines.append("  options: " + " ".join(o["flag"] for o in m["options"]))
        lines.append(f"  phases: {' -> '.join(p['name'] for p in m['phases'])}")
        lines.append("")
    lines.append("common options: " + " ".join(o["flag"] for o in d["common_options"]))
    lines.append("details: cxrscreen train --method NAME --help")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    d = describe_methods()
    print(json.dumps(d, indent=1) if args.json else _text(d, args.tests))
    return 0
