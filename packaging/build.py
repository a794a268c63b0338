"""Build the desktop bundle with PyInstaller and smoke-test it.

    make bundle                      # a base-profile environment (build/bundle-venv), then this script
    python packaging/build.py [--detector FILE] [--engine "CMD"] [--json OUT]

Run with the Python of a base-profile environment (``pip install '.[cpu,bundle,dev]'``: no
torch, so nothing of the training stack can end up in the bundle; ``dev`` brings the test
helpers that build the smoke test's detector). Builds ``dist/cxrscreen-app/`` (one folder: the
executable and its libraries), then smoke-tests the built bundle offscreen:

1. ``cxrscreen-app -m cxrscreen.engine --version``: the bundled engine (score, index, demo) starts;
2. ``cxrscreen-app --self-test --model DETECTOR [--engine CMD]``: the window opens, the demo
   study opens and is scored by the bundle's engine process with the detector (default: the
   local-contrast detector of tests/conftest.py, built here without torch), and the configured
   engine (``--engine``, e.g. an engine environment's ``python -m cxrscreen.engine``; default the bundle's
   own) lists its training methods (``methods --json``; an engine without that command must at
   least start).

Prints the bundle's size and start-up time (launch to window shown); ``--json`` writes them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DIST = REPO / "dist"
BUNDLE = DIST / "cxrscreen-app"
EXE = BUNDLE / ("cxrscreen-app.exe" if sys.platform == "win32" else "cxrscreen-app")


def bundle_size(root: Path) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``root``."""
    files = [f for f in root.rglob("*") if f.is_file() and not f.is_symlink()]
    return sum(f.stat().st_size for f in files), len(files)


def build() -> float:
    """Run PyInstaller on the spec; returns the seconds it took."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", str(DIST),
                    "--workpath", str(REPO / "build" / "pyinstaller"), str(HERE / "cxrscreen.spec")], check=True, cwd=HERE)
    return time.perf_counter() - t0


def smoke_detector(path: Path) -> Path:
    """The local-contrast test detector (onnx + onnxruntime only), written to ``path``."""
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]
    spec = importlib.util.spec_from_file_location("cxrscreen_test_conftest", REPO / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.build_local_contrast_detector(path)


def self_test(program: list[str], detector: Path, engine: str | None) -> dict[str, Any]:
    """Run a self-test once (``program``: the bundle, or this Python and the entry script); its
    output, exit code and start-up time."""
    cmd = [*program, "--self-test", "--model", str(detector), "--launched-at", repr(time.time())]
    if engine:
        cmd += ["--engine", engine]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    seconds = time.perf_counter() - t0
    shown = re.search(r"window shown ([0-9.]+) s after launch", r.stdout)
    return {"exit_code": r.returncode, "seconds": round(seconds, 2), "shown_s": float(shown.group(1)) if shown else None,
            "output": (r.stdout + r.stderr).strip()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", type=Path, help="detector for the smoke test (default: the local-contrast test detector)")
    p.add_argument("--engine", help="engine command the smoke test configures, e.g. '/opt/engine/bin/python -m cxrscreen.engine' "
                                    "(default: the bundle's own engine)")
    p.add_argument("--runs", type=int, default=1, help="self-test runs (start-up time: the median)")
    p.add_argument("--no-build", action="store_true", help="smoke-test the bundle already in dist/")
    p.add_argument("--compare-source", action="store_true",
                   help="also time the same self-test from source with this Python, alternating with the bundle's")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    if importlib.util.find_spec("torch") is not None:
        print(f"error: {sys.executable} has torch: build the bundle from a base-profile environment "
              "(`make bundle`, or pip install '.[cpu,bundle,dev]' in a new venv)", file=sys.stderr)
        return 2
    installed = importlib.util.find_spec("cxrscreen")
    if installed is None or not Path(installed.origin).resolve().is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve()):
        print(f"error: cxrscreen is not installed as a wheel in {sys.executable} (found: "
              f"{installed.origin if installed else 'nothing'}): pip install '.[cpu,bundle,dev]' (not -e: PyInstaller "
              "collects the installed package)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("PyInstaller") is None:
        print(f"error: PyInstaller is not installed in {sys.executable}: pip install '.[cpu,bundle,dev]'",
              file=sys.stderr)
        return 2
    build_s = None if args.no_build else build()
    if not EXE.is_file():
        print(f"error: no bundle at {EXE}", file=sys.stderr)
        return 1
    size, files = bundle_size(BUNDLE)
    detector = args.detector or smoke_detector(REPO / "build" / "smoke-detector.onnx")
    t0 = time.perf_counter()
    engine = subprocess.run([str(EXE), "-m", "cxrscreen.engine", "--version"], capture_output=True, text=True, timeout=120)
    engine_s = time.perf_counter() - t0
    runs, source_runs = [], []
    for _ in range(max(1, args.runs)):
        runs.append(self_test([str(EXE)], detector, args.engine))
        if args.compare_source:
            source_runs.append(self_test([sys.executable, str(HERE / "cxrscreen_app.py")], detector, args.engine))
    bundled_torch = [str(f.relative_to(BUNDLE)) for f in BUNDLE.rglob("*") if re.match(r"(lib)?torch|timm", f.name)]
    shown = sorted(r["shown_s"] for r in runs if r["shown_s"] is not None)
    source_shown = sorted(r["shown_s"] for r in source_runs if r["shown_s"] is not None)
    ok = engine.returncode == 0 and all(r["exit_code"] == 0 for r in runs + source_runs) and not bundled_torch
    result = {
        "bundle": str(BUNDLE.relative_to(REPO)), "size_mb": round(size / 1e6, 1), "files": files,
        "build_s": None if build_s is None else round(build_s, 1), "python": sys.version.split()[0],
        "platform": sys.platform, "engine_version": engine.stdout.strip(), "engine_start_s": round(engine_s, 2),
        "startup_shown_s": shown, "startup_median_s": shown[len(shown) // 2] if shown else None,
        "source_startup_shown_s": source_shown or None,
        "source_startup_median_s": source_shown[len(source_shown) // 2] if source_shown else None,
        "self_test": runs[-1]["output"], "torch_files": bundled_torch[:5], "passed": ok,
    }
    print(runs[-1]["output"])
    print(f"bundle: {BUNDLE} ({size / 1e6:.0f} MB, {files} files); build {result['build_s']} s; "
          f"start-up (launch to window shown) {shown} s; bundled engine: {result['engine_version']!r} "
          f"in {engine_s:.2f} s")
    if bundled_torch:
        print(f"error: torch or timm files were bundled: {bundled_torch[:3]}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("bundle smoke test:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
