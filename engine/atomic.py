"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over
the target (atomic on POSIX and Windows). On any error the temporary file is removed and the
old target is untouched. Torch-free (the app writes its CSV exports through it).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: Path | str, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``target`` when the block ends without error.

    Args:
        target: the final file.
        overwrite: when False, raise FileExistsError if ``target`` exists (checked before and
            at the moment of replacing).
    """
    target = Path(target)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists; not overwriting it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
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


def atomic_write_text(target: Path | str, text: str, overwrite: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
