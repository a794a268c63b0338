"""scan_folder: stable depth-first order, silent skips, reported errors, loops, progressive output."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxrscreen.engine.io.scan as scan_module
from cxrscreen.engine.io import FileAccessError, ImageSizeError, UnsupportedFileError, scan_folder
from cxrscreen.engine.io.dicom_write import write_dicom


@pytest.fixture()
def tree(tmp_path: Path, ramp8: np.ndarray) -> Path:
    """root/ with images, non-images, a suffix-less DICOM, a bad image and a sub-folder."""
    root = tmp_path / "root"
    (root / "b_sub" / "deeper").mkdir(parents=True)
    Image.fromarray(ramp8).save(root / "a.png")
    Image.fromarray(ramp8).save(root / "b_sub" / "c.jpg")
    write_dicom(root / "b_sub" / "deeper" / "d.dcm", ramp8)
    write_dicom(root / "IM0001", ramp8)                 # no suffix, "DICM" at 128
    write_dicom(root / "1.2.840.99.7", ramp8)           # numeric "suffix": a UID-named file
    (root / "readme").write_text("no suffix, not DICOM")  # skipped silently
    (root / "notes.txt").write_text("text")             # skipped silently
    (root / "z_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # reported
    (root / ".hidden.png").write_bytes(b"")             # hidden: skipped
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: skipped
    return root


def names(items: list, root: Path) -> list[str]:
    return [item.path.relative_to(root).as_posix() for item in items]


def test_order_is_sorted_depth_first_and_non_images_are_skipped(tree: Path) -> None:
    items = list(scan_folder(tree))
    assert names(items, tree) == ["1.2.840.99.7", "IM0001", "a.png", "b_sub/c.jpg",
                                  "b_sub/deeper/d.dcm", "z_bad.png"]
    assert [item.ok for item in items] == [True, True, True, True, True, False]
    assert items[2].meta.format == "png" and items[0].meta.format == "dicom"


def test_unreadable_image_files_come_with_a_reason(tree: Path) -> None:
    bad = [item for item in scan_folder(tree) if not item.ok]
    assert len(bad) == 1 and bad[0].meta is None
    assert bad[0].error.path == tree / "z_bad.png"
    assert "PNG" in bad[0].error.reason


def test_scan_is_progressive(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = scan_module.read_header

    def counting(path: Path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(scan_module, "read_header", counting)
    items = scan_folder(tree)
    first = next(items)
    # One header read per item yielded: the UI can show the first image before the scan ends.
    assert first.path.name == "1.2.840.99.7" and len(calls) == 1
    next(items)
    assert len(calls) == 2


def test_symlink_loops_terminate_and_folders_are_entered_once(tree: Path) -> None:
    (tree / "b_sub" / "deeper" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "y_alias").symlink_to(tree / "b_sub", target_is_directory=True)
    items = list(itertools.islice(scan_folder(tree), 100))  # a loop would run past 100
    # Each real folder is scanned once: the loop back to root and the alias add nothing.
    assert sorted(names(items, tree)) == sorted(["1.2.840.99.7", "IM0001", "a.png", "b_sub/c.jpg",
                                                 "b_sub/deeper/d.dcm", "z_bad.png"])


def test_symlinked_folder_outside_the_root_is_followed(tmp_path: Path, ramp8: np.ndarray) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(ramp8).save(outside / "o.png")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert [item.path for item in scan_folder(root)] == [root / "link" / "o.png"]


def test_several_roots_keep_their_order_and_explicit_files_are_reported(tree: Path, tmp_path: Path) -> None:
    items = list(scan_folder([tree / "b_sub", tree / "a.png", tree / "notes.txt", tmp_path / "gone.png"]))
    assert [item.path.name for item in items] == ["c.jpg", "d.dcm", "a.png", "notes.txt", "gone.png"]
    assert isinstance(items[3].error, UnsupportedFileError)  # given explicitly: not silent
    assert isinstance(items[4].error, FileAccessError) and "file not found" in items[4].error.reason


def test_unreadable_folder_is_reported_and_the_scan_goes_on(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.scandir

    def deny_sub(path):
        if Path(path) == tree / "b_sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan_module.os, "scandir", deny_sub)
    items = list(scan_folder(tree))
    sub = [item for item in items if item.path == tree / "b_sub"]
    assert len(sub) == 1 and isinstance(sub[0].error, FileAccessError)
    assert "folder cannot be read: permission denied" in sub[0].error.reason
    assert "z_bad.png" in [item.path.name for item in items]  # later entries still come


def test_a_directory_named_like_an_image_is_scanned_as_a_folder(tmp_path: Path, ramp8: np.ndarray) -> None:
    (tmp_path / "x.png").mkdir()
    Image.fromarray(ramp8).save(tmp_path / "x.png" / "inner.png")
    assert [item.path.name for item in scan_folder(tmp_path)] == ["inner.png"]


def test_size_errors_come_back_as_items(tmp_path: Path) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "tiny.png")
    (item,) = scan_folder(tmp_path)
    assert isinstance(item.error, ImageSizeError) and item.meta is None


def test_an_unexpected_reader_bug_does_not_end_the_scan(
    tree: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = scan_module.read_header

    def buggy(path: Path):
        if path.name == "a.png":
            raise ZeroDivisionError("bug")
        return real(path)

    monkeypatch.setattr(scan_module, "read_header", buggy)
    items = list(scan_folder(tree))
    a = [item for item in items if item.path.name == "a.png"][0]
    assert "unexpected error (ZeroDivisionError: bug)" in a.error.reason
    assert len(items) == 6 and "a.png" in caplog.text


def test_listing_without_headers_gives_the_scans_files_in_its_order(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrscreen.engine.io import list_image_files

    expected = [item.path for item in scan_folder(tree)]
    monkeypatch.setattr(scan_module, "read_header", lambda p: pytest.fail(f"header of {p} read"))
    # the bad PNG is listed too (its header is what a scan reports as unreadable)
    assert list(list_image_files([tree])) == expected


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX named pipes")
def test_a_pipe_in_a_folder_never_blocks_the_scan(tmp_path):
    """Opening a FIFO with no writer blocks for ever: the scan must not open it."""
    import subprocess
    import sys

    from cxrscreen.engine.synth import write_study

    write_study(tmp_path, 2, 0, size=32, formats=("png",), seed=0)
    os.mkfifo(tmp_path / "pipe.dcm")
    os.mkfifo(tmp_path / "pipe")  # no suffix: would be sniffed for "DICM"
    code = ("import sys; from cxrscreen.engine.io.scan import scan_folder, list_image_files; "
            "items = list(scan_folder(sys.argv[1])); paths = list(list_image_files([sys.argv[1]])); "
            "print(len(items), len(paths), [str(i.error) for i in items if i.error])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    n_items, n_paths, errors = out.stdout.split(" ", 2)
    assert n_items == "3" and n_paths == "2" and "not a regular file" in errors
