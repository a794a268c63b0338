"""The model library: detectors kept in the user's data folder, one subfolder per model.

Layout (``platformdirs.user_data_dir("cxrscreen") / "models"`` by default)::

    models/<model_id>/model.onnx     the detector file
    models/<model_id>/card.json      its metadata (what the detector card shows) and where it came from

The library only lists and adds files here; training and registration (a later feature)
write the same layout. No Qt.
"""
from __future__ import annotations

import datetime
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import atomic_path, atomic_write_text
from engine.detector import DetectorError, read_metadata

logger = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"


def default_library_root() -> Path:
    """The per-user model folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cxrscreen")) / "models"


@dataclass(frozen=True)
class LibraryEntry:
    """One detector in the library.

    Attributes:
        model_id: its unique id.
        name: its display name.
        path: the .onnx file.
        card: the parsed card.json (the detector metadata plus ``added`` and ``source``).
    """

    model_id: str
    name: str
    path: Path
    card: dict[str, Any]


class ModelLibrary:
    """Detectors in a folder.

    Args:
        root: the library folder (created when a model is added).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_library_root()

    def entries(self) -> list[LibraryEntry]:
        """Every usable model, newest first; folders without a readable card are skipped (logged)."""
        out: list[LibraryEntry] = []
        if not self.root.is_dir():
            return out
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
            if not model_path.is_file():
                continue
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
                model_id = str(card["model_id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("model library: %s has no usable %s (%s)", folder, CARD_FILE, exc)
                continue
            out.append(LibraryEntry(model_id, str(card.get("name") or model_id[:8]), model_path, card))
        out.sort(key=lambda e: str(e.card.get("created", "")), reverse=True)
        return out

    def find(self, model_id: str) -> LibraryEntry | None:
        """The entry of a model id, if present."""
        return next((e for e in self.entries() if e.model_id == model_id), None)

    def add(self, source: Path) -> LibraryEntry:
        """Copy a detector file into the library (atomically); an existing copy is kept.

        Raises:
            DetectorError: the file is not a cxrscreen detector.
        """
        meta = read_metadata(source)
        existing = self.find(meta.model_id)
        if existing is not None:
            return existing
        folder = self.root / meta.model_id
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / MODEL_FILE, overwrite=False) as tmp:
            shutil.copyfile(source, tmp)
        card = json.loads(meta.to_json())
        card["added"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        card["source"] = str(Path(source).resolve())
        atomic_write_text(folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True))
        entry = self.find(meta.model_id)
        if entry is None:
            raise DetectorError(source, f"copied to {folder} but the library cannot read it back")
        return entry
