"""cxrscreen engine: reading radiographs, training detectors, ONNX export, scoring, evaluation.

Only the torch-free modules (``engine.io``, ``engine.preprocess``, ``engine.detector``,
``engine.synth``) may be imported by the desktop app; everything that learns imports torch
lazily inside its own modules.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("cxrscreen")
except _metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
