"""FolderIndexer: the engine process takes over from the app's thread without losing or repeating
files; the thread finishes alone when it is faster or the engine cannot start; a crashed engine
is replaced by a fresh scan; stop ends both."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cxrscreen.app.workers.indexing as indexing_module
from cxrscreen.app.workers.index_process import FolderIndexer
from cxrscreen.engine.io import scan_folder
from cxrscreen.engine.io.dicom_write import write_dicom


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory) -> Path:
    """400 DICOM files (hard links of one) and one unreadable file."""
    root = tmp_path_factory.mktemp("big")
    write_dicom(root / "seed.dcm", np.full((32, 32), 100, np.uint8))
    for i in range(400):
        (root / f"f{i:04d}.dcm").hardlink_to(root / "seed.dcm")
    (root / "zz_bad.dcm").write_bytes(b"not a dicom file at all")
    return root


@pytest.fixture()
def slow_thread(monkeypatch):
    """The app's indexing thread reads one file at once, then one every 20 ms (the process wins)."""
    real = indexing_module.scan_folder

    def slow(roots):
        for i, item in enumerate(real(roots)):
            if i:
                time.sleep(0.02)
            yield item

    monkeypatch.setattr(indexing_module, "scan_folder", slow)


def _run(qtbot, indexer: FolderIndexer, timeout: int = 60_000) -> tuple[list, list, list]:
    records: list = []
    sources: list = []
    failures: list = []
    indexer.records_found.connect(records.extend)
    indexer.source_changed.connect(sources.append)
    indexer.indexing_failed.connect(failures.append)
    with qtbot.waitSignal(indexer.finished, timeout=timeout):
        with qtbot.waitSignal(indexer.indexing_done, timeout=timeout) as done:
            indexer.start()
    assert indexer.isFinished()
    return [records, sources, failures, done.args]


def _unique(records: list) -> dict[Path, object]:
    out: dict[Path, object] = {}
    for r in records:
        out.setdefault(r.path, r)  # the worklist keeps the first record of a path
    return out


def test_engine_process_takes_over_and_every_file_is_listed_once(qtbot, big_folder: Path, slow_thread) -> None:
    records, sources, failures, done = _run(qtbot, FolderIndexer([big_folder]))
    assert sources == ["process"] and not failures
    expected = list(scan_folder(big_folder))
    unique = _unique(records)
    assert list(unique) == [item.path for item in expected]  # scan order, nothing lost
    assert done == [len(expected), False]
    for item in expected:
        rec = unique[item.path]
        assert rec.meta == item.meta and (rec.error is None) == (item.error is None)
    assert unique[big_folder / "zz_bad.dcm"].error
    # what was passed on: the thread's first k files (until the process was ready), then every
    # file from the process, from the first one; nothing of the thread's after the hand-over
    paths = [r.path for r in records]
    k = len(paths) - len(expected)
    assert k >= 1 and paths[:k] == [item.path for item in expected[:k]]
    assert paths[k:] == [item.path for item in expected]


def test_thread_finishes_alone_when_it_is_faster(qtbot, mixed_folder: Path) -> None:
    indexer = FolderIndexer([mixed_folder])
    records, sources, failures, done = _run(qtbot, indexer)
    assert done == [4, False] and not failures
    assert sources in ([], ["process"])  # a very fast engine may still win on a tiny folder
    assert list(_unique(records)) == [item.path for item in scan_folder(mixed_folder)]
    assert indexer.engine is not None and not indexer.engine.is_running()


def test_no_engine_means_the_thread_does_it_all(qtbot, big_folder: Path) -> None:
    indexer = FolderIndexer([big_folder], command=[sys.executable, "-c", "import sys; sys.exit(2)"])
    records, sources, failures, done = _run(qtbot, indexer)
    assert sources == [] and not failures
    assert done == [402, False] and len(_unique(records)) == 402


def test_a_crashed_engine_is_replaced_by_a_fresh_scan(qtbot, big_folder: Path, slow_thread, tmp_path: Path) -> None:
    # an "engine" that lists the first file, then dies
    first = next(iter(scan_folder(big_folder)))
    from cxrscreen.engine.io.meta_json import meta_to_json

    line = json.dumps({"event": "record", "seq": 0, "path": str(first.path), "meta": meta_to_json(first.meta),
                       "error": None})
    script = tmp_path / "dying_engine.py"
    script.write_text(f"import sys, time\nprint({line!r}, flush=True)\ntime.sleep(0.3)\nsys.exit(1)\n")
    indexer = FolderIndexer([big_folder], command=[sys.executable, str(script)])
    records, sources, failures, done = _run(qtbot, indexer, timeout=120_000)
    assert sources == ["process", "thread"] and not failures
    assert done == [402, False]
    assert list(_unique(records)) == [item.path for item in scan_folder(big_folder)]


def test_stop_ends_thread_and_process(qtbot, big_folder: Path, slow_thread) -> None:
    indexer = FolderIndexer([big_folder])
    records: list = []
    indexer.records_found.connect(records.extend)
    indexer.start()
    qtbot.waitUntil(lambda: len(records) > 0, timeout=10_000)
    with qtbot.waitSignal(indexer.finished, timeout=10_000):
        with qtbot.waitSignal(indexer.indexing_done, timeout=5_000) as done:
            indexer.request_stop()
    assert done.args[1] is True and done.args[0] < 402
    assert indexer.isFinished() and not indexer.engine.is_running()
