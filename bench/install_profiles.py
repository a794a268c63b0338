"""Installed size and install time of each install profile, and the app's start-up time in one.

    python bench/install_profiles.py                        # cpu (the base profile), gpu, engine-cpu
    python bench/install_profiles.py --profiles cpu --startup-runs 5
    nice -n 10 python bench/install_profiles.py --profiles full   # several GB of CUDA wheels
    python bench/install_profiles.py --resolve              # every profile on Linux, Windows, macOS

For each profile a new virtual environment (``--python``, default this interpreter) gets
``pip install 'REPO[EXTRAS]'`` from the package registry with an empty, private pip cache
(``PIP_CACHE_DIR`` in a fresh folder, removed afterwards; ``--no-cache-dir`` as well), so every
wheel is downloaded: install time = download + unpack + building this project's wheel. The
installed size is the environment's folder on disk (``du``-style, files counted once), and the
same less an empty environment's (pip alone); the largest distributions come from their RECORD
files. ``--startup-runs`` starts the app offscreen in the cpu profile's environment (fresh
process, window shown and painted once, then quit) and reports each run's wall time; the first
run reads files from a cold page cache only if the environment was just installed.

``--resolve`` only resolves, with ``uv pip compile --python-platform`` (pip's ``--platform``
evaluates environment markers for the machine it runs on, so it cannot check a Windows or macOS
install from Linux): which profiles resolve on Linux, Windows and macOS (x86_64 and arm64), and
which onnxruntime, torch and PySide6 each one gets. Python 3.11; uv's own index (the registry),
not this machine's pip configuration.

Results: ``bench/results/packaging/install_<profile>.json`` (and ``resolve.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "packaging"
# profile -> extras; "cpu" is the base profile (a reading station): the base install has no
# onnxruntime of its own, [cpu] or [gpu] chooses one (pyproject.toml)
PROFILES: dict[str, str] = {
    "cpu": "cpu",
    "gpu": "gpu",
    "engine-cpu": "engine,cpu",
    "full": "engine,gpu,dev",
}
# what --resolve checks: uv's --python-platform names (uv evaluates the environment markers for
# the target platform; pip's --platform does not: it evaluates them for the machine it runs on)
# (Linux on Arm: PySide6 publishes aarch64 wheels for glibc >= 2.39 only)
PLATFORMS: list[str] = [
    "x86_64-manylinux_2_28", "aarch64-manylinux_2_39", "x86_64-pc-windows-msvc", "aarch64-pc-windows-msvc",
    "aarch64-apple-darwin", "x86_64-apple-darwin",
]
STARTUP = """
import os, sys, time
t0 = float(sys.argv[1])
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from pathlib import Path
from PySide6.QtWidgets import QApplication
from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.settings import AppSettings
qapp = QApplication([])
tmp = Path(sys.argv[2])
w = MainWindow(AppSettings(tmp / "settings.ini"), ModelLibrary(tmp / "library"))
w.show()
qapp.processEvents()
w.grab()  # painted once
print("shown", time.time() - t0, "torch" in sys.modules, flush=True)
w.close()
w.workers.stop_all()
w.workers.wait_all(10_000)
"""


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root``, each inode counted once (as ``du`` does)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key not in seen and not os.path.islink(os.path.join(dirpath, name)):
                seen.add(key)
                total += st.st_blocks * 512
    return total


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def make_venv(python: str, env: Path) -> Path:
    subprocess.run([python, "-m", "venv", str(env)], check=True)
    return venv_python(env)


def distribution_sizes(py: Path) -> list[tuple[str, int]]:
    """(distribution, bytes) from each installed distribution's RECORD, largest first."""
    code = ("import importlib.metadata as m, json, os\n"
            "out = {}\n"
            "for d in m.distributions():\n"
            "    n = 0\n"
            "    for f in d.files or []:\n"
            "        p = d.locate_file(f)\n"
            "        try: n += os.lstat(p).st_size\n"
            "        except OSError: pass\n"
            "    out[d.metadata['Name']] = n\n"
            "print(json.dumps(out))")
    sizes = json.loads(subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True).stdout)
    return sorted(sizes.items(), key=lambda kv: -kv[1])


def startup_times(py: Path, runs: int) -> list[dict[str, Any]]:
    """Wall time from launching a fresh interpreter to the main window shown, per run."""
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            r = subprocess.run([str(py), "-c", STARTUP, repr(t0), tmp], capture_output=True, text=True, timeout=120,
                               cwd=tmp, env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": ""})
            total = time.time() - t0
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("shown ")), None)
        if r.returncode != 0 or line is None:
            raise RuntimeError(f"the app did not start (exit {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")
        _, shown, torch = line.split()
        out.append({"shown_s": round(float(shown), 3), "process_s": round(total, 3), "torch_loaded": torch == "True"})
    return out


def install(profile: str, python: str, work: Path, startup_runs: int) -> dict[str, Any]:
    """Install one profile into a fresh environment from the registry and measure it."""
    extras = PROFILES[profile]
    env = work / f"env-{profile}"
    if env.exists():
        shutil.rmtree(env)
    py = make_venv(python, env)
    cache = Path(tempfile.mkdtemp(prefix="pipcache-", dir=work))
    pip_env = {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    empty = tree_size(env)
    t0 = time.perf_counter()
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-cache-dir", "--quiet", f"{REPO}[{extras}]"],
                       env=pip_env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    shutil.rmtree(cache, ignore_errors=True)
    if r.returncode != 0:
        raise RuntimeError(f"pip install of profile {profile!r} failed:\n{r.stderr[-4000:]}")
    size = tree_size(env)
    dists = distribution_sizes(py)
    check = subprocess.run([str(py), "-c", "import importlib.util as u; print(*(bool(u.find_spec(m)) for m in "
                            "('torch', 'onnxruntime', 'PySide6')))"], capture_output=True, text=True, check=True)
    has_torch, has_ort, has_qt = (v == "True" for v in check.stdout.split())
    result: dict[str, Any] = {
        "profile": profile, "extras": extras, "python": subprocess.run(
            [str(py), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "install_s": round(seconds, 1), "env_mb": round(size / 1e6, 1), "env_minus_empty_mb": round((size - empty) / 1e6, 1),
        "empty_env_mb": round(empty / 1e6, 1), "distributions": len(dists),
        "largest_mb": {name: round(n / 1e6, 1) for name, n in dists[:15]},
        "has_torch": has_torch, "has_onnxruntime": has_ort, "has_pyside6": has_qt,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if startup_runs and has_qt:
        runs = startup_times(py, startup_runs)
        result["startup_runs"] = runs
        result["startup_median_s"] = round(statistics.median(r["process_s"] for r in runs), 3)
    return result


def resolve(uv: str, python_version: str) -> dict[str, Any]:
    """Resolve every profile for every platform in :data:`PLATFORMS` with ``uv pip compile``."""
    out: dict[str, Any] = {}
    for target in PLATFORMS:
        for profile, extras in PROFILES.items():
            cmd = [uv, "pip", "compile", str(REPO / "pyproject.toml"), "--quiet", "--no-header", "--no-annotate",
                   "--python-platform", target, "--python-version", python_version,
                   *[a for e in extras.split(",") for a in ("--extra", e)]]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                out[f"{target}/{profile}"] = {"ok": False, "error": " ".join(r.stderr.split())[:600]}
            else:
                pins = dict(ln.split("==", 1) for ln in r.stdout.splitlines() if "==" in ln and not ln.startswith("#"))
                out[f"{target}/{profile}"] = {
                    "ok": True, "packages": len(pins),
                    "onnxruntime": {k: v for k, v in pins.items() if k.startswith("onnxruntime")},
                    "torch": pins.get("torch"), "pyside6": pins.get("pyside6-essentials"),
                    "nvidia": len([k for k in pins if k.startswith("nvidia-")]),
                }
            print(target, profile, out[f"{target}/{profile}"], flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=["cpu", "gpu", "engine-cpu"])
    p.add_argument("--python", default=sys.executable, help="interpreter the environments are made with")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cxrscreen-profiles",
                   help="where the environments go (kept afterwards: the bundle can be built from env-cpu)")
    p.add_argument("--startup-runs", type=int, default=5, help="app start-ups measured in the cpu profile")
    p.add_argument("--resolve", action="store_true", help="only resolve every profile for Linux, Windows and macOS")
    p.add_argument("--uv", default="uv", help="the uv executable --resolve uses")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.resolve:
        if shutil.which(args.uv) is None:
            p.error(f"--resolve needs uv (pip install uv), not found as {args.uv!r}")
        out = resolve(args.uv, "3.11")
        (RESULTS / "resolve.json").write_text(json.dumps(out, indent=1) + "\n")
        return 0 if all(v["ok"] for v in out.values()) else 1
    for profile in args.profiles:
        result = install(profile, args.python, args.work, args.startup_runs if profile == "cpu" else 0)
        (RESULTS / f"install_{profile}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "largest_mb"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
