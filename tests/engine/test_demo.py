"""`cxrscreen demo` end to end through engine.cli.main."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cxrscreen.engine.cli import main
from cxrscreen.engine.demo import read_and_print

ROW = re.compile(
    r"^(case_\d{4}\.(?:dcm|png))\s+(dicom|png)\s+(\d+)x(\d+)\s+(MONOCHROME[12])\s+(\d+)\s+(\S+)/(\S+)"
    r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(normal|nodule|consolidation|effusion)$"
)


def test_demo_writes_reads_and_prints_every_file(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path), "--n-normal", "4", "--n-abnormal", "4", "--size", "48", "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [m for m in map(ROW.match, out.splitlines()) if m]
    assert len(rows) == 8
    files = sorted((tmp_path / "study").glob("case_*"))
    assert [m.group(1) for m in rows] == [f.name for f in files]
    assert {m.group(2) for m in rows} == {"dicom", "png"}
    assert {m.group(5) for m in rows} == {"MONOCHROME1", "MONOCHROME2"}
    assert {int(m.group(6)) for m in rows} >= {8, 12, 16}
    for m in rows:
        assert (int(m.group(3)), int(m.group(4))) == (48, 48)
        lo, mean, hi = (float(m.group(i)) for i in (9, 10, 11))
        assert 0.0 <= lo < mean < hi <= 1.0
        if m.group(2) == "dicom":
            assert m.group(7) in ("CR", "DX") and m.group(8) in ("PA", "AP")
    assert sum(m.group(12) != "normal" for m in rows) == 4
    assert "summary: 8 files read, 0 errors" in out
    assert len(list((tmp_path / "study_masks").glob("*.png"))) == 4


def test_demo_png_only_in_a_temporary_folder(capsys):
    code = main(["demo", "--n-normal", "1", "--n-abnormal", "1", "--size", "32", "--formats", "png"])
    out = capsys.readouterr().out
    assert code == 0
    assert "summary: 2 files read, 0 errors" in out
    assert ".dcm" not in out
    folder = Path(re.search(r"to (\S+) \(temporary", out).group(1))
    assert not folder.exists()  # removed afterwards


def test_unreadable_files_are_reported_and_fail_the_run(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("path,label,finding,mask\nbroken.dcm,0,normal,\n")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    (tmp_path / "notes.txt").write_text("not an image")
    n_read, n_errors = read_and_print(tmp_path)
    out = capsys.readouterr().out
    assert (n_read, n_errors) == (0, 1)
    assert re.search(r"^broken\.dcm\s+ERROR: \S", out, re.M)
    assert "notes.txt" not in out


def test_bad_options_are_refused(capsys):
    for argv in (["demo", "--size", "8"], ["demo", "--n-normal", "-2"], ["demo", "--formats", "jpeg"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
    assert "size must be 16 to 4096" in capsys.readouterr().err


def test_demo_module_imports_neither_torch_nor_qt():
    code = (
        "import sys, engine.demo, engine.synth, engine.io\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'pyqtgraph', 'onnxruntime')]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
