"""Every command's bad input (issue 20): one line naming the value and what is allowed, a
non-zero exit, never a traceback, nothing half-written.

The table runs the real command line through :func:`engine.cli.main` (one process per case would
cost seconds of onnxruntime and torch imports each); a sample of it runs again in real
subprocesses, where a traceback or an abort would show as it does to a user. Exit status 2 is a
value the parser refuses, 1 a value the command refuses; 70 (an unexpected error, a bug) fails
every case.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx
import pytest

from cxrscreen.engine.cli import main as cli_main
from cxrscreen.engine.detector import METADATA_KEY
from cxrscreen.engine.synth import write_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fx(tmp_path_factory, tiny_detector: Path) -> dict[str, Path]:
    """Inputs shared by the cases (each case writes only under its own folder)."""
    root = tmp_path_factory.mktemp("bad_input")
    write_study(root / "study", 2, 1, size=96, formats=("png",), seed=0)
    det = root / "det.onnx"
    det.write_bytes(tiny_detector.read_bytes())  # a 32-pixel detector
    files = {"root": root, "study": root / "study", "det": det,
             "image": next((root / "study").glob("*.png")), "binary": root / "binary.bin"}
    files["binary"].write_bytes(bytes(range(256)) * 8)
    files["labels"] = root / "labels.csv"
    names = sorted(p.name for p in (root / "study").glob("*.png"))
    files["labels"].write_text("path,label\n" + "".join(f"study/{n},{i % 2}\n" for i, n in enumerate(names)))

    def with_metadata(name: str, edit: Callable[[dict], object]) -> Path:
        model = onnx.load(str(det))
        props = {p.key: p.value for p in model.metadata_props}
        meta = json.loads(props[METADATA_KEY])
        text = json.dumps(edit(meta))
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {METADATA_KEY: text})
        onnx.save(model, str(root / name))
        return root / name

    files["meta_list"] = with_metadata("meta_list.onnx", lambda m: [m])
    files["meta_null"] = with_metadata("meta_null.onnx", lambda m: None)
    files["meta_string"] = with_metadata("meta_string.onnx", lambda m: "cxrscreen")
    files["meta_no_calibration"] = with_metadata("meta_no_cal.onnx", lambda m: {k: v for k, v in m.items() if k != "calibration"})
    files["meta_preprocess_list"] = with_metadata("meta_pre_list.onnx", lambda m: {**m, "preprocess": [64]})
    files["meta_scores_text"] = with_metadata("meta_scores_text.onnx",
                                              lambda m: {**m, "calibration": {**m["calibration"], "normal_scores": "high"}})
    files["meta_size"] = with_metadata("meta_size.onnx", lambda m: {**m, "preprocess": {**m["preprocess"], "size": 64}})
    files["no_meta"] = root / "no_meta.onnx"
    plain = onnx.load(str(det))
    del plain.metadata_props[:]
    onnx.save(plain, str(files["no_meta"]))
    return files


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        name: the test id.
        argv: the command line; ``{key}`` is replaced by the fixture's paths, ``{tmp}`` by the case's folder.
        code: the exit status expected (2: refused by the parser, 1: by the command).
        names: text the one error line must contain (the bad value, what is allowed).
        setup: makes the case's own inputs in its folder.
        out: a path (relative to the case's folder) that must not exist afterwards.
    """

    name: str
    argv: tuple[str, ...]
    code: int
    names: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    out: str | None = "out"


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)  # type: ignore[operator]
    return setup


def _mkdir(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True)


def _run_json(status: str | None = "done", content: str | None = None) -> Callable[[Path], None]:
    return _write("run/run.json", content if content is not None else json.dumps({"status": status, "method": "ddad"}))


def _fifo(tmp: Path) -> None:
    os.mkfifo(tmp / "fifo")  # opening it would block until a writer comes


SCORE = ("score", "{study}", "--model", "{det}", "--out", "{tmp}/out")
EVAL = ("eval", "--model", "{det}", "--labels", "{labels}", "--out", "{tmp}/out")

CASES = [
    # --- score: what to score
    Case("score-missing-folder", ("score", "/nonexistent/cxr", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("/nonexistent/cxr", "no such file or folder")),
    Case("score-nothing-to-score", ("score", "--model", "{det}", "--out", "{tmp}/out"), 1, ("--paths-from",)),
    Case("score-paths-from-missing", ("score", "--paths-from", "{tmp}/list.txt", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("--paths-from", "list.txt", "no such file")),
    Case("score-paths-from-binary", ("score", "--paths-from", "{binary}", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("binary.bin", "not UTF-8")),
    Case("score-paths-from-nul", ("score", "--paths-from", "{tmp}/list.txt", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("list.txt", "NUL"), _write("list.txt", "a.png\x00b.png\n")),
    Case("score-paths-from-folder", ("score", "--paths-from", "{study}", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("study", "is a folder")),
    # --- score: operating point and run settings
    Case("score-specificity-2", SCORE + ("--specificity", "2"), 2, ("--specificity", "'2'", "between 0 and 1")),
    Case("score-specificity-95", SCORE + ("--specificity", "95"), 2, ("'95'", "did you mean 0.95")),
    Case("score-specificity-0", SCORE + ("--specificity", "0"), 2, ("'0'", "between 0 and 1")),
    Case("score-specificity-1", SCORE + ("--specificity", "1"), 2, ("'1'", "between 0 and 1")),
    Case("score-specificity-nan", SCORE + ("--specificity", "nan"), 2, ("'nan'", "finite")),
    Case("score-specificity-text", SCORE + ("--specificity", "high"), 2, ("'high'", "number")),
    Case("score-threshold-inf", SCORE + ("--threshold", "inf"), 2, ("--threshold", "'inf'", "finite")),
    Case("score-batch-size-0", SCORE + ("--batch-size", "0"), 2, ("--batch-size", "'0'", "1 to 4096")),
    Case("score-batch-size-huge", SCORE + ("--batch-size", "1000000000"), 2, ("--batch-size", "'1000000000'", "1 to 4096")),
    Case("score-batch-size-negative", SCORE + ("--batch-size", "-3"), 2, ("--batch-size", "'-3'", "1 to 4096")),
    Case("score-batch-size-float", SCORE + ("--batch-size", "2.5"), 2, ("--batch-size", "'2.5'", "integer")),
    Case("score-workers-0", SCORE + ("--workers", "0"), 2, ("--workers", "'0'", "1 to 64")),
    Case("score-format-xml", SCORE + ("--format", "xml"), 2, ("--format", "'xml'", "csv")),
    Case("score-provider-tpu", SCORE + ("--provider", "tpu"), 2, ("--provider", "'tpu'", "cpu")),
    # --- score: the output
    Case("score-out-folder", ("score", "{study}", "--model", "{det}", "--out", "{tmp}"), 1, ("--out", "is a folder"), out=None),
    Case("score-out-under-a-file", ("score", "{study}", "--model", "{det}", "--out", "{tmp}/file.txt/out.csv"), 1,
         ("file.txt", "is a file, not a folder"), _write("file.txt", "x"), out="file.txt/out.csv"),
    Case("score-out-exists", SCORE, 1, ("--out", "exists", "--overwrite"), _write("out", "precious"), out=None),
    Case("score-stdout-needs-jsonl", ("score", "{study}", "--model", "{det}", "--out", "-"), 1, ("--format jsonl",)),
    # --- score: the detector file
    Case("score-model-missing", ("score", "{study}", "--model", "{tmp}/none.onnx", "--out", "{tmp}/out"), 1,
         ("none.onnx", "no such detector file")),
    Case("score-model-not-onnx", ("score", "{study}", "--model", "{image}", "--out", "{tmp}/out"), 1,
         (".png", "not a readable ONNX file")),
    Case("score-model-folder", ("score", "{study}", "--model", "{study}", "--out", "{tmp}/out"), 1, ("study", "detector")),
    Case("score-model-no-metadata", ("score", "{study}", "--model", "{no_meta}", "--out", "{tmp}/out"), 1,
         ("no_meta.onnx", "not a cxrscreen detector")),
    Case("score-metadata-list", ("score", "{study}", "--model", "{meta_list}", "--out", "{tmp}/out"), 1,
         ("meta_list.onnx", "JSON object", "list")),
    Case("score-metadata-null", ("score", "{study}", "--model", "{meta_null}", "--out", "{tmp}/out"), 1,
         ("meta_null.onnx", "JSON object", "NoneType")),
    Case("score-metadata-string", ("score", "{study}", "--model", "{meta_string}", "--out", "{tmp}/out"), 1,
         ("meta_string.onnx", "JSON object", "str")),
    Case("score-metadata-no-calibration", ("score", "{study}", "--model", "{meta_no_calibration}", "--out", "{tmp}/out"), 1,
         ("meta_no_cal.onnx", "calibration")),
    Case("score-metadata-preprocess-list", ("score", "{study}", "--model", "{meta_preprocess_list}", "--out", "{tmp}/out"), 1,
         ("meta_pre_list.onnx", "invalid detector metadata")),
    Case("score-metadata-scores-text", ("score", "{study}", "--model", "{meta_scores_text}", "--out", "{tmp}/out"), 1,
         ("meta_scores_text.onnx", "invalid detector metadata")),
    Case("score-preprocess-size-mismatch", ("score", "{study}", "--model", "{meta_size}", "--out", "{tmp}/out"), 1,
         ("meta_size.onnx", "preprocess size is 64", "32")),
    # --- index
    Case("index-missing-folder", ("index", "/nonexistent/cxr", "--out", "{tmp}/out"), 1, ("/nonexistent/cxr", "no such")),
    Case("index-out-folder", ("index", "{study}", "--out", "{tmp}"), 1, ("--out", "is a folder"), out=None),
    Case("index-out-exists", ("index", "{study}", "--out", "{tmp}/out"), 1, ("exists", "--overwrite"), _write("out", "x"),
         out=None),
    Case("index-out-under-a-file", ("index", "{study}", "--out", "{tmp}/f/out"), 1, ("is a file, not a folder",),
         _write("f", "x"), out="f/out"),
    Case("index-csv-to-stdout", ("index", "{study}", "--format", "csv"), 1, ("--format jsonl",)),
    Case("index-format-xml", ("index", "{study}", "--format", "xml"), 2, ("--format", "'xml'")),
    # --- eval
    Case("eval-specificity-2", EVAL + ("--specificity", "2"), 2, ("--specificity", "'2'", "between 0 and 1")),
    Case("eval-bootstrap-0", EVAL + ("--bootstrap", "0"), 2, ("--bootstrap", "'0'", "1 to 100000")),
    Case("eval-batch-size-0", EVAL + ("--batch-size", "0"), 2, ("--batch-size", "'0'", "1 to 4096")),
    Case("eval-bootstrap-huge", EVAL + ("--bootstrap", "1000000"), 2, ("--bootstrap", "'1000000'", "1 to 100000")),
    Case("eval-seed-negative", EVAL + ("--seed", "-1"), 2, ("--seed", "'-1'", ">= 0")),
    Case("eval-labels-missing", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("--labels", "l.csv", "cannot read")),
    Case("eval-labels-binary", ("eval", "--model", "{det}", "--labels", "{binary}", "--out", "{tmp}/out"), 1,
         ("binary.bin", "not a UTF-8 CSV")),
    Case("eval-labels-no-header", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("l.csv", "'path' and 'label'"), _write("l.csv", "a.png,1\nb.png,0\n")),
    Case("eval-labels-bad-label", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("line 2", "'abnormal'", "0, 1 or empty"), _write("l.csv", "path,label\na.png,abnormal\n")),
    Case("eval-labels-contradict", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("line 3", "a.png", "both 0 and 1"), _write("l.csv", "path,label\na.png,0\na.png,1\n")),
    Case("eval-labels-empty-path", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("line 2", "path is empty"), _write("l.csv", "path,label\n,1\n")),
    Case("eval-labels-none-labelled", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("no labelled rows", "2 rows with an empty label"), _write("l.csv", "path,label\na.png,\nb.png,\n")),
    Case("eval-split-missing", ("eval", "--model", "{det}", "--split", "{tmp}/s.json", "--out", "{tmp}/out"), 1,
         ("--split", "s.json", "cannot read")),
    Case("eval-split-not-json", ("eval", "--model", "{det}", "--split", "{binary}", "--out", "{tmp}/out"), 1,
         ("binary.bin", "not a JSON split file")),
    Case("eval-split-null", ("eval", "--model", "{det}", "--split", "{tmp}/s.json", "--out", "{tmp}/out"), 1,
         ("s.json", "no part 'dev_test'"), _write("s.json", "null")),
    Case("eval-out-folder", ("eval", "--model", "{det}", "--labels", "{labels}", "--out", "{tmp}"), 1, ("--out", "is a folder"),
         out=None),
    Case("eval-root-not-folder", EVAL + ("--root", "{binary}"), 1, ("--root", "binary.bin", "not a folder")),
    Case("eval-model-metadata-list", ("eval", "--model", "{meta_list}", "--labels", "{labels}", "--out", "{tmp}/out"), 1,
         ("--model", "meta_list.onnx", "JSON object")),
    # --- export (no torch work happens before these are refused)
    Case("export-missing-run", ("export", "/nonexistent/run", "--out", "{tmp}/out"), 1, ("/nonexistent/run", "not a folder")),
    Case("export-run-is-a-file", ("export", "{binary}", "--out", "{tmp}/out"), 1, ("binary.bin", "not a folder")),
    Case("export-no-run-json", ("export", "{study}", "--out", "{tmp}/out"), 1, ("study", "no run.json")),
    Case("export-run-json-list", ("export", "{tmp}/run", "--out", "{tmp}/out"), 1, ("run", "not a cxrscreen run file"),
         _run_json(content="[1, 2]")),
    Case("export-run-json-garbage", ("export", "{tmp}/run", "--out", "{tmp}/out"), 1, ("run", "truncated or corrupt run file"),
         _run_json(content="{not json")),
    Case("export-run-unfinished", ("export", "{tmp}/run", "--out", "{tmp}/out"), 1, ("not finished", "'running'"),
         _run_json("running")),
    Case("export-tolerance-negative", ("export", "{tmp}/run", "--out", "{tmp}/out", "--tolerance", "-1"), 2,
         ("--tolerance", "'-1'", "> 0")),
    Case("export-out-folder", ("export", "{tmp}/run", "--out", "{tmp}"), 1, ("--out", "is a folder"), _run_json(), out=None),
    Case("export-out-exists", ("export", "{tmp}/run", "--out", "{tmp}/out"), 1, ("exists", "--overwrite"),
         lambda tmp: (_run_json()(tmp), _write("out", "x")(tmp)), out=None),
    # --- demo and demo-detector
    Case("demo-negative-count", ("demo", "--n-normal", "-1"), 2, ("--n-normal", "'-1'", ">= 0")),
    Case("demo-size-5", ("demo", "--size", "5"), 2, ("--size", "'5'", "16 to 4096")),
    Case("demo-out-a-file", ("demo", "--out", "{binary}"), 1, ("--out", "binary.bin", "is a file")),
    Case("demo-detector-epochs-0", ("demo-detector", "--out", "{tmp}/out", "--epochs", "0"), 2, ("--epochs", "'0'", ">= 1")),
    Case("demo-detector-normals-5", ("demo-detector", "--out", "{tmp}/out", "--normals", "5"), 2,
         ("--normals", "'5'", "at least 80")),
    Case("demo-detector-variation-3", ("demo-detector", "--out", "{tmp}/out", "--variation", "3"), 2,
         ("--variation", "'3'", "0 to 2")),
    Case("demo-detector-members-1", ("demo-detector", "--out", "{tmp}/out", "--members", "1"), 2,
         ("--members", "'1'", "from 2 to 16")),
    Case("demo-detector-fraction-0.5", ("demo-detector", "--out", "{tmp}/out", "--calibration-fraction", "0.5"), 2,
         ("--calibration-fraction", "'0.5'", "from 0.05 to 0.2")),
    Case("demo-detector-out-folder", ("demo-detector", "--out", "{tmp}"), 1, ("--out", "is a folder"), out=None),
    Case("demo-detector-out-exists", ("demo-detector", "--out", "{tmp}/out"), 1, ("exists", "--overwrite"), _write("out", "x"),
         out=None),
    Case("demo-detector-work-a-file", ("demo-detector", "--out", "{tmp}/out", "--work", "{binary}"), 1,
         ("--work", "binary.bin", "is a file")),
    # --- found by trying as an attacker would
    Case("index-fifo", ("index", "{tmp}/fifo"), 1, ("fifo", "not a regular file or folder"), _fifo, out=None),
    Case("score-device", ("score", "/dev/zero", "--model", "{det}", "--out", "{tmp}/out"), 1,
         ("/dev/zero", "not a regular file or folder")),
    Case("score-out-is-the-model", ("score", "{study}", "--model", "{tmp}/m.onnx", "--out", "{tmp}/m.onnx", "--overwrite"), 1,
         ("m.onnx", "is the --model file"), lambda tmp: (tmp / "m.onnx").write_bytes(b"model"), out=None),
    Case("eval-out-is-the-labels", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/l.csv"), 1,
         ("l.csv", "is the --labels file"), _write("l.csv", "path,label\na.png,0\nb.png,1\n"), out=None),
    Case("eval-one-class", ("eval", "--model", "{det}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"), 1,
         ("l.csv", "both normal (0) and abnormal (1)", "0 normal and 2 abnormal"), _write("l.csv", "path,label\na.png,1\nb.png,1\n")),
    Case("export-run-without-model", ("export", "{tmp}/run", "--out", "{tmp}/out"), 1, ("run",), _run_json()),
    Case("score-out-in-proc", ("score", "{study}", "--model", "{det}", "--out", "/proc/cxr.csv"), 1,
         ("/proc", "not writable"), out=None),
    Case("export-out-in-proc", ("export", "{tmp}/run", "--out", "/proc/cxr.onnx"), 1, ("/proc", "not writable"), _run_json(),
         out=None),
    Case("demo-out-in-proc", ("demo", "--out", "/proc/cxr"), 1, ("/proc", "not writable"), out=None),
    Case("unknown-option", ("score", "{study}", "--model", "{det}", "--out", "{tmp}/out", "--frobnicate"), 2,
         ("--frobnicate",)),
]
# run again in real processes: the cases the issue lists, one or more per command
IN_SUBPROCESS = ("score-missing-folder", "score-metadata-list", "score-preprocess-size-mismatch", "score-paths-from-binary",
                 "index-missing-folder", "eval-labels-binary", "export-run-json-list", "demo-detector-epochs-0")


def _argv(case: Case, fx: dict[str, Path], tmp: Path) -> list[str]:
    return [a.format(tmp=tmp, **fx) for a in case.argv]


def _check(case: Case, tmp: Path, code: int, out: str, err: str) -> None:
    assert code == case.code, f"exit {code}, expected {case.code}; stderr: {err}"
    assert "Traceback" not in err + out
    error_lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, err
    for text in case.names:
        assert text in error_lines[0], f"{text!r} not in {error_lines[0]!r}"
    if case.out is not None:
        assert not (tmp / case.out).exists()
    assert not list(tmp.rglob("*.part")), "a temporary file was left"


def test_the_table_has_the_cases_the_issue_asks_for() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert {"score", "index", "eval", "export", "demo", "demo-detector"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_one_line_non_zero_nothing_written(case: Case, fx, tmp_path: Path, capsys) -> None:
    if ("proc" in case.name and not Path("/proc/self").is_dir()) or ("fifo" in case.name and not hasattr(os, "mkfifo")):
        pytest.skip("needs Linux's /proc or POSIX FIFOs")
    if case.setup is not None:
        case.setup(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    try:
        code = cli_main(_argv(case, fx, tmp_path))
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    _check(case, tmp_path, code, captured.out, captured.err)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing changed


@pytest.mark.parametrize("name", IN_SUBPROCESS)
def test_bad_input_in_a_real_process(name: str, fx, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    if case.setup is not None:
        case.setup(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cxrscreen.engine", *_argv(case, fx, tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": os.pathsep.join([str(REPO / "packaging" / "src"), str(REPO)]), "PATH": "/usr/bin:/bin"})
    # onnxruntime may warn that CUDA did not start: a warning, not an error line
    err = "\n".join(line for line in proc.stderr.splitlines() if "CUDA provider" not in line)
    _check(case, tmp_path, proc.returncode, proc.stdout, err)


def test_eval_reports_rows_without_a_label(fx, tmp_path: Path, capsys) -> None:
    """Empty = unknown is part of the labels format: evaluated rows only, with a warning and a count."""
    labels = tmp_path / "labels.csv"
    rows = fx["labels"].read_text().splitlines()
    labels.write_text("\n".join(rows + ["study/extra.png,", "study/other.png, "]) + "\n")
    out = tmp_path / "report.json"
    code = cli_main(["eval", "--model", str(fx["det"]), "--labels", str(labels), "--root", str(fx["root"]),
                     "--out", str(out), "--bootstrap", "20"])
    err = capsys.readouterr().err
    assert code == 0
    n = len(rows) - 1
    assert f"warning: 2 rows of {labels} have no label and are not evaluated (lines {n + 2}, {n + 3})" in err
    report = json.loads(out.read_text())
    assert report["n"] == n and report["unlabelled"] == {"count": 2, "lines": [n + 2, n + 3]}
