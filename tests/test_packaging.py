"""Install profiles (pyproject.toml): what each profile declares, and the base profile run
without torch.

pyproject.toml's ``[tool.cxrscreen.profiles]`` declares which modules need the ``[engine]``
extra (packaging/profiles.py reads it); every other module belongs to the base profile. The base
modules are imported, and the base commands run, in fresh interpreters where every package that only the ``[engine]``
extra brings (torch, torchvision, timm, onnxscript, scikit-image, matplotlib and their own
dependencies, computed from the installed metadata) cannot be imported. A ``sitecustomize``
module installs that block, so it holds in every process the test starts, including the
engine processes the app starts, and each process reports which first-party modules it
imported.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
_spec = importlib.util.spec_from_file_location("cxrscreen_profiles", REPO / "packaging" / "profiles.py")
profiles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profiles)
ENGINE_PATTERNS = profiles.profiles_table()["engine-modules"]
FIRST_PARTY = profiles.FIRST_PARTY  # the folders, installed as cxrscreen.app etc.
NAMESPACE = profiles.NAMESPACE
NAMESPACE_DIR = REPO / "packaging" / "src"  # the parent package in a checkout
ORT_BUILDS = {"onnxruntime", "onnxruntime-gpu"}
# (sys_platform, platform_system, platform_machine, os_name) of the platforms every profile must install on
PLATFORMS = {
    "linux-x86_64": ("linux", "Linux", "x86_64", "posix"),
    "linux-aarch64": ("linux", "Linux", "aarch64", "posix"),
    "windows-x64": ("win32", "Windows", "AMD64", "nt"),
    "windows-arm64": ("win32", "Windows", "ARM64", "nt"),
    "macos-arm64": ("darwin", "Darwin", "arm64", "posix"),
    "macos-x86_64": ("darwin", "Darwin", "x86_64", "posix"),
}
# onnxruntime-gpu publishes wheels for these only (PyPI, 1.21 to 1.31)
GPU_WHEELS = {"linux-x86_64", "linux-aarch64", "windows-x64"}


def _requirements(*extras: str) -> list[Requirement]:
    """The project's requirements for the base install plus ``extras``, from pyproject.toml."""
    reqs = list(PROJECT["dependencies"])
    for extra in extras:
        reqs += PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _environment(platform_name: str, python: str = "3.11") -> dict[str, str]:
    sys_platform, system, machine, os_name = PLATFORMS[platform_name]
    return {**default_environment(), "sys_platform": sys_platform, "platform_system": system,
            "platform_machine": machine, "os_name": os_name, "python_version": python,
            "python_full_version": f"{python}.0", "extra": ""}


def _applies(req: Requirement, env: dict[str, str]) -> bool:
    return req.marker is None or req.marker.evaluate(env)


@pytest.mark.parametrize("platform_name", sorted(PLATFORMS))
def test_each_profile_installs_exactly_one_onnxruntime_build(platform_name: str) -> None:
    env = _environment(platform_name)
    for extras, expected in [((), 0), (("cpu",), 1), (("gpu",), 1), (("engine", "cpu"), 1), (("engine", "gpu", "dev"), 1)]:
        builds = [r for r in _requirements(*extras) if canonicalize_name(r.name) in ORT_BUILDS and _applies(r, env)]
        # the base install has none: an extra could not remove it when [gpu] adds the other build
        assert len(builds) == expected, (platform_name, extras, [str(r) for r in builds])
    gpu = [r for r in _requirements("gpu") if _applies(r, env)]
    names = {canonicalize_name(r.name): r for r in gpu if canonicalize_name(r.name) in ORT_BUILDS}
    if platform_name in GPU_WHEELS:
        assert set(names) == {"onnxruntime-gpu"} and names["onnxruntime-gpu"].extras == {"cuda", "cudnn"}
    else:  # no onnxruntime-gpu wheel there (macOS, Windows on Arm): the CPU build, so [gpu] still installs
        assert set(names) == {"onnxruntime"}
    cpu = [r for r in _requirements("cpu") if _applies(r, env) and canonicalize_name(r.name) in ORT_BUILDS]
    assert [canonicalize_name(r.name) for r in cpu] == ["onnxruntime"]


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
def test_exactly_one_pyside6_requirement_applies(python: str) -> None:
    env = _environment("linux-x86_64", python)
    qt = [r for r in _requirements() if canonicalize_name(r.name) == "pyside6-essentials" and _applies(r, env)]
    assert len(qt) == 1, (python, [str(r) for r in qt])


def _third_party_imports(path: Path) -> dict[str, bool]:
    """Top-level names of the absolute non-stdlib, non-first-party imports of a file -> whether
    one of them runs at module import time (outside any function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != NAMESPACE and top != "__future__":
                    found[top] = found.get(top, False) or not inner
            visit(child, inner)

    visit(tree, False)
    return found


@functools.cache
def _installed_modules() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it (a scan of every RECORD)."""
    return metadata.packages_distributions()


def _distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _installed_modules().get(module, [])}


def _source(module: str) -> Path:
    parts = module.split(".")
    if parts == [NAMESPACE]:
        return NAMESPACE_DIR / NAMESPACE / "__init__.py"
    rel = REPO / Path(*parts[1:])
    return rel / "__init__.py" if rel.is_dir() else rel.with_suffix(".py")


def test_the_profiles_table_matches_the_source_tree() -> None:
    modules = profiles.all_modules()
    assert len(modules) > 80 and "cxrscreen.app.main_window" in modules and "cxrscreen.engine.scoring" in modules
    for pattern in ENGINE_PATTERNS:  # a pattern that matches nothing is stale
        assert any(profiles.is_engine_module(m, [pattern]) for m in modules), pattern
    engine = set(profiles.engine_modules())
    assert {"cxrscreen.models.ddad", "cxrscreen.engine.train", "cxrscreen.engine.methods.ddad.recipe"} <= engine
    assert not engine & {"cxrscreen.engine.methods", "cxrscreen.engine.methods.ddad", "cxrscreen.engine.detector", "cxrscreen.engine.cli", "cxrscreen.engine.train_cli"}
    assert not [m for m in engine if m.startswith(f"{NAMESPACE}.app")] and f"{NAMESPACE}.app.main" in modules


def test_every_imported_package_is_declared_and_the_base_modules_need_only_the_base_profile() -> None:
    declared_base = {canonicalize_name(r.name) for r in _requirements("cpu", "gpu")}
    declared_any = declared_base | {canonicalize_name(r.name) for r in _requirements(*PROJECT["optional-dependencies"])}
    base_files = {_source(m).resolve() for m in profiles.base_modules()}
    undeclared, not_base = [], []
    files = sorted(f for top in FIRST_PARTY for f in (REPO / top).rglob("*.py"))
    assert len(files) > 80
    for f in files:
        for module in _third_party_imports(f):
            dists = _distributions_of(module)
            if not dists:  # not installed here (an environment without [engine]): a base module must not need it
                if f.resolve() in base_files:
                    not_base.append(f"{f.relative_to(REPO)}: {module} (not installed in this environment)")
            elif not dists & declared_any:
                undeclared.append(f"{f.relative_to(REPO)}: {module} (installed by {sorted(dists) or 'nothing here'})")
            elif f.resolve() in base_files and not dists & declared_base:
                not_base.append(f"{f.relative_to(REPO)}: {module} ({sorted(dists)})")
    assert not undeclared, "imported but not declared in pyproject.toml:\n" + "\n".join(undeclared)
    assert not not_base, "base-profile modules import packages only an extra declares:\n" + "\n".join(not_base)


def _closure(reqs: list[Requirement]) -> set[str]:
    """Every distribution these requirements install here (through the installed metadata)."""
    env = {**default_environment(), "extra": ""}
    names: set[str] = set()
    seen: set[tuple[str, str]] = set()
    todo = [(r, "") for r in reqs]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        names.add(name)
        for wanted in {"", *req.extras}:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:  # e.g. the onnxruntime build not installed here
                continue
            todo += [(Requirement(r), wanted) for r in requires]
    return names


def engine_only_modules() -> list[str]:
    """Top-level modules installed here only by distributions that only ``[engine]`` brings."""
    reading = _closure(_requirements("cpu", "gpu"))
    engine_only = _closure(_requirements("engine")) - reading
    blocked = sorted(m for m, dists in _installed_modules().items()
                     if {canonicalize_name(d) for d in dists} <= engine_only)
    return blocked


SITECUSTOMIZE = '''
"""Test harness (tests/test_packaging.py): the [engine] extra's packages cannot be imported."""
import atexit, importlib.abc, json, os, sys
_BLOCKED = set({blocked!r})
_REPORT = {report!r}
_attempts = []
_before = set(sys.modules)  # loaded at start-up (e.g. setuptools' _distutils_hack, by a .pth file)
class _EngineExtraBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            _attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (the [engine] extra is not installed)", name=name)
        return None
sys.meta_path.insert(0, _EngineExtraBlocker())
@atexit.register
def _report():
    first = sorted(m for m in sys.modules if m.split(".")[0] == "cxrscreen")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED and m not in _before)
    with open(os.path.join(_REPORT, f"{{os.getpid()}}.json"), "w") as f:
        json.dump({{"argv": sys.argv, "first_party": first, "blocked_loaded": loaded, "attempts": _attempts}}, f)
'''


@pytest.fixture(scope="module")
def no_engine_env(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """Environment variables for a subprocess without the [engine] extra, and its report folder."""
    root = tmp_path_factory.mktemp("no_engine")
    report = root / "report"
    report.mkdir()
    blocked = engine_only_modules()
    # (in an environment without the [engine] extra, e.g. the bundle's, there is nothing to block)
    installed = {m for m in ("torch", "timm", "torchvision", "onnxscript", "skimage", "matplotlib")
                 if importlib.util.find_spec(m) is not None}
    assert installed <= set(blocked), blocked
    assert not {"onnxruntime", "onnx", "numpy", "PySide6", "pydicom"} & set(blocked), blocked
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=sorted(blocked), report=str(report)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "site"), str(NAMESPACE_DIR), str(REPO)]),
           "QT_QPA_PLATFORM": "offscreen"}
    return env, report


def _reports(report: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(report.glob("*.json"))]


IMPORT_ALL = textwrap.dedent("""
    import importlib, json, sys
    failed = {}
    for name in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{exc.__class__.__name__}: {exc}"
    from cxrscreen import engine
    print(json.dumps({"failed": failed, "engine": engine.__file__}))
""")


@pytest.mark.slow
def test_every_base_module_imports_without_the_engine_extra(no_engine_env) -> None:
    env, report = no_engine_env
    base = profiles.base_modules()
    r = subprocess.run([sys.executable, "-c", IMPORT_ALL, json.dumps(base)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.splitlines()[-1])
    assert Path(out["engine"]).resolve().is_relative_to(REPO), out["engine"]
    assert not out["failed"], "base-profile modules that do not import without the [engine] extra:\n" + "\n".join(
        f"{k}: {v}" for k, v in out["failed"].items())
    (rep,) = [x for x in _reports(report) if x["argv"] == ["-c", json.dumps(base)]]
    assert not rep["blocked_loaded"]
    assert set(base) <= set(rep["first_party"])
    stray = [m for m in rep["first_party"] if profiles.is_engine_module(m, ENGINE_PATTERNS)]
    assert not stray, f"base modules import modules that need the [engine] extra: {stray}"


def _engine(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrscreen.engine", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_base_commands_and_the_app_run_without_the_engine_extra(no_engine_env, tiny_detector: Path,
                                                                  tmp_path: Path) -> None:
    env, report = no_engine_env
    for old in report.glob("*.json"):
        old.unlink()
    commands = profiles.base_commands()
    for command in commands:
        r = _engine([command, "--help"], env, tmp_path)
        assert r.returncode == 0 and "usage: cxrscreen" in r.stdout, (command, r.stderr[-2000:])
    r = _engine(["--help"], env, tmp_path)
    assert r.returncode == 0 and "score" in r.stdout, r.stderr[-2000:]
    # the reading station's own jobs, for real: write a synthetic study, list it, score it
    from cxrscreen.engine.synth import write_study

    study = tmp_path / "study"
    write_study(study, 2, 1, size=64, seed=1)
    r = _engine(["index", str(study), "--format", "jsonl"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len([ln for ln in r.stdout.splitlines() if ln.strip()]) >= 3
    r = _engine(["score", str(study), "--model", str(tiny_detector), "--out", str(tmp_path / "scores.csv"),
                 "--provider", "cpu"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 4  # header + 3 images
    # the app's entry, offscreen: the demo study scored by an engine process, the engine's methods
    r = subprocess.run([sys.executable, str(REPO / "packaging" / "cxrscreen_app.py"), "--self-test",
                        "--model", str(tiny_detector), "--work", str(tmp_path / "app")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "5 scored" in r.stdout and "torch loaded: False" in r.stdout, r.stdout
    reports = _reports(report)
    # this test's processes, and the index and score processes the app started
    assert len(reports) >= len(commands) + 6, [x["argv"] for x in reports]
    for rep in reports:
        assert not rep["blocked_loaded"], rep
        stray = [m for m in rep["first_party"] if profiles.is_engine_module(m, ENGINE_PATTERNS)]
        assert not stray, f"{rep['argv']} imported modules that need the [engine] extra: {stray}"


def test_the_package_list_is_the_source_tree() -> None:
    # every folder with an __init__.py is installed, under the one namespace (pyproject.toml)
    spec = importlib.util.spec_from_file_location("cxrscreen_rename", REPO / "packaging" / "rename_namespace.py")
    rename = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rename)
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["packages"] == rename.packages(REPO), "run python packaging/rename_namespace.py"
    assert setuptools["package-dir"] == {NAMESPACE: "packaging/src/cxrscreen",
                                         **{f"{NAMESPACE}.{top}": top for top in FIRST_PARTY}}
    assert PROJECT["scripts"] == {"cxrscreen": "cxrscreen.engine.cli:main"}


def _build_wheel(out: Path) -> Path:
    """This checkout's wheel, built from a copy of the files a wheel is made of (no network:
    the installed setuptools, without build isolation)."""
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools >= 77")
    src = out / "src"
    for rel in ["pyproject.toml", "README.md", "packaging/src", *FIRST_PARTY]:
        if (REPO / rel).is_dir():
            shutil.copytree(REPO / rel, src / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(out / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (wheel,) = (out / "wheel").glob("cxrscreen-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_installs_one_namespace(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {NAMESPACE, f"cxrscreen-{PROJECT['version']}.dist-info"}, tops
    expected = {str(_source(m).relative_to(REPO if m != NAMESPACE else NAMESPACE_DIR / NAMESPACE)) for m in
                profiles.all_modules()}
    shipped = {n[len(NAMESPACE) + 1:] for n in names if n.startswith(NAMESPACE + "/")}
    assert {"__init__.py", "engine/cli.py", "engine/__main__.py", "app/main_window.py", "models/__init__.py"} <= shipped
    missing = {e for e in expected if e != "__init__.py" and e not in shipped}
    assert not missing, f"modules not in the wheel: {sorted(missing)}"
    data = {str(f.relative_to(REPO)) for top in FIRST_PARTY for f in (REPO / top).rglob("*")
            if f.suffix in (".json", ".svg", ".png", ".qss") and "__pycache__" not in f.parts}
    assert data <= shipped, f"package data not in the wheel: {sorted(data - shipped)}"
    entry_points = zipfile.ZipFile(wheel).read(f"cxrscreen-{PROJECT['version']}.dist-info/entry_points.txt").decode()
    assert "cxrscreen = cxrscreen.engine.cli:main" in entry_points
    # installed (not editable): importable under the namespace only, from the install, not this checkout
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["bin", NAMESPACE]
    code = ("import json, sys, cxrscreen, cxrscreen.app.main, cxrscreen.engine.cli, cxrscreen.engine.detector; "
            "print(json.dumps({'path': list(cxrscreen.__path__), 'cli': cxrscreen.engine.cli.__file__}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(target)}, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["path"] == [str(target / NAMESPACE)] and Path(out["cli"]).is_relative_to(target), out


def test_the_command_line_loads_no_heavy_package_before_a_command_runs() -> None:
    # `cxrscreen --help` builds every command's parser: the command modules import their readers,
    # decoders, runtimes and toolkits when the command runs, not with the parser
    heavy = ("torch", "timm", "onnxruntime", "onnx", "PySide6", "pyqtgraph", "pydicom", "gdcm", "pylibjpeg",
             "matplotlib", "skimage", "scipy")
    code = ("import sys\nfrom engine.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "usage: cxrscreen" in r.stdout, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr[-2000:]
