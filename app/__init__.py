"""cxrscreen desktop app: worklist, radiograph viewer, ONNX detector in worker threads, export.

Imports PySide6, pyqtgraph, numpy and onnxruntime (through :mod:`engine.detector`), never
torch. The only engine modules it may use are the torch-free ``engine.io``,
``engine.preprocess``, ``engine.detector``, ``engine.scoring``, ``engine.atomic``,
``engine.csv_safe`` and ``engine.synth`` (checked by ``tests/app/test_boundaries.py``).
"""
