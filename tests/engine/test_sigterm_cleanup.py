"""SIGTERM while an engine command writes a file leaves no half-written ``.part`` behind (issue 20)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxrscreen.engine.datasets import from_folders
from cxrscreen.engine.methods import registry
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import run_training

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_during_export_leaves_no_part_file(tmp_path: Path) -> None:
    for folder, normal, abnormal in (("normal", 22, 0), ("unlabeled", 6, 6)):
        write_study(tmp_path / folder, normal, abnormal, size=64, formats=("png",), seed=len(folder), marker=False)
        (tmp_path / folder / "labels.csv").unlink()
    config = registry()["ddad"].config("tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path / "run"
        assert run_training("ddad", config, from_folders(tmp_path / "normal", tmp_path / "unlabeled"), run,
                            Progress("none")).status == "done"
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "cxrscreen.engine", "export", str(run), "--out", str(out / "d.onnx")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])})
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.part")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"export ended before its file was being written: {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)  # the temporary file exists now: the export is writing it
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []  # neither a .part nor a half-made detector
