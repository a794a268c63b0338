"""Before Qt starts on Linux: are the shared libraries of its xcb platform plugin installed?

PySide6's wheel carries Qt but not the X11/xcb system libraries its ``xcb`` platform plugin
links to. On a minimal Debian or Ubuntu several are missing (libxcb-cursor0, libxcb-icccm4,
libxcb-keysyms1, ...) and Qt aborts with "could not load the Qt platform plugin xcb", which
names no library. This module runs ``ldd`` on the plugin (ldd resolves the whole dependency
tree, Qt's own libraries included), maps every missing library to its Debian/Ubuntu package,
and then either installs them (when running as root with apt-get) or stops with the exact
command to run.

    python -m cxrscreen.app.qt_libs              # report; exit 1 with the command when libraries are missing
    python -m cxrscreen.app.qt_libs --install    # as root: apt-get install what is missing
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> Debian/Ubuntu package (the same names on Debian 12/13 and Ubuntu 22.04/24.04;
# apt resolves libglib2.0-0 to libglib2.0-0t64 where that rename happened)
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


class QtLibrariesMissing(RuntimeError):
    """Qt's xcb platform plugin lacks system libraries.

    Attributes:
        missing: the missing sonames.
        packages: the Debian/Ubuntu packages that provide them.
        command: the command that installs them.
    """

    def __init__(self, missing: list[str], packages: list[str], command: str) -> None:
        self.missing, self.packages, self.command = missing, packages, command
        unknown = [m for m in missing if m not in DEBIAN_PACKAGES]
        super().__init__(
            f"Qt's xcb platform plugin cannot load: missing {', '.join(missing)}. Install them with:\n    {command}"
            + (f"\n(no known package for {', '.join(unknown)}: search with `apt-file search {unknown[0]}`)" if unknown else ""))


def xcb_plugin() -> Path | None:
    """PySide6's ``libqxcb.so``, or None when this PySide6 has none (not Linux)."""
    import PySide6

    path = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def parse_ldd(output: str) -> list[str]:
    """Sonames ldd reports as "not found", each once, in order."""
    seen: list[str] = []
    for line in output.splitlines():
        m = _NOT_FOUND.match(line)
        if m and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def packages_for(missing: list[str]) -> list[str]:
    """Debian/Ubuntu packages for missing sonames (unknown sonames are left out), each once."""
    out: list[str] = []
    for name in missing:
        pkg = DEBIAN_PACKAGES.get(name)
        if pkg and pkg not in out:
            out.append(pkg)
    return out


def install_command(packages: list[str], as_root: bool) -> str:
    """The apt-get command line that installs ``packages``."""
    return ("" if as_root else "sudo ") + "apt-get install -y " + " ".join(packages)


def missing_libraries(plugin: Path) -> list[str]:
    """Libraries ``plugin`` (or anything it links to) needs and the loader cannot find."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []  # no ldd (not glibc): Qt's own error will have to do
    proc = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30)
    return parse_ldd(proc.stdout + proc.stderr)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure(install: bool = True) -> list[str]:
    """Make sure Qt's xcb plugin can load; returns the packages installed (empty when none were needed).

    Args:
        install: when root and apt-get exists, install what is missing (``apt-get update``
            first when the package lists are empty).

    Raises:
        QtLibrariesMissing: libraries are missing and could not be installed here.
    """
    if not sys.platform.startswith("linux"):
        return []
    plugin = xcb_plugin()
    if plugin is None:
        return []
    missing = missing_libraries(plugin)
    if not missing:
        return []
    packages = packages_for(missing)
    root = _is_root()
    if install and root and packages and shutil.which("apt-get"):
        print(f"Installing the system libraries Qt needs: {' '.join(packages)}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env)
            subprocess.run(cmd, env=env)
        still = missing_libraries(plugin)
        if not still:
            return packages
        missing, packages = still, packages_for(still)
    raise QtLibrariesMissing(missing, packages, install_command(packages, root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxrscreen.app.qt_libs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--install", action="store_true", help="as root: apt-get install what is missing")
    args = parser.parse_args(argv)
    try:
        installed = ensure(install=args.install)
    except QtLibrariesMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    plugin = xcb_plugin() if sys.platform.startswith("linux") else None
    print(f"installed {' '.join(installed)}; " if installed else "", end="")
    print(f"Qt's xcb platform plugin finds all its libraries ({plugin})" if plugin else "no xcb platform plugin to check here")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
