"""Entry script of the desktop bundle: the app (no torch), `cxrscreen gui` semantics.

``cxrscreen-app -m cxrscreen.engine COMMAND ...`` runs the bundled engine instead (the torch-free
commands: score, index, demo): the app's default engine command is
``[sys.executable, "-m", "cxrscreen.engine"]``, and in a bundle ``sys.executable`` is this executable, so scoring and indexing
processes work without any Python installed. Training needs an engine environment (the
"engine command" setting).

``--self-test`` is the bundle's smoke test (packaging/build.py runs it; so does
tests/test_packaging_base.py, from source, in an environment without torch): it opens the main
window offscreen, opens a small demo study, loads the detector given with ``--model``, waits
until the engine process has scored every image, then asks the configured engine (``--engine``,
default the app's own) for its training methods. Exit code 0 when every image got a score, torch
was never loaded in the app's process and the engine answered.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

SELF_TEST_TIMEOUT_S = 180.0

if not getattr(sys, "frozen", False) and importlib.util.find_spec("cxrscreen") is None:
    # run as a script from a checkout where cxrscreen is not installed: the checkout's parent package
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["-m", "cxrscreen.engine"]:
        return bundled_engine(argv[2:])
    if "--self-test" in argv:
        return self_test(argv)
    from cxrscreen.app import main as app_main

    parser = argparse.ArgumentParser(prog="cxrscreen-app")
    app_main.add_arguments(parser)
    return app_main.run(parser.parse_args(argv))


def bundled_engine(argv: list[str]) -> int:
    """The bundled engine; a command that needs the training stack says so in one line."""
    from cxrscreen.engine.cli import main as engine_main

    try:
        return engine_main(argv)
    except ModuleNotFoundError as exc:  # torch, or an engine module left out of the bundle with it
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"cxrscreen-app: '{command}' needs the training engine ({exc.name} is not in this bundle): set "
              "Detector > Engine command to an engine environment's `python -m cxrscreen.engine`", file=sys.stderr)
        return 1


def engine_methods(command: list[str]) -> tuple[bool, str]:
    """Ask an engine for its training methods: (whether the engine ran, what it said).

    ``methods --json`` (one JSON object with a ``methods`` list) where the engine has that
    command; an engine without it must at least run (``--version``).
    """
    try:
        r = subprocess.run([*command, "methods", "--json"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"engine command {shlex.join(command)!r} did not run: {exc}"
    if r.returncode == 0:
        try:
            names = [m["name"] for m in json.loads(r.stdout)["methods"]]
        except (ValueError, KeyError, TypeError) as exc:
            return False, f"`methods --json` printed no method list ({exc.__class__.__name__}: {exc})"
        return bool(names), f"training methods: {', '.join(names) or 'none'}"
    if "invalid choice: 'methods'" not in r.stderr:
        return False, f"`methods --json` failed (exit {r.returncode}): {r.stderr.strip()[-500:]}"
    v = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    return v.returncode == 0, f"{v.stdout.strip()} has no `methods` command yet (exit {v.returncode})"


def self_test(argv: list[str]) -> int:
    """Open the demo study, score it with ``--model`` through the engine process, list methods."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    p = argparse.ArgumentParser(prog="cxrscreen-app --self-test")
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--model", type=Path, required=True, help="detector (.onnx) to score the demo study with")
    p.add_argument("--engine", help="engine command to configure (default: the app's own engine)")
    p.add_argument("--work", type=Path, help="folder for settings, library and demo study (default: a temporary one)")
    p.add_argument("--launched-at", type=float, help="when the process was launched (time.time()): start-up is timed from it")
    args = p.parse_args(argv)
    if not args.model.is_file():
        print(f"self-test: no detector file {args.model}", file=sys.stderr)
        return 2
    import tempfile

    t0 = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    from cxrscreen.app import pyside_check
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    pyside_check.check()
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        settings = AppSettings(work / "settings.ini")
        if args.engine:
            settings.set_engine_command(shlex.split(args.engine))
        window = MainWindow(settings, ModelLibrary(work / "library"), demo_dir=work / "demo", demo_study=(3, 2, 128))
        window.show()
        qapp.processEvents()
        shown = time.perf_counter() - t0
        shown_at = time.time()
        window.load_detector(args.model, provider="cpu")
        window.open_demo()
        deadline = time.monotonic() + SELF_TEST_TIMEOUT_S
        counts = window.model.counts()
        while time.monotonic() < deadline:
            qapp.processEvents()
            counts = window.model.counts()
            if counts["files"] == 5 and counts["scored"] == counts["readable"] and window.detector is not None \
                    and not window.is_scoring:
                break
            time.sleep(0.01)
        scored = time.perf_counter() - t0
        engine = settings.engine_command
        engine_ok, engine_said = engine_methods(engine)
        window.close()
        window.workers.stop_all()
        window.workers.wait_all(10_000)
    torch_loaded = "torch" in sys.modules
    ok = counts["files"] == 5 and counts["scored"] == 5 and not torch_loaded and engine_ok
    if args.launched_at is not None:
        print(f"self-test: window shown {shown_at - args.launched_at:.2f} s after launch")
    print(f"self-test: window shown in {shown:.2f} s; demo study: {counts['files']} files, {counts['scored']} scored "
          f"in {scored:.2f} s; torch loaded: {torch_loaded}")
    print(f"self-test: engine {shlex.join(engine)}: {engine_said}")
    print(f"self-test: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    import multiprocessing

    # the reader's GDCM decoding pool starts `spawn` processes (engine/io/decoders.py): in a frozen
    # executable they re-run this script, and freeze_support() makes them workers, not apps
    multiprocessing.freeze_support()
    raise SystemExit(main())
