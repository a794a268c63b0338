"""The model library: detectors kept in the user's data folder, one subfolder per model.

Layout (``platformdirs.user_data_dir("cxrscreen") / "models"`` by default)::

    models/library.json              {"default": <model_id>} (absent: no default)
    models/<model_id>/model.onnx     the detector file (never rewritten once in place)
    models/<model_id>/card.json      the model card: the detector's metadata (method, calibration,
                                     training summary, software), the library's name for it,
                                     when and from where it was added, for detectors trained
                                     in the app the training job and validation metrics, and
                                     the site calibrations set on confirmed normals
                                     ("site_calibrations", "active_calibration": see below)
    models/<model_id>/roc.png        ROC curve and score histogram (when validated)
    models/<model_id>/validation.json  the full evaluation report (when validated)

A model appears all at once or not at all: every addition is built in a hidden
``.incoming-*`` folder and renamed into place, and a deletion renames the folder out of the way
before removing it. Hidden folders are never listed. The detector file is verified
(:func:`engine.detector.read_metadata`) before anything is written. Renaming changes the card
only; the window shows the library's name for a detector it loads (:meth:`ModelLibrary.named`).

Site calibrations (:mod:`engine.site_calibration`): an operating point set on reader-confirmed
normals of a site's images is kept in the card beside the detector's own calibration, never
replacing it; the user chooses which one is active (:meth:`ModelLibrary.set_active_calibration`).
The detector file stays as it was. No Qt.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cxrscreen.engine.atomic import atomic_write_text
from cxrscreen.engine.detector import DetectorError, DetectorMetadata, NormalCalibration, read_metadata
from cxrscreen.engine.site_calibration import SiteCalibrationError
from cxrscreen.engine.site_calibration import from_dict as site_calibration_from_dict
from cxrscreen.engine.site_calibration import to_json as site_calibration_json

logger = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
LIBRARY_FILE = "library.json"
ROC_FILE = "roc.png"
VALIDATION_FILE = "validation.json"
MAX_NAME = 120


def default_library_root() -> Path:
    """The per-user model folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cxrscreen")) / "models"


class LibraryError(ValueError):
    """A library operation cannot be done (unknown model, bad name, already present).

    Attributes:
        model_id: the model concerned, or None.
        reason: what is wrong.
    """

    def __init__(self, reason: str, model_id: str | None = None) -> None:
        self.model_id = model_id
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class LibraryEntry:
    """One detector in the library.

    Attributes:
        model_id: its unique id.
        name: its display name (the library's; renaming changes this, not the file).
        path: the .onnx file.
        card: the parsed card.json.
        is_default: whether it is the library's default detector.
    """

    model_id: str
    name: str
    path: Path
    card: dict[str, Any]
    is_default: bool = False

    @property
    def folder(self) -> Path:
        """The model's folder."""
        return self.path.parent

    @property
    def validation(self) -> dict[str, Any] | None:
        """Validation metrics recorded when the model was trained in the app, if any."""
        v = self.card.get("validation")
        return v if isinstance(v, dict) else None

    @property
    def renamed_note(self) -> str | None:
        """Why this model's name is not the one it was added with (another model had it), or None."""
        asked = self.card.get("name_requested")
        if not asked or asked == self.name:
            return None
        return f"A detector named “{asked}” is already in the library, so this one was added as “{self.name}”."

    @property
    def site_calibrations(self) -> list[NormalCalibration]:
        """The site calibrations kept for this detector, oldest first (unreadable ones skipped, logged)."""
        out = []
        for d in self.card.get("site_calibrations") or []:
            try:
                out.append(site_calibration_from_dict(d, self.model_id))
            except SiteCalibrationError as exc:
                logger.warning("model library: %s: a site calibration is unreadable (%s)", self.model_id, exc)
        return out

    @property
    def active_calibration(self) -> NormalCalibration | None:
        """The site calibration in use, or None for the detector's own."""
        name = self.card.get("active_calibration")
        return next((c for c in self.site_calibrations if c.name == name), None) if name else None

    @property
    def roc_image(self) -> Path | None:
        """The ROC / score-histogram figure of the validation, if any."""
        p = self.folder / ROC_FILE
        return p if p.is_file() else None


class ModelLibrary:
    """Detectors in a folder.

    Args:
        root: the library folder (created when a model is added).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_library_root()

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[LibraryEntry]:
        """Every usable model, newest first; folders without a readable card are skipped (logged)."""
        out: list[LibraryEntry] = []
        if not self.root.is_dir():
            return out
        default = self.default_id()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
            if not model_path.is_file():
                continue
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
                model_id = str(card["model_id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("model library: %s has no usable %s (%s)", folder, CARD_FILE, exc)
                continue
            out.append(LibraryEntry(model_id, str(card.get("name") or model_id[:8]), model_path, card,
                                    model_id == default))
        out.sort(key=lambda e: str(e.card.get("created", "")), reverse=True)
        return out

    def find(self, model_id: str) -> LibraryEntry | None:
        """The entry of a model id, if present."""
        return next((e for e in self.entries() if e.model_id == model_id), None)

    def named(self, meta: DetectorMetadata) -> DetectorMetadata:
        """``meta`` with the library's name for it (unchanged when the model is not in the library)."""
        entry = self.find(meta.model_id)
        if entry is None or entry.name == meta.name:
            return meta
        return dataclasses.replace(meta, name=entry.name)

    # ------------------------------------------------------------------ adding
    def add(self, source: Path, name: str | None = None) -> LibraryEntry:
        """Copy a detector file into the library (import); an existing copy is kept as it is.

        Raises:
            DetectorError: the file is not a cxrscreen detector.
        """
        meta = read_metadata(source)
        existing = self.find(meta.model_id)
        if existing is not None:
            return existing
        return self._install(meta, Path(source), {"source": str(Path(source).resolve())}, {}, name, move=False)

    def register(self, staged: Path, extra: Mapping[str, Any], attachments: Mapping[str, Path] | None = None,
                 name: str | None = None) -> LibraryEntry:
        """Move a verified, freshly exported detector into the library with its card.

        Args:
            staged: the exported .onnx file (moved, not copied, when on the same file system).
            extra: card fields beyond the detector metadata ("training_job", "validation", ...).
            attachments: files to copy into the model folder, by their name there
                (e.g. {"roc.png": ..., "validation.json": ...}).
            name: the display name (default: the file's).

        Raises:
            DetectorError: the file is not a complete cxrscreen detector.
            LibraryError: a model with this id is already in the library.
        """
        meta = read_metadata(staged)
        if self.find(meta.model_id) is not None:
            raise LibraryError(f"a model with id {meta.model_id} is already in the library", meta.model_id)
        return self._install(meta, Path(staged), dict(extra), dict(attachments or {}), name, move=True)

    def _install(self, meta: DetectorMetadata, source: Path, extra: dict[str, Any], attachments: dict[str, Path],
                 name: str | None, move: bool) -> LibraryEntry:
        requested = _check_name(name) if name is not None else (meta.name or meta.model_id[:8])
        display = self.unique_name(requested)
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{uuid.uuid4().hex[:12]}"
        incoming.mkdir()
        try:
            target = incoming / MODEL_FILE
            if move:
                shutil.move(str(source), target)
            else:
                shutil.copyfile(source, target)
            for file_name, path in attachments.items():
                if Path(file_name).name != file_name or file_name in (MODEL_FILE, CARD_FILE):
                    raise LibraryError(f"attachment name {file_name!r} is not allowed")
                shutil.copyfile(path, incoming / file_name)
            card = json.loads(meta.to_json())
            card.update(extra)
            card["name"] = display
            if display != requested:  # two detectors never share a name: the reader could not tell them apart
                card["name_requested"] = requested
            card["added"] = _now()
            atomic_write_text(incoming / CARD_FILE, json.dumps(card, indent=2, sort_keys=True))
            _fsync_dir(incoming)
            final = self.root / meta.model_id
            os.rename(incoming, final)  # the model appears complete, or not at all
            _fsync_dir(self.root)
        except BaseException:
            if move and (incoming / MODEL_FILE).is_file() and not source.exists():
                shutil.move(str(incoming / MODEL_FILE), source)  # give the staged file back
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        entry = self.find(meta.model_id)
        if entry is None:
            raise DetectorError(source, f"installed in {final} but the library cannot read it back")
        return entry

    # ------------------------------------------------------------------ changing
    def unique_name(self, name: str, model_id: str | None = None) -> str:
        """``name``, or "name (2)", "name (3)"... when another model (not ``model_id``) has it."""
        taken = {e.name.casefold() for e in self.entries() if e.model_id != model_id}
        candidate, n = name, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{name} ({n})"
        return candidate

    def rename(self, model_id: str, name: str) -> LibraryEntry:
        """Give a model another display name (the card changes; the detector file does not).

        Raises:
            LibraryError: unknown model, an empty or too long name, or a name another model has.
        """
        entry = self._require(model_id)
        clean = _check_name(name)
        if self.unique_name(clean, model_id) != clean:
            raise LibraryError(f"another detector in the library is already named “{clean}”; choose another name", model_id)
        card = dict(entry.card)
        card["name"] = clean
        card.pop("name_requested", None)
        atomic_write_text(entry.folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True))
        return self._require(model_id)

    def add_site_calibration(self, model_id: str, calibration: NormalCalibration, activate: bool = True) -> LibraryEntry:
        """Keep a site calibration of a model (and make it the active one unless told otherwise).

        Raises:
            LibraryError: unknown model, a calibration without a name, or a name already used
                by another site calibration of this model (or "detector", which names its own).
        """
        entry = self._require(model_id)
        if not calibration.name:
            raise LibraryError("a site calibration needs a name", model_id)
        if calibration.name.casefold() in {c.name.casefold() for c in entry.site_calibrations} | {"detector"}:
            raise LibraryError(f"this detector already has a calibration named “{calibration.name}”; choose another name",
                               model_id)
        card = dict(entry.card)
        card["site_calibrations"] = [*(card.get("site_calibrations") or []),
                                     json.loads(site_calibration_json(calibration, model_id))]
        if activate:
            card["active_calibration"] = calibration.name
        atomic_write_text(entry.folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True))
        return self._require(model_id)

    def set_active_calibration(self, model_id: str, name: str | None) -> LibraryEntry:
        """Use the site calibration ``name`` for this model (None: the detector's own).

        Raises:
            LibraryError: unknown model or no site calibration of that name.
        """
        entry = self._require(model_id)
        if name is not None and name not in {c.name for c in entry.site_calibrations}:
            raise LibraryError(f"this detector has no site calibration named “{name}”", model_id)
        card = dict(entry.card)
        card["active_calibration"] = name
        atomic_write_text(entry.folder / CARD_FILE, json.dumps(card, indent=2, sort_keys=True))
        return self._require(model_id)

    def delete(self, model_id: str) -> None:
        """Remove a model (its folder disappears at once; the default is cleared if it was this one)."""
        entry = self._require(model_id)
        trash = self.root / f".deleted-{model_id}-{uuid.uuid4().hex[:6]}"
        os.rename(entry.folder, trash)
        if self.default_id() == model_id:
            self.set_default(None)
        shutil.rmtree(trash, ignore_errors=True)

    def default_id(self) -> str | None:
        """The default detector's model id (None when unset or no longer in the library)."""
        path = self.root / LIBRARY_FILE
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("default")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError) as exc:
            logger.warning("model library: %s is unreadable (%s); no default", path, exc)
            return None
        if not isinstance(value, str) or not (self.root / value / MODEL_FILE).is_file():
            return None
        return value

    def default(self) -> LibraryEntry | None:
        """The default detector, if set."""
        mid = self.default_id()
        return self.find(mid) if mid else None

    def set_default(self, model_id: str | None) -> None:
        """Make a model the default (None: no default)."""
        if model_id is not None:
            self._require(model_id)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / LIBRARY_FILE, json.dumps({"default": model_id}, indent=2))

    def _require(self, model_id: str) -> LibraryEntry:
        entry = self.find(model_id)
        if entry is None:
            raise LibraryError(f"no model {model_id} in the library ({self.root})", model_id)
        return entry


def _check_name(name: str) -> str:
    clean = " ".join(str(name).split())
    if not clean:
        raise LibraryError("a model name cannot be empty")
    if len(clean) > MAX_NAME:
        raise LibraryError(f"a model name has at most {MAX_NAME} characters, got {len(clean)}")
    return clean


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
