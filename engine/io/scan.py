"""Recursive, progressive folder scan with the header-only reader.

``scan_folder`` is a generator: a UI (in a worker thread) shows the first images while the
scan goes on. Order is stable: entries sorted by name within each folder, depth-first. Files
whose suffix we read, and suffix-less (or numeric-suffix, e.g. ``1.2.840.113619.2.55``) files
with "DICM" at byte 128, are read with :func:`read_header`; every other file is skipped
silently, as are hidden entries (names starting with ".", e.g. macOS ``._x.png`` resource
forks) and ``DICOMDIR`` index files. Unreadable image files and folders come back as items
with an error. Folders reached through symlinks are entered at most once (by device and
inode), so symlink loops terminate. Torch-free.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cxrscreen.engine.io.reader import HEAD_SIZE, SUPPORTED_SUFFIXES, read_header
from cxrscreen.engine.io.types import (
    CorruptFileError,
    FileAccessError,
    RadiographMeta,
    RadiographReadError,
    UnsupportedFileError,
)

logger = logging.getLogger(__name__)

_SKIPPED_NAMES = frozenset({"DICOMDIR"})
T = TypeVar("T")


@dataclass(frozen=True)
class ScanItem:
    """One image file found by :func:`scan_folder`.

    Attributes:
        path: the file (as reached, not symlink-resolved).
        meta: its header, or None when it could not be read.
        error: why it could not be read, or None.
    """

    path: Path
    meta: RadiographMeta | None
    error: RadiographReadError | None

    @property
    def ok(self) -> bool:
        """Whether the header was read."""
        return self.error is None


def scan_folder(
    root: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> Iterator[ScanItem]:
    """Yield every image file under ``root``, one by one, with its header or its error.

    Args:
        root: a folder, a file, or several of them (drag and drop passes several). Folders
            are scanned recursively; a file given explicitly is always reported, with an
            :class:`UnsupportedFileError` when it is not an image file we read.

    Yields:
        :class:`ScanItem` in a stable order: roots in the given order, then entries sorted
        by name within each folder, depth-first.
    """
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    visited: set[tuple[int, int]] = set()
    for entry in roots:
        path = Path(entry)
        if path.is_dir():
            yield from _walk(path, visited, _scan_file)
        elif path.is_file() and not is_candidate(path):
            yield ScanItem(path, None, UnsupportedFileError(
                path, f"not an image file we read ({path.suffix or 'no suffix'})"))
        else:  # candidate files, and missing paths (read_header names the problem)
            yield _scan_file(path)


def list_image_files(roots: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The image files :func:`scan_folder` would read, in its order, without reading headers.

    Unreadable folders are skipped (a scan reports them); explicitly given files are listed
    when they exist and are candidates. Lets a caller that remembers headers (the app's study
    database) list a folder without parsing any file it already knows.
    """
    visited: set[tuple[int, int]] = set()
    for entry in roots:
        path = Path(entry)
        if path.is_dir():
            yield from (p for p in _walk(path, visited, lambda p: p) if isinstance(p, Path))
        elif path.is_file() and is_candidate(path):
            yield path


def _walk(root: Path, visited: set[tuple[int, int]],
          on_file: Callable[[Path], T]) -> Iterator[T | ScanItem]:
    """Depth-first walk with an explicit stack (no recursion limit on deep trees).

    Yields ``on_file(path)`` for each candidate file and a :class:`ScanItem` for each folder
    that cannot be read.
    """
    stack: list[Iterator[os.DirEntry[str]]] = []
    listing = _enter(root, visited)
    if isinstance(listing, ScanItem):
        yield listing
        return
    if listing is None:
        return
    stack.append(iter(listing))
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith(".") or entry.name in _SKIPPED_NAMES:
            continue
        path = Path(entry.path)
        if _is_dir(entry):
            listing = _enter(path, visited)
            if isinstance(listing, ScanItem):
                yield listing
            elif listing is not None:
                stack.append(iter(listing))
        elif not _is_regular_file(entry):  # a pipe, socket or device: opening it could block the scan for ever
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                yield ScanItem(path, None, UnsupportedFileError(path, "not a regular file (a pipe, socket or device)"))
        elif is_candidate(path):
            yield on_file(path)


def _enter(folder: Path, visited: set[tuple[int, int]]) -> list[os.DirEntry[str]] | ScanItem | None:
    """Sorted entries of ``folder``; None if already visited; an error item if unreadable."""
    try:
        st = os.stat(folder)  # follows symlinks: the real folder's identity
        key = (st.st_dev, st.st_ino)
        if key in visited:
            return None
        visited.add(key)
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError as exc:
        error = FileAccessError(folder, "folder cannot be read: permission denied")
        error.__cause__ = exc
    except OSError as exc:
        error = FileAccessError(folder, f"folder cannot be read ({exc.strerror or exc})")
        error.__cause__ = exc
    return ScanItem(folder, None, error)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a folder (following symlinks); False when it cannot be told."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_regular_file(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a regular file (following symlinks); False when it cannot be told."""
    try:
        return entry.is_file()
    except OSError:
        return False


def is_candidate(path: Path) -> bool:
    """A supported suffix, or no/numeric suffix with "DICM" at byte 128."""
    suffix = path.suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        return True
    if suffix and not suffix[1:].isdigit():
        return False
    try:
        with open(path, "rb") as fp:
            head = fp.read(HEAD_SIZE)
    except OSError:
        return False  # cannot tell it is an image: skip like any other non-image file
    return head[128:132] == b"DICM"


def _scan_file(path: Path) -> ScanItem:
    """Read one header; any failure becomes the item's error (the scan never stops)."""
    try:
        return ScanItem(path, read_header(path), None)
    except RadiographReadError as exc:
        return ScanItem(path, None, exc)
    except Exception as exc:  # a reader bug must not end the scan of a whole folder
        logger.exception("unexpected error reading %s", path)
        error = CorruptFileError(path, f"unexpected error ({type(exc).__name__}: {exc})")
        error.__cause__ = exc
        return ScanItem(path, None, error)
