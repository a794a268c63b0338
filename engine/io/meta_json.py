"""Radiograph headers as JSON objects, and back (the `index` command's output, read by the app).

``meta_to_json(meta)`` gives a plain dict (paths as strings, tuples as lists, window presets as
objects); ``meta_from_json(obj)`` rebuilds the identical :class:`RadiographMeta` and raises
:class:`ValueError` on anything malformed, so a bad line from another process never becomes a
half-filled record.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_args

from cxrscreen.engine.io.types import FileFormat, RadiographMeta, WindowPreset

_FIELDS = {f.name: f for f in dataclasses.fields(RadiographMeta)}
_REQUIRED = {name for name, f in _FIELDS.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
_OPTIONAL_STR = ("photometric", "modality", "view_position", "body_part", "patient_id", "patient_name", "study_uid",
                 "series_uid", "sop_uid", "accession_number", "study_date", "spacing_source", "presentation_intent",
                 "transfer_syntax", "voi")
_CHOICES: dict[str, tuple[str, ...]] = {
    "spacing_source": ("PixelSpacing", "ImagerPixelSpacing"),
    "presentation_intent": ("FOR PRESENTATION", "FOR PROCESSING"),
    "voi": ("voi-lut", "window", "min-max"),
}
_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def meta_to_json(meta: RadiographMeta) -> dict[str, Any]:
    """A JSON-serialisable dict holding every field of ``meta``."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(meta, name)
        if name == "path":
            value = str(value)
        elif name == "window_presets":
            value = [{"center": p.center, "width": p.width, "name": p.name, "function": p.function} for p in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def meta_from_json(obj: Any) -> RadiographMeta:
    """The :class:`RadiographMeta` that :func:`meta_to_json` wrote.

    Raises:
        ValueError: not an object, a missing required field, an unknown field, or a value of
            the wrong type.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"header must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - set(_FIELDS)
    if unknown:
        raise ValueError(f"unknown header fields: {', '.join(sorted(unknown))}")
    missing = _REQUIRED - set(obj)
    if missing:
        raise ValueError(f"header lacks: {', '.join(sorted(missing))}")
    kw: dict[str, Any] = {}
    for name, value in obj.items():
        kw[name] = _field(name, value)
    return RadiographMeta(**kw)


def _field(name: str, value: Any) -> Any:
    if name == "path":
        return Path(_str(name, value))
    if name == "format":
        if value not in get_args(FileFormat):
            raise ValueError(f"format must be one of {get_args(FileFormat)}, got {value!r}")
        return value
    if name in ("rows", "columns", "samples_per_pixel", "number_of_frames"):
        return _int(name, value)
    if name == "bits_stored":
        return None if value is None else _int(name, value)
    if name in _OPTIONAL_STR:
        if value is None:
            return None
        text = _str(name, value)
        if name in _CHOICES and text not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {_CHOICES[name]}, got {text!r}")
        return text
    if name == "pixel_spacing_mm":
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"pixel_spacing_mm must be two numbers, got {value!r}")
        return (_float(name, value[0]), _float(name, value[1]))
    if name == "window_presets":
        if not isinstance(value, list):
            raise ValueError(f"window_presets must be a list, got {value!r}")
        return tuple(_preset(p) for p in value)
    if name == "notes":
        if not isinstance(value, list):
            raise ValueError(f"notes must be a list, got {value!r}")
        return tuple(_str(name, v) for v in value)
    if name == "inverted":
        if not isinstance(value, bool):
            raise ValueError(f"inverted must be true or false, got {value!r}")
        return value
    raise ValueError(f"unknown header field {name!r}")  # a field added to RadiographMeta but not here


def _preset(obj: Any) -> WindowPreset:
    if not isinstance(obj, dict) or set(obj) != {"center", "width", "name", "function"}:
        raise ValueError(f"a window preset needs center, width, name and function, got {obj!r}")
    if obj["function"] not in _FUNCTIONS:
        raise ValueError(f"window function must be one of {_FUNCTIONS}, got {obj['function']!r}")
    return WindowPreset(_float("center", obj["center"]), _float("width", obj["width"]), _str("name", obj["name"]),
                        obj["function"])


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)
