"""Pseudonyms for patient and study identifiers: a keyed hash (HMAC-SHA256), truncated.

The key is a random secret made once per installation (:func:`new_key`), kept in its own file
readable by its owner only (mode 0600; :func:`load_or_create_key`), not in the settings file
(which is 0644 and often copied). The same identifier gets the same pseudonym on this installation, so exports stay
linkable to each other (and, for whoever holds the key, back to the identifier); without the
key a pseudonym cannot be reversed or recomputed from a guessed identifier, unlike a plain
hash. :func:`key_fingerprint` names the key without revealing it, so two exports can be
checked for having been made with the same key.

The worklist shows the first 8 hex digits of the pseudonyms that exports write (16).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

from cxrscreen.engine.atomic import atomic_write_text

logger = logging.getLogger(__name__)
IdentifierKind = Literal["patient", "study", "series", "instance", "accession", "path"]
_PREFIX: dict[str, str] = {"patient": "P", "study": "S", "series": "SE", "instance": "I", "accession": "A",
                           "path": "F"}
KEY_BYTES = 32
EXPORT_DIGITS = 16
DISPLAY_DIGITS = 8


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(KEY_BYTES)


def pseudonymise(value: str, key: bytes, kind: IdentifierKind, digits: int = EXPORT_DIGITS) -> str:
    """The pseudonym of one identifier, e.g. ``"P-3fa2c1d9e0b4a7c2"``.

    Args:
        value: the identifier (whitespace at its ends is ignored, as DICOM pads values).
        key: the installation's secret (at least 16 bytes).
        kind: what the identifier is; the same value of different kinds gets different
            pseudonyms.
        digits: hex digits kept (4 to 64).
    """
    if len(key) < 16:
        raise ValueError(f"pseudonym key must have at least 16 bytes, got {len(key)}")
    if not 4 <= digits <= 64:
        raise ValueError(f"digits must be in [4, 64], got {digits}")
    if kind not in _PREFIX:
        raise ValueError(f"kind must be one of {sorted(_PREFIX)}, got {kind!r}")
    mac = hmac.new(key, f"{kind}\x00{value.strip()}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{_PREFIX[kind]}-{mac[:digits]}"


def key_fingerprint(key: bytes) -> str:
    """8 hex digits naming a key (a hash of it; says nothing about the identifiers)."""
    return hashlib.sha256(b"cxrscreen pseudonym key\x00" + key).hexdigest()[:8]


class KeyFileError(OSError):
    """The key file exists but cannot be read; a new key would change every pseudonym."""


def load_or_create_key(path: Path, legacy_hex: str | None = None) -> tuple[bytes, bool]:
    """The installation's key from ``path``; made (or migrated from ``legacy_hex``) on first use.

    The file holds the key as hex and is mode 0600; a file found readable by others is made 0600
    (with a warning). A valid ``legacy_hex`` (the key an earlier version kept in its settings)
    becomes the file's key, so pseudonyms stay the same after the move.

    Args:
        path: the key file.
        legacy_hex: a key an earlier version stored elsewhere, or None.

    Returns:
        (key, whether ``legacy_hex`` was moved into the file: the caller then deletes it).

    Raises:
        KeyFileError: the file exists but cannot be read (permissions, a folder).
    """
    legacy = _parse_key(legacy_hex or "")
    if path.exists():
        try:
            key = _parse_key(path.read_text(encoding="ascii", errors="replace"))
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the pseudonym key ({exc.strerror or exc})") from exc
        if key is not None:
            mode = stat.S_IMODE(path.stat().st_mode)
            if os.name == "posix" and mode & 0o077:
                logger.warning("pseudonym key %s was readable by others (mode %o); made it 0600", path, mode)
                os.chmod(path, 0o600)
            return key, legacy is not None
        logger.warning("pseudonym key file %s is invalid; making a new key (earlier pseudonyms will not match)", path)
    key = legacy if legacy is not None else new_key()
    atomic_write_text(path, key.hex() + "\n", private=True)
    return key, legacy is not None


def _parse_key(text: str) -> bytes | None:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None
