"""Fixtures for the app's tests: a small synthetic study, a folder with bad files, settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config: pytest.Config) -> None:
    # a PySide6 that corrupts reference counts would crash the suite at random (app/pyside_check.py)
    from cxrscreen.app import pyside_check

    pyside_check.check()


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Path:
    """A synthetic study: 6 normal + 4 abnormal chests, 128 px, PNG and DICOM (MONOCHROME1/2)."""
    from cxrscreen.engine.synth import write_study

    folder = tmp_path_factory.mktemp("study") / "study"
    write_study(folder, 6, 4, size=128, seed=3)
    return folder


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory, study: Path) -> Path:
    """Two good images, a truncated DICOM, an empty PNG and a text file, one in a subfolder."""
    import shutil

    folder = tmp_path_factory.mktemp("mixed")
    good = sorted(p for p in study.iterdir() if p.suffix in (".png", ".dcm"))
    shutil.copy(good[0], folder / good[0].name)
    (folder / "sub").mkdir()
    shutil.copy(good[1], folder / "sub" / good[1].name)
    dcm = next(p for p in good if p.suffix == ".dcm")
    (folder / "cut.dcm").write_bytes(dcm.read_bytes()[:400])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    """An ini file for QSettings, so tests never touch the user's settings."""
    return tmp_path / "settings.ini"


@pytest.fixture(scope="session")
def training_folders(tmp_path_factory) -> dict[str, Path]:
    """Small training data: 16 known normals, 12 unlabeled (4 with lesions), labelled validation
    (normal/ + abnormal/ subfolders), all 64 px synthetic chests."""
    from cxrscreen.engine.synth import write_study

    root = tmp_path_factory.mktemp("training")
    write_study(root / "normal", 16, 0, size=64, seed=21)
    write_study(root / "unlabeled", 8, 4, size=64, seed=22)
    write_study(root / "validation" / "normal", 4, 0, size=64, seed=23)
    write_study(root / "validation" / "abnormal", 0, 4, size=64, seed=24)
    return {"normal": root / "normal", "unlabeled": root / "unlabeled", "validation": root / "validation"}


class FakeEngine:
    """tests/app/fake_engine.py as the app's engine command (a real process), and what it was asked.

    Attributes:
        command: the engine command.
        record: the file each call's arguments are appended to (one JSON list a line).
    """

    def __init__(self, record: Path) -> None:
        import sys

        self.record = record
        self.command = [sys.executable, str(Path(__file__).with_name("fake_engine.py")), "--record", str(record)]

    def calls(self) -> list[list[str]]:
        """Every call's arguments, in order."""
        import json

        if not self.record.is_file():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def checks(self) -> list[list[str]]:
        """The `train ... --check` calls."""
        return [c for c in self.calls() if c[:1] == ["train"] and "--check" in c]


@pytest.fixture
def fake_engine(tmp_path: Path) -> FakeEngine:
    """The test engine, recording into this test's folder."""
    return FakeEngine(tmp_path / "engine_calls.jsonl")


@pytest.fixture(scope="session")
def role_folders(tmp_path_factory) -> dict[str, Path]:
    """Folders for each data role: 8 known normals, 6 unlabeled, 3 confirmed abnormal, 1 abnormal alone."""
    from cxrscreen.engine.synth import write_study

    root = tmp_path_factory.mktemp("roles")
    write_study(root / "normal", 8, 0, size=64, seed=31)
    write_study(root / "unlabeled", 4, 2, size=64, seed=32)
    write_study(root / "abnormal", 0, 3, size=64, seed=33)
    write_study(root / "one_abnormal", 0, 1, size=64, seed=34)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture
def make_window(qtbot, settings_path: Path, tmp_path: Path):
    """A factory of shown main windows (1400 x 900, in-process indexing, a library under the test's
    folder), closed with their workers and any New-detector panel's check or job at the end."""
    from cxrscreen.app.library import ModelLibrary
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.settings import AppSettings

    made: list[MainWindow] = []

    def make(engine_command: list[str] | None = None) -> MainWindow:
        settings = AppSettings(settings_path)
        if engine_command is not None:
            settings.set_engine_command(engine_command)
        w = MainWindow(settings, ModelLibrary(tmp_path / "library"), batch_size=4, decode_workers=1)
        w.index_in_process = False
        w.resize(1400, 900)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        panel = w.model_tools.panel
        if panel is not None:
            panel.check.cancel()
            if panel.job is not None and panel.job.running:
                panel.job.stop_now()
        if w.isVisible():
            w.close()
            qtbot.waitUntil(lambda: not w.isVisible(), timeout=60_000)
        w.workers.stop_all()
        assert w.workers.wait_all(30_000)
        w.deleteLater()
