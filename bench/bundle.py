"""Build the desktop bundle from a fresh base-profile environment, smoke-test it, measure it.

    nice -n 10 python bench/bundle.py                      # about 5-10 min on 2 cores
    python bench/bundle.py --engine "/path/to/engine-venv/bin/python -m cxrscreen.engine" --runs 5
    python bench/bundle.py --reuse --runs 5                # the last run's bundle: tests and timings only

Steps, each timed: a new virtual environment (``--work``, default ``build/bundle-bench``) with
``pip install '.[cpu,bundle,dev]'`` (the base profile: no torch; the pip cache is used, see
bench/install_profiles.py for install times from an empty cache); the package tests that
need no torch (tests/test_packaging.py) run *in that environment*, where torch is really
absent; then ``packaging/build.py``: PyInstaller, the bundle's size, the bundled engine, and
``--runs`` self-tests of the built bundle (window shown, demo study opened and scored by the
bundle's engine process, the configured engine's training methods listed), each followed by
the same self-test from source in the environment's Python (the same machine load for both).
Start-up time is from launching the process to the main window shown, median of the runs.

Not part of the default test suite: the build alone takes minutes of both cores (the suite
must stay under 10 minutes), and it needs the registry. Results:
``bench/results/packaging/bundle.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "packaging"


def timed(cmd: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, **kwargs)
    return time.perf_counter() - t0, r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default=sys.executable, help="interpreter the environment is made with")
    p.add_argument("--work", type=Path, default=REPO / "build" / "bundle-bench", help="the environment's folder (replaced)")
    p.add_argument("--engine", help="engine command the smoke test configures (default: the bundle's own engine)")
    p.add_argument("--runs", type=int, default=3, help="self-tests of the built bundle (start-up time: their median)")
    p.add_argument("--out", type=Path, default=RESULTS / "bundle.json")
    p.add_argument("--reuse", action="store_true", help="keep the environment and the bundle of the last run "
                   "(no install, no build): only the tests and the self-tests")
    args = p.parse_args()
    py = args.work / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    install_s = None
    if not args.reuse:
        if args.work.exists():
            shutil.rmtree(args.work)
        subprocess.run([args.python, "-m", "venv", str(args.work)], check=True)
        install_s, r = timed([str(py), "-m", "pip", "install", "--quiet", f"{REPO}[cpu,bundle,dev]"], cwd=REPO)
        if r.returncode != 0:
            return r.returncode
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": os.pathsep.join([str(REPO / "packaging" / "src"), str(REPO)])}
    tests_s, tests = timed([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_packaging.py"],
                           cwd=REPO, env=env, capture_output=True, text=True)
    print(tests.stdout[-1500:])
    build_json = args.work / "build.json"
    cmd = [str(py), str(REPO / "packaging" / "build.py"), "--runs", str(args.runs), "--json", str(build_json),
           "--compare-source", *(["--no-build"] if args.reuse else [])]
    if args.engine:
        cmd += ["--engine", args.engine]
    total_s, build = timed(cmd, cwd=REPO)
    result = json.loads(build_json.read_text()) if build_json.is_file() else {"passed": False}
    result.update({
        "venv_install_s": None if install_s is None else round(install_s, 1), "build_and_smoke_s": round(total_s, 1),
        "packaging_tests_in_base_env": tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "",
        "packaging_tests_passed": tests.returncode == 0, "machine": f"{platform.system()}-{platform.machine()}, "
        f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "self_test"}, indent=1))
    return 0 if result["passed"] and tests.returncode == 0 and build.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
