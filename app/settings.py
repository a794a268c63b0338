"""Preferences that persist between sessions (QSettings), typed and validated.

Stored: the last folder, the recent folders, the last detector, the execution provider, the
operating point, the heatmap style, the window layout, the engine command (what runs scoring and
training in a separate process) and the last choices of the New-detector panel (method, preset).
Not stored here: the per-installation pseudonym key, which has its own owner-only file
(:attr:`AppSettings.key_path`; an earlier version's key in the settings is moved there), and
whether patient identifiers are shown (always hidden at start).

A bad stored value (edited by hand, written by another version) falls back to the default and
is logged, never silently used.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any, Callable, TypeVar

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from cxrscreen.app.pseudonym import load_or_create_key
from cxrscreen.app.state import COLORMAPS, OperatingMode
from cxrscreen.engine.detector import ProviderChoice

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_RECENT = 8
KEY_FILE = "pseudonym.key"
LEGACY_KEY_SETTING = "privacy/pseudonym_key"  # where versions up to 0.1 kept the key, in clear
PROVIDERS: tuple[str, ...] = ("auto", "cuda", "cpu")
# the settings' layout version ("settings/version"; absent: 0). 1: the engine is the module
# cxrscreen.engine (one namespace); version 0 ran the top-level module of the old name
SETTINGS_VERSION = 1
_RENAMED_MODULES = {"engine": "cxrscreen.engine"}  # version 0 -> 1, in `-m MODULE` of the engine command


class AppSettings:
    """Typed access to the app's QSettings.

    Args:
        path: an INI file to use instead of the platform's settings store (tests, benchmarks,
            screenshots); None for the user's settings.
        key_path: the pseudonym key file; None: ``pseudonym.key`` beside ``path``, or in the
            platform's configuration folder (``~/.config/cxrscreen`` on Linux).
    """

    def __init__(self, path: Path | None = None, key_path: Path | None = None) -> None:
        self._path = path
        if path is None:
            self._q = QSettings("cxrscreen", "cxrscreen")
            config = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
            default_key = Path(config or Path.home()) / "cxrscreen" / KEY_FILE
        else:
            self._q = QSettings(str(path), QSettings.Format.IniFormat)
            default_key = Path(path).parent / KEY_FILE
        self.key_path = key_path or default_key
        self._migrate()

    def _migrate(self) -> None:
        """Bring settings an earlier version wrote up to :data:`SETTINGS_VERSION` (a fresh store
        is left empty). Version 0 -> 1: an engine command that runs the module by its old name
        (``python -m`` and the module ``engine``, the default before the namespace) runs
        ``cxrscreen.engine``; any other command is kept as it is."""
        version = self._get("settings/version", 0, int)
        if version >= SETTINGS_VERSION or not self._q.allKeys():
            return
        raw = self._q.value("engine/command", None)
        try:
            parts = _to_command(raw) if raw is not None else []
        except ValueError:  # left for engine_command to report and replace by the default
            parts = []
        renamed = [_RENAMED_MODULES.get(p, p) if i and parts[i - 1] == "-m" else p for i, p in enumerate(parts)]
        if renamed != parts:
            logger.info("settings: engine command %s is now %s", shlex.join(parts), shlex.join(renamed))
            self._q.setValue("engine/command", shlex.join(renamed))
        self._q.setValue("settings/version", SETTINGS_VERSION)

    def sync(self) -> None:
        """Write pending changes to disk."""
        self._q.sync()

    @property
    def file_name(self) -> str:
        """Where the settings live."""
        return self._q.fileName()

    def data_file(self, name: str) -> Path:
        """Where a data file of the app lives (the study database): in the user's data folder,
        or beside an explicit settings file, so that tests and benchmarks never touch the user's."""
        if self._path is not None:
            return Path(self._path).parent / name
        import platformdirs

        return Path(platformdirs.user_data_dir("cxrscreen")) / name

    @property
    def reader_name(self) -> str:
        """Who reads (stored with reading states and marks): the login name unless set."""
        import getpass

        try:
            default = getpass.getuser()
        except (KeyError, OSError):  # no user name in the environment or the password database
            default = "reader"
        return self._get("reading/reader", default, str, lambda v: bool(v.strip()))

    def set_reader_name(self, name: str) -> None:
        if not name.strip():
            raise ValueError("reader name must not be empty")
        self._q.setValue("reading/reader", name.strip())

    # ------------------------------------------------------------------ helpers
    def _get(self, key: str, default: T, convert: Callable[[Any], T], valid: Callable[[T], bool] = lambda v: True) -> T:
        raw = self._q.value(key, None)
        if raw is None:
            return default
        try:
            value = convert(raw)
        except (TypeError, ValueError):
            logger.warning("setting %s=%r is not valid; using %r", key, raw, default)
            return default
        if not valid(value):
            logger.warning("setting %s=%r is out of range; using %r", key, value, default)
            return default
        return value

    # ------------------------------------------------------------------ folders
    @property
    def last_folder(self) -> Path | None:
        value = self._get("files/last_folder", "", str)
        return Path(value) if value else None

    def set_last_folder(self, folder: Path) -> None:
        self._q.setValue("files/last_folder", str(folder))
        recent = [p for p in self.recent_folders if p != folder]
        self._q.setValue("files/recent", [str(p) for p in [folder, *recent][:MAX_RECENT]])

    @property
    def recent_folders(self) -> list[Path]:
        raw = self._q.value("files/recent", [])
        if isinstance(raw, str):
            raw = [raw]
        return [Path(p) for p in (raw or []) if isinstance(p, str) and p]

    # ------------------------------------------------------------------ detector
    @property
    def last_model(self) -> Path | None:
        value = self._get("detector/last_model", "", str)
        return Path(value) if value else None

    def set_last_model(self, path: Path | None) -> None:
        self._q.setValue("detector/last_model", str(path) if path else "")

    @property
    def provider(self) -> ProviderChoice:
        return self._get("detector/provider", "auto", str, lambda v: v in PROVIDERS)  # type: ignore[return-value]

    def set_provider(self, provider: ProviderChoice) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        self._q.setValue("detector/provider", provider)

    @property
    def auto_score(self) -> bool:
        """Score new files as soon as a detector and files are present."""
        return self._get("detector/auto_score", True, _to_bool)

    def set_auto_score(self, value: bool) -> None:
        self._q.setValue("detector/auto_score", bool(value))

    @property
    def engine_command(self) -> list[str]:
        """The command that runs the engine (scoring and training processes); subcommands are appended.

        Default: this Python's ``-m cxrscreen.engine``. A packaged app, whose own executable is not a
        Python with torch, points it at a separate engine environment.
        """
        from cxrscreen.app.engine_process import default_engine_command

        return self._get("engine/command", default_engine_command(), _to_command)

    def set_engine_command(self, command: list[str] | None) -> None:
        """Set the engine command (None: back to the default)."""
        if command is None:
            self._q.remove("engine/command")
            return
        self._q.setValue("engine/command", shlex.join(_to_command(command)))

    # ------------------------------------------------------------------ New-detector panel
    @property
    def training_method(self) -> str:
        """The method last chosen in the New-detector panel ("" when never chosen)."""
        return self._get("training/method", "", str)

    @property
    def training_preset(self) -> str:
        """The preset last chosen in the New-detector panel ("" when never chosen)."""
        return self._get("training/preset", "", str)

    def set_training_choice(self, method: str, preset: str) -> None:
        self._q.setValue("training/method", str(method))
        self._q.setValue("training/preset", str(preset))

    # ------------------------------------------------------------------ operating point
    @property
    def operating_mode(self) -> OperatingMode:
        return self._get("operating/mode", "specificity", str, lambda v: v in ("specificity", "score"))  # type: ignore[return-value]

    @property
    def operating_specificity(self) -> float:
        return self._get("operating/specificity", 0.95, float, lambda v: 0.0 < v < 1.0)

    @property
    def operating_score(self) -> float:
        return self._get("operating/score", 0.0, float, lambda v: v == v and abs(v) != float("inf"))

    def set_operating_point(self, mode: OperatingMode, specificity: float, score: float) -> None:
        self._q.setValue("operating/mode", mode)
        self._q.setValue("operating/specificity", float(specificity))
        self._q.setValue("operating/score", float(score))

    # ------------------------------------------------------------------ heatmap style
    @property
    def heatmap_opacity(self) -> float:
        return self._get("heatmap/opacity", 0.6, float, lambda v: 0.0 <= v <= 1.0)

    @property
    def colormap(self) -> str:
        return self._get("heatmap/colormap", COLORMAPS[0], str, lambda v: v in COLORMAPS)

    @property
    def heatmap_visible(self) -> bool:
        return self._get("heatmap/visible", True, _to_bool)

    @property
    def contour_visible(self) -> bool:
        return self._get("heatmap/contour", False, _to_bool)

    @property
    def heatmap_floor(self) -> float:
        return self._get("heatmap/floor", 0.95, float, lambda v: 0.0 <= v <= 0.99)

    def set_heatmap_style(self, visible: bool, opacity: float, colormap: str, contour: bool,
                          floor: float = 0.95) -> None:
        self._q.setValue("heatmap/floor", float(floor))
        self._q.setValue("heatmap/visible", bool(visible))
        self._q.setValue("heatmap/opacity", float(opacity))
        self._q.setValue("heatmap/colormap", colormap)
        self._q.setValue("heatmap/contour", bool(contour))

    # ------------------------------------------------------------------ window layout
    def window_geometry(self) -> QByteArray | None:
        value = self._q.value("ui/geometry", None)
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self._q.value("ui/state", None)
        return value if isinstance(value, QByteArray) else None

    def set_window_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self._q.setValue("ui/geometry", geometry)
        self._q.setValue("ui/state", state)

    # ------------------------------------------------------------------ privacy
    def pseudonym_key(self) -> bytes:
        """The installation's pseudonym key, from its owner-only file (made on first use).

        A key that an earlier version kept in the settings file is moved into the key file (so
        pseudonyms stay the same) and removed from the settings.
        """
        legacy = self._get(LEGACY_KEY_SETTING, "", str)
        key, moved = load_or_create_key(self.key_path, legacy or None)
        if legacy:
            if not moved:
                logger.warning("an invalid pseudonym key in %s was removed", self.file_name)
            self._q.remove(LEGACY_KEY_SETTING)
            self._q.sync()
        return key


def _to_command(value: Any) -> list[str]:
    """A command as a list of arguments, from a list or a shell-quoted string."""
    parts = shlex.split(value) if isinstance(value, str) else list(value)
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"not a command: {value!r}")
    return parts


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
        return False
    if isinstance(value, int):
        return bool(value)
    raise ValueError(f"not a boolean: {value!r}")
