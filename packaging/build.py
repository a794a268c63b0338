"""Build the desktop bundle with PyInstaller and smoke-test it.

    python packaging/build.py [--detector demo.onnx]

Installs PyInstaller into the current environment if missing, builds ``dist/cxrscreen-app/``
(one folder: the executable and its libraries), then runs ``cxrscreen-app --self-test`` with a
detector (default: a demo detector built with ``cxrscreen demo-detector``): the bundle must start
offscreen, score the demo study and not contain torch.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", type=Path, help="detector for the smoke test (default: build a demo one)")
    args = p.parse_args()
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyinstaller>=6.5"], check=True)
    dist, work = REPO / "dist", REPO / "build" / "pyinstaller"
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(dist), "--workpath", str(work),
                    str(HERE / "cxrscreen.spec")], check=True, cwd=HERE)
    exe = dist / "cxrscreen-app" / ("cxrscreen-app.exe" if sys.platform == "win32" else "cxrscreen-app")
    detector = args.detector
    if detector is None:
        detector = REPO / "build" / "demo-detector.onnx"
        if not detector.exists():
            subprocess.run([sys.executable, "-m", "engine", "demo-detector", "--out", str(detector), "--progress", "none"],
                           check=True, cwd=REPO)
    size = sum(f.stat().st_size for f in (dist / "cxrscreen-app").rglob("*") if f.is_file())
    result = subprocess.run([str(exe), "--self-test", "--model", str(detector)], capture_output=True, text=True)
    print(result.stdout + result.stderr)
    print(f"bundle: {dist / 'cxrscreen-app'} ({size / 2**20:.0f} MiB); self-test exit code {result.returncode}")
    bundled_torch = list((dist / "cxrscreen-app").rglob("libtorch*"))
    if bundled_torch:
        print(f"error: torch libraries were bundled: {bundled_torch[:3]}")
        return 1
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
