"""Pseudonyms for patient and study identifiers: a keyed hash (HMAC-SHA256), truncated.

The key is a random secret made once per installation (:func:`new_key`, kept in the app's
settings). The same identifier gets the same pseudonym on this installation, so exports stay
linkable to each other (and, for whoever holds the key, back to the identifier); without the
key a pseudonym cannot be reversed or recomputed from a guessed identifier, unlike a plain
hash. :func:`key_fingerprint` names the key without revealing it, so two exports can be
checked for having been made with the same key.

The worklist shows the first 8 hex digits of the pseudonyms that exports write (16).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

IdentifierKind = Literal["patient", "study", "series", "instance", "accession"]
_PREFIX: dict[str, str] = {"patient": "P", "study": "S", "series": "SE", "instance": "I", "accession": "A"}
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
