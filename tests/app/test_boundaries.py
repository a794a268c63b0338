"""The app's import boundary: never torch, never ``cxrscreen.models``, only the torch-free engine modules.

Module names are the installed ones (``cxrscreen.engine.io``); an import is read in every spelling,
relative ones too (``from .. import engine`` in app/x.py is ``cxrscreen.engine``).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
NAMESPACE = "cxrscreen"
ENGINE, MODELS = f"{NAMESPACE}.engine", f"{NAMESPACE}.models"
ALLOWED_ENGINE = {"cxrscreen.engine.io", "cxrscreen.engine.preprocess", "cxrscreen.engine.detector", "cxrscreen.engine.scoring", "cxrscreen.engine.atomic", "cxrscreen.engine.synth",
                  # the spreadsheet-formula guard every CSV writer shares
                  "cxrscreen.engine.csv_safe",
                  # the out-of-scope gate (the app checks the image on screen with it)
                  "cxrscreen.engine.scope",
                  # folder listing and checks, the event format (torch-free)
                  "cxrscreen.engine.datasets", "cxrscreen.engine.progress",
                  # headers as JSON: what the `index` engine process sends the app
                  "cxrscreen.engine.io.meta_json",
                  # the headless demo `cxrscreen` runs instead of the app when there is no display
                  "cxrscreen.engine.demo",
                  # the drift check of a worklist's scores and site calibrations (numpy only)
                  "cxrscreen.engine.drift", "cxrscreen.engine.site_calibration",
                  # the acquisition check of a worklist's images (numpy only)
                  "cxrscreen.engine.acquisition"}
# the methods and how they train are the engine's: the app reads them from `[engine] methods --json`
# of the engine it runs (app/training/options.py), which may be another environment or version
FORBIDDEN_ENGINE = ("cxrscreen.engine.methods", "cxrscreen.engine.train", "cxrscreen.engine.train_cli", "cxrscreen.engine.export", "cxrscreen.engine.methods_cli")
FORBIDDEN = ("torch", "torchvision", "timm", "onnxscript", MODELS)


def _within(name: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _imports(path: Path, module: str | None = None) -> list[str]:
    """The modules a file imports, by absolute name. ``module``: the file's own module name
    (default: from its place under app/), to resolve relative imports."""
    if module is None:
        rel = path.resolve().relative_to(APP.parent).with_suffix("").parts
        module = ".".join((NAMESPACE, *rel))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            # "from cxrscreen.engine.io import x" imports cxrscreen.engine.io and maybe the module
            # cxrscreen.engine.io.x; "from cxrscreen.engine import io" imports cxrscreen.engine.io
            names += [origin] if origin not in (NAMESPACE, ENGINE) else []
            names += [f"{origin}.{a.name}" for a in node.names]
    return names


def test_no_module_under_app_imports_torch_models_or_other_engine_modules() -> None:
    bad = []
    files = sorted(APP.rglob("*.py"))
    assert len(files) > 20
    for f in files:
        for name in _imports(f):
            if _within(name, FORBIDDEN):
                bad.append(f"{f.relative_to(APP.parent)}: {name}")
            elif _within(name, (ENGINE,)) and not _within(name, ALLOWED_ENGINE) and not _is_name_in(name):
                bad.append(f"{f.relative_to(APP.parent)}: {name}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def _is_name_in(name: str) -> bool:
    """``from cxrscreen.engine.io import scan_folder`` also yields ``cxrscreen.engine.io.scan_folder``:
    a name from an allowed module, not a module of its own."""
    parent = name.rsplit(".", 1)[0]
    return parent != ENGINE and _within(parent, ALLOWED_ENGINE)


def _forbidden_engine(name: str) -> bool:
    return _within(name, FORBIDDEN_ENGINE)


def test_no_module_under_app_imports_the_engines_methods_or_training() -> None:
    # every spelling: import engine.methods.ddad, from engine import methods, from engine.methods import x
    # (_imports turns them into module names), and module names in strings handed to importlib
    bad = []
    for f in sorted(APP.rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        bad += [f"{f.relative_to(APP.parent)}: {name}" for name in _imports(f) if _forbidden_engine(name)]
        bad += [f"{f.relative_to(APP.parent)}: the string {m!r} (a dynamic import?)" for m in FORBIDDEN_ENGINE
                if f'"{m}"' in text or f"'{m}'" in text or f'"{m}.' in text or f"'{m}." in text]
    assert not bad, "the app imports the engine's methods or training:\n" + "\n".join(bad)


def test_the_import_check_sees_every_spelling(tmp_path: Path) -> None:
    spellings = ["import cxrscreen.engine.methods.ddad; from cxrscreen import engine", "from cxrscreen.engine import methods", "from cxrscreen.engine.methods import get_method",
                 "from cxrscreen.engine.train import train", "import cxrscreen.engine.train_cli as t"]
    for i, code in enumerate(spellings):
        f = tmp_path / f"m{i}.py"
        f.write_text(code + "\n")
        assert any(_forbidden_engine(n) for n in _imports(f, "cxrscreen.app.m")), code
    # relative spellings, from a module two levels under the app
    for code in ["from ...engine import methods", "from ... import engine", "from ...engine.train import x"]:
        f = tmp_path / "rel.py"
        f.write_text(code + "\n")
        names = _imports(f, "cxrscreen.app.viewer.rel")
        assert any(_forbidden_engine(n) for n in names) or ENGINE in names, (code, names)
    f = tmp_path / "ok.py"
    f.write_text("import engine.trainingwheels\nfrom engine.io import scan_folder\n")  # prefixes are not modules
    assert not any(_forbidden_engine(n) for n in _imports(f, "cxrscreen.app.ok"))
    f.write_text("import torch\n")
    assert _within(_imports(f, "cxrscreen.app.ok")[0], FORBIDDEN)


def test_importing_every_app_module_loads_no_engine_method_nor_torch() -> None:
    # indirect imports too: an allowed engine module must not pull in the methods
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        from cxrscreen import app
        for m in pkgutil.walk_packages(app.__path__, app.__name__ + "."):
            importlib.import_module(m.name)
        print(sorted(k for k in sys.modules if k.startswith(("cxrscreen.engine.methods", "cxrscreen.engine.train", "cxrscreen.engine.export",
                                                            "torch", "cxrscreen.models"))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=APP.parent,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_the_app_builds_scores_and_never_loads_torch(tiny_detector: Path, study: Path, tmp_path: Path) -> None:
    # a fresh interpreter: other tests in this session import torch
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from pathlib import Path
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from cxrscreen.app.library import ModelLibrary
        from cxrscreen.app.main_window import MainWindow
        from cxrscreen.app.settings import AppSettings
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
    code = ("import sys; import cxrscreen.app.main; from cxrscreen import app; "
            "print(any(m.startswith(('PySide6', 'pyqtgraph', 'onnxruntime', 'torch')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=APP.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_cli_lists_the_gui_with_its_arguments() -> None:
    import argparse

    from cxrscreen.app import main

    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args(["a", "b", "--model", "m.onnx", "--provider", "cpu"])
    assert [str(p) for p in args.paths] == ["a", "b"] and str(args.model) == "m.onnx" and args.provider == "cpu"
