"""The app's import boundary: never torch, never ``models``, only the torch-free engine modules."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
ALLOWED_ENGINE = {"engine.io", "engine.preprocess", "engine.detector", "engine.scoring", "engine.atomic", "engine.synth",
                  # the out-of-scope gate (the app checks the image on screen with it)
                  "engine.scope",
                  # folder listing and checks, the event format, the method registry (torch-free)
                  "engine.datasets", "engine.progress", "engine.methods",
                  # headers as JSON: what the `index` engine process sends the app
                  "engine.io.meta_json",
                  # the headless demo `cxrscreen` runs instead of the app when there is no display
                  "engine.demo"}
# each method's settings package (engine.methods.<name>) is torch-free; its recipe never is
ALLOWED_ENGINE_PATTERN = re.compile(r"^engine\.methods\.[a-z0-9_]+$")
FORBIDDEN_TOP = {"torch", "torchvision", "timm", "models", "onnxscript"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "engine":  # "from engine import x" imports engine.x
                names += [f"engine.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def test_no_module_under_app_imports_torch_models_or_other_engine_modules() -> None:
    bad = []
    files = sorted(APP.rglob("*.py"))
    assert len(files) > 20
    for f in files:
        for name in _imports(f):
            top = name.split(".")[0]
            if top in FORBIDDEN_TOP:
                bad.append(f"{f.relative_to(APP.parent)}: {name}")
            elif top == "engine" and name not in ALLOWED_ENGINE and not ALLOWED_ENGINE_PATTERN.match(name):
                bad.append(f"{f.relative_to(APP.parent)}: {name}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_the_app_builds_scores_and_never_loads_torch(tiny_detector: Path, study: Path, tmp_path: Path) -> None:
    # a fresh interpreter: other tests in this session import torch
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from pathlib import Path
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from app.library import ModelLibrary
        from app.main_window import MainWindow
        from app.settings import AppSettings
        w = MainWindow(AppSettings(Path({str(tmp_path / 's.ini')!r})), ModelLibrary(Path({str(tmp_path / 'lib')!r})))
        w.show()
        w.load_detector(Path({str(tiny_detector)!r}), provider="cpu")
        w.open_paths([Path({str(study)!r})])
        deadline = __import__("time").monotonic() + 60
        while __import__("time").monotonic() < deadline:
            app.processEvents()
            c = w.model.counts()
            if c["files"] and c["scored"] == c["readable"] and not w.is_scoring and w.viewer.case is not None:
                break
        print("scored", w.model.counts()["scored"])
        print("torch", "torch" in sys.modules)
        w.close()
        while w.isVisible():
            app.processEvents()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         cwd=APP.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert int(lines["scored"]) == sum(1 for p in study.iterdir() if p.suffix in (".png", ".dcm"))
    assert lines["torch"] == "False"


def test_gui_entry_module_is_import_light() -> None:
    code = ("import sys; import app.main; "
            "print(any(m.startswith(('PySide6', 'pyqtgraph', 'onnxruntime', 'torch')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=APP.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_cli_lists_the_gui_with_its_arguments() -> None:
    import argparse

    from app import main

    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args(["a", "b", "--model", "m.onnx", "--provider", "cpu"])
    assert [str(p) for p in args.paths] == ["a", "b"] and str(args.model) == "m.onnx" and args.provider == "cpu"
