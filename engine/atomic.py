"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over
the target (atomic on POSIX and Windows). On any error the temporary file is removed and the
old target is untouched. Torch-free (the app writes its CSV exports through it).

Permissions: the file gets what ``open()`` would give it, 0666 less the process's umask, so a
detector or report made by one account can be read by the reading station's account when the
umask says so. ``private=True`` makes it 0600 whatever the umask: for files that hold patient
identifiers or keys. (``tempfile.mkstemp`` would make every file 0600.)
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: Path | str, overwrite: bool = True, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``target`` when the block ends without error.

    Args:
        target: the final file.
        overwrite: when False, raise FileExistsError if ``target`` exists (checked before and
            at the moment of replacing).
        private: make the file 0600 (owner only) whatever the umask; otherwise it is
            0666 & ~umask, like any file the user creates.
    """
    target = Path(target)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists; not overwriting it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(target, 0o600 if private else 0o666)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if not overwrite:
            # os.link fails if the target appeared meanwhile: no silent overwrite
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FileExistsError(f"{target} appeared while writing; not overwriting it") from None
            except OSError:  # a file system without hard links: best effort
                if target.exists():
                    raise FileExistsError(f"{target} appeared while writing; not overwriting it") from None
                os.replace(tmp, target)
            else:
                tmp.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _create_temporary(target: Path, mode: int) -> Path:
    """Create an empty, new temporary file beside ``target``; the kernel applies the umask to ``mode``.

    Writers that open it again (``open(tmp, "w")``, ``onnx.save``, ``savefig``) truncate it and
    keep its mode.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        except FileExistsError:
            continue
        os.close(fd)
        if mode == 0o600:
            os.chmod(tmp, 0o600)  # also where the file system or platform ignored the open mode
        return tmp
    raise FileExistsError(f"no free temporary name beside {target}")


def atomic_write_text(target: Path | str, text: str, overwrite: bool = True, private: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically (``private``: mode 0600, see :func:`atomic_path`)."""
    with atomic_path(target, overwrite=overwrite, private=private) as tmp:
        tmp.write_text(text, encoding="utf-8")
