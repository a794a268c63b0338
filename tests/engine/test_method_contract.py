"""The method contract: registry, `methods --json`, per-method options, validation, --check, data
roles, run vs trained settings, and the loop's file safety (no unpickling, no stale parts)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cxrscreen.engine.cli import build_parser
from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.base import COMMON_OPTIONS, ROLES, trained_dict
from cxrscreen.engine.synth import write_study

STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("contract")
    write_study(root / "normal", 30, 0, seed=1, **STUDY)
    write_study(root / "unlabeled", 4, 4, seed=2, **STUDY)
    write_study(root / "abnormal", 0, 3, seed=3, **STUDY)
    for f in ("normal", "unlabeled", "abnormal"):
        (root / f / "labels.csv").unlink()
    return {"normal": root / "normal", "unlabeled": root / "unlabeled", "abnormal": root / "abnormal", "root": root}


def _methods_json(capsys) -> dict:
    assert cli(["methods", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_methods_json_follows_the_contract(capsys):
    d = _methods_json(capsys)
    assert d["schema"] == 1 and isinstance(d["engine_version"], str)
    assert [m["name"] for m in d["methods"]] == list(registry())
    assert d["methods"][0]["name"] == "ddad"  # the default method first
    option_keys = {"name", "flag", "type", "choices", "default", "minimum", "maximum", "help", "kind"}
    for o in d["common_options"]:
        assert option_keys <= set(o) and o["kind"] in ("trained", "run")
    assert {o["name"] for o in d["common_options"] if o["kind"] == "run"} >= {"device", "threads", "checkpoint_every"}
    for m in d["methods"]:
        assert {"name", "title", "paper", "summary", "roles", "options", "presets", "phases", "loss_series",
                "default_preprocess"} <= set(m)
        assert [r["role"] for r in m["roles"]] == list(ROLES)
        assert all(r["requirement"] in ("required", "optional", "unused") and r["flag"] == f"--{r['role']}"
                   for r in m["roles"])
        common = {o["flag"] for o in d["common_options"]}
        for o in m["options"]:
            assert option_keys <= set(o) and o["flag"] not in common
            assert o["type"] in ("int", "float", "choice", "bool", "text", "path")
            assert (o["choices"] is not None) == (o["type"] == "choice")
        names = {o["name"] for o in m["options"]} | {o["name"] for o in d["common_options"]}
        for p in m["presets"]:
            assert set(p["values"]) <= names, (m["name"], p["name"])
            assert p["as_published"] or p["deviations"]  # not the paper: says how
        assert m["phases"][0]["name"] == "load" and m["phases"][-1]["name"] == "calibrate"
        assert m["default_preprocess"]["output_range"] == [-1.0, 1.0]


def test_methods_text_listing(capsys):
    assert cli(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in registry()) and "--preset" in out


def _help(method: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli(["train", "--method", method, "--help"])
    return capsys.readouterr().out


def test_train_help_shows_only_the_chosen_method(capsys):
    ddad, amae = _help("ddad", capsys), _help("amae", capsys)
    assert "--members" in ddad and "--architecture" not in ddad and "robust" in ddad
    assert "--architecture" in amae and "--members" not in amae and "--amae-" not in amae
    for o in COMMON_OPTIONS:
        assert o.flag in ddad and o.flag in amae



def test_a_bool_options_default_is_named_by_its_flag(capsys):
    text = " ".join(_help("msacl", capsys).split())  # argparse wraps the help
    assert "(default: --in- lungs)" in text or "(default: --in-lungs)" in text
    assert "default: True" not in text and "default: False" not in text


def test_every_preset_builds_settings_and_the_method_defaults_are_its_settings_defaults():
    for m in registry().values():
        for p in m.presets:
            config = m.config(p.name)
            for name, value in p.values.items():
                if name in ("size",):
                    assert config.preprocess.size == value
        assert trained_dict(m.config(None)) == trained_dict(m.settings())


def test_every_methods_default_is_acquisition_robust_and_the_papers_recipe_stays_a_preset():
    """Issue 22: the default preset crops to the exposed field and equalises; a paper preset does neither."""
    for m in registry().values():
        default = m.config(m.preset(None).name).preprocess  # what `train` without --preset uses
        assert (default.crop, default.intensity) == ("field", "equalize"), m.name
        papers = [p for p in m.presets if p.name == "paper"]
        assert papers and (m.config("paper").preprocess.crop, m.config("paper").preprocess.intensity) == \
            ("none", "none"), m.name


def _train(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli(["train", *args])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("args, expected", [
    (["--batch-size", "0"], "--batch-size must be >= 2, got 0"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--epochs", "-3"], "--epochs must be >= 1, got -3"),
    (["--calibration-fraction", "1.0"], "--calibration-fraction must be <= 0.9, got 1.0"),
    (["--calibration-fraction", "0"], "--calibration-fraction must be > 0, got 0.0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be a finite float"),
    (["--threads", "-1"], "--threads must be >= 0, got -1"),
    (["--members", "1"], "--members must be >= 2, got 1"),
    (["--preset", "fast"], "--preset must be one of robust-framing, robust-field, paper, robust, quick, tiny for method ddad; got 'fast'"),
    (["--method", "amae", "--preset", "robust-field"], "--preset must be one of robust, robust-augment, quick, paper, small, tiny"),
    (["--size", "60"], "the DDAD autoencoder needs an input size divisible by 16"),
])
def test_bad_settings_get_one_line_and_exit_2(folders, tmp_path, capsys, args, expected):
    code, text = _train(["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]),
                         "--out", str(tmp_path / "run"), *args], capsys)
    assert code == 2 and expected in text and "Traceback" not in text
    assert len([line for line in text.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "run").exists()


def test_an_option_of_another_method_is_refused(folders, tmp_path, capsys):
    code, text = _train(["--method", "amae", "--members", "3", "--normal", str(folders["normal"]),
                         "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "--members" in text


def test_train_out_an_existing_file_is_refused(folders, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, text = _train(["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]),
                         "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file" in text and (tmp_path / "file").read_text() == "x"


def test_an_unused_data_role_is_refused(folders, tmp_path, capsys):
    code, text = _train(["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]),
                         "--abnormal", str(folders["abnormal"]), "--out", str(tmp_path / "run"), "--progress", "json",
                         "--preset", "tiny"], capsys)
    assert code == 1 and "DDAD does not use abnormal images (3 given); leave out --abnormal" in text


def test_an_option_default_shown_is_the_default_presets(capsys):
    # `train` without --preset uses the first preset: a help or panel default that differs from it misleads
    # (msacl_igd's --igd-width said 64 while its small preset trains at 32)
    data = _methods_json(capsys)
    common = {o["name"]: o for o in data["common_options"]}
    for m in data["methods"]:
        options = {**common, **{o["name"]: o for o in m["options"]}}
        preset = m["presets"][0]
        for name, value in preset["values"].items():
            shown = options[name]["default"]
            assert shown is None or shown == value, f"{m['name']} --{name}: shown {shown}, {preset['name']} {value}"


@pytest.mark.parametrize("method, title", [("memmc", "MemMC-MAE"), ("msacl_igd", "MSACL + IGD")])
def test_a_refused_data_role_names_the_method_by_its_title(folders, tmp_path, capsys, method, title):
    # the registry key upper-cased ("MSACL_IGD", "MEMMC") is no name a reader knows the method by
    code, text = _train(["--method", method, "--normal", str(folders["normal"]), "--unlabeled",
                         str(folders["unlabeled"]), "--out", str(tmp_path / "run"), "--check"], capsys)
    assert code == 1 and f"{title} does not use unlabeled images (8 given); leave out --unlabeled" in text
    assert method.upper() not in text


def test_check_names_the_option_to_change(folders, tmp_path, capsys):
    base = ["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]), "--out", str(tmp_path / "r"),
            "--check", "--progress", "json"]
    code, text = _train([*base, "--preset", "tiny"], capsys)
    event = json.loads(text.strip().splitlines()[-1])
    assert code == 0 and event["event"] == "check" and event["ok"]
    # 27 normals train module B: a batch of 64 (the paper's) does not fit; 3 held-out normals are few
    code, text = _train(base, capsys)
    event = json.loads(text.strip().splitlines()[-1])
    assert code == 1 and not event["ok"]
    batch = [p for p in event["problems"] if p["option"] == "--batch-size"]
    assert batch and all(p["level"] == "error" for p in batch)
    assert "module B (known normals) has 27 training images, fewer than one batch of 64" in batch[0]["message"]
    assert [p["level"] for p in event["problems"] if p["option"] == "--calibration-fraction"] == ["warning", "note"]
    note = [p["message"] for p in event["problems"] if p["level"] == "note"]  # what calibration will support, said before
    assert note == ["3 known normals will be held out to calibrate: too few for any threshold at 90 % specificity or "
                    "more (99 % needs at least 100)"]
    lines = [json.loads(line) for line in text.strip().splitlines()[:-1]]  # one "problem" line each, for the app
    assert [(ev["event"], ev["severity"], ev["option"], ev["message"]) for ev in lines] == \
        [("problem", p["level"], p["option"], p["message"]) for p in event["problems"]]
    code, text = _train([*base, "--preset", "tiny", "--abnormal", str(tmp_path / "missing")], capsys)
    event = json.loads(text.strip().splitlines()[-1])
    assert code == 1 and event["problems"][0]["option"] == "--abnormal" and "not a folder" in event["problems"][0]["message"]
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_folders_record_role_counts_and_absolute_paths(folders, tmp_path, monkeypatch):
    from cxrscreen.engine.datasets import TrainingData, from_folders

    monkeypatch.chdir(folders["root"])
    data = from_folders(Path("normal"), Path("unlabeled"), abnormal_dir=Path("abnormal"))
    assert data.summary()["roles"] == {"normal": 30, "unlabeled": 8, "abnormal": 3}
    saved = data.to_json()
    assert all(Path(p).is_absolute() for part in ("normal_train", "unlabeled", "abnormal") for p in saved[part])
    assert TrainingData.from_json(saved).abnormal == [Path(p) for p in saved["abnormal"]]
    plain = from_folders(Path("normal"), Path("unlabeled"))
    assert plain.file_list_hash() == TrainingData(plain.normal_train, plain.normal_calibration, plain.unlabeled
                                                  ).file_list_hash()  # no abnormal list: the hash of before
    assert data.file_list_hash() != plain.file_list_hash()


def test_run_settings_are_not_trained_settings():
    from cxrscreen.engine.methods.amae import Config as AMAEConfig
    from cxrscreen.engine.methods.ddad import Config as DDADConfig

    a, b = DDADConfig(), DDADConfig(device="cpu", checkpoint_every_s=5.0, layout="stacked")
    assert trained_dict(a) == trained_dict(b) and a.to_dict() != b.to_dict()
    assert trained_dict(DDADConfig(epochs=3)) != trained_dict(a)
    assert trained_dict(AMAEConfig()) == trained_dict(AMAEConfig(device="cpu", checkpoint_every_s=1.0))


class _Evil:
    """A pickle that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def _evil_file(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"config": {}, "ensemble": {}, "model": _Evil(marker)}, path)
    return path


def test_no_load_path_unpickles(folders, tmp_path):
    """A crafted checkpoint.pt, model.pt, --reuse-normal-module model and --mae-checkpoint are all refused."""
    import torch

    from cxrscreen.engine.datasets import DataError, from_folders
    from cxrscreen.engine.methods import method
    from cxrscreen.engine.methods.amae.recipe import read_checkpoint_file
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.preprocess import PreprocessSpec
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.train import run_training

    marker = tmp_path / "marker"
    # sanity: the file really runs code when unpickled without restrictions
    _evil_file(tmp_path / "probe.pt", tmp_path / "probe_marker")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert (tmp_path / "probe_marker").exists()

    data = from_folders(folders["normal"], folders["unlabeled"])
    config = Config(backbone="ae", members=2, epochs=1, batch_size=8, preprocess=PreprocessSpec(size=32))
    run = tmp_path / "run"
    run.mkdir()
    _evil_file(run / "checkpoint.pt", marker)
    with pytest.raises(DataError, match="checkpoint.pt: refused: .*could run code"):
        run_training("ddad", config, data, run, Progress("none"))

    model_run = tmp_path / "model_run"
    model_run.mkdir()
    _evil_file(model_run / "model.pt", marker)
    for name in registry():
        with pytest.raises(DataError, match="model.pt: refused"):
            method(name).hooks().load_scorer(model_run)
    reuse = Config(backbone="ae", members=2, epochs=1, batch_size=8, preprocess=PreprocessSpec(size=32),
                   reuse_normal_module=str(model_run))
    with pytest.raises(DataError, match="model.pt: refused"):
        run_training("ddad", reuse, data, tmp_path / "reuse", Progress("none"))
    with pytest.raises(DataError, match="not a readable weights file"):
        read_checkpoint_file(_evil_file(tmp_path / "mae.pth", marker))
    assert not marker.exists()


def test_a_corrupt_checkpoint_or_run_file_gets_one_line_with_advice(folders, tmp_path, capsys):
    from cxrscreen.engine.train import RunFolderError, read_run

    run = tmp_path / "run"
    args = ["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]), "--out", str(run),
            "--preset", "tiny", "--batch-size", "8", "--threads", "1", "--progress", "json"]
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    (run / ".checkpoint.pt.abc.part").write_bytes(b"half")
    code, text = _train(args, capsys)
    assert code == 1 and "truncated or corrupt checkpoint" in text and f"delete {run / 'checkpoint.pt'}" in text
    assert "Traceback" not in text and not (run / ".checkpoint.pt.abc.part").exists()  # stale parts cleaned
    (run / "run.json").write_text('{"method": "dd')
    with pytest.raises(RunFolderError, match="truncated or corrupt run file"):
        read_run(run)


def test_readme_command_lines_parse():
    """Every `cxrscreen ...` line of README.md and of the subcommands' docstring examples parses."""
    import shlex

    from cxrscreen.engine.cli import SUBCOMMANDS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    lines = [line.strip().strip("`").strip() for line in readme.splitlines() if line.strip().strip("`").startswith("cxrscreen ")]
    for name, (module, _) in SUBCOMMANDS.items():
        if module.startswith(("engine.", "cxrscreen.engine.")):
            doc = __import__(module, fromlist=["_"]).__doc__ or ""
            lines += [line.strip() for line in doc.splitlines() if line.strip().startswith("cxrscreen ")]
    assert len(lines) > 10
    checked = 0
    for line in lines:
        line = line.split(" # ")[0].rstrip("\\").strip()
        # a synopsis: "[--out DIR]" is an optional part (taken), "[a | b]" takes the first alternative
        line = re.sub(r"\[([^\]|]*)(\|[^\]]*)?\]", r"\1", line)
        argv = shlex.split(line)[1:]
        if not argv or argv[0] in ("gui",) or any(a in ("...", "…") for a in argv):
            continue
        chosen = next((a for a in argv if not a.startswith("-")), None)
        parser = build_parser(only=chosen, argv=argv)
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                pytest.fail(f"README/docstring command does not parse: {line}")
        checked += 1
    assert checked > 10


def test_ddad_resume_keeps_the_checkpoints_layout(folders, tmp_path, epoch_probe):
    """The layout is a run setting: a resume asking for another one goes on with the checkpoint's."""
    import torch

    from cxrscreen.engine.datasets import from_folders
    from cxrscreen.engine.methods import method
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.train import run_training

    data = from_folders(folders["normal"], folders["unlabeled"])
    ddad = method("ddad")
    base = ddad.config("tiny", batch_size=8, checkpoint_every=0.0, device="cpu")
    separate = type(base).from_dict({**base.to_dict(), "layout": "separate"})
    stacked = type(base).from_dict({**base.to_dict(), "layout": "stacked"})
    assert run_training("ddad", separate, data, tmp_path / "straight", Progress("none")).status == "done"
    assert run_training("ddad", separate, data, tmp_path / "resumed", epoch_probe.progress(),
                        epoch_probe.stop).status == "stopped"
    assert run_training("ddad", stacked, data, tmp_path / "resumed", epoch_probe.progress()).status == "done"
    assert any("layout 'separate': resuming with it" in m for m in epoch_probe.messages)
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert a["layout"] == b["layout"] == "separate"
    for k in a["ensemble"]:
        assert torch.equal(a["ensemble"][k], b["ensemble"][k]), k


def test_the_contract_is_torch_free():
    """`methods --json` and the train parser load no torch (the app runs them; a bundle has no torch)."""
    import subprocess
    import sys

    code = ("import sys; from cxrscreen.engine.cli import main; main(['methods', '--json']); "
            "from cxrscreen.engine.cli import build_parser; build_parser('train', ['train', '--method', 'amae']); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_export_does_not_depend_on_the_scorers_argument_name(tmp_path):
    import numpy as np
    import onnxruntime as ort
    import torch

    from cxrscreen.engine.detector import HEATMAP_NAME, INPUT_NAME, SCORE_NAME
    from cxrscreen.engine.export import export_graph

    class Scorer(torch.nn.Module):
        def forward(self, radiograph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            heat = (radiograph[:, 0] - radiograph[:, 0].mean(dim=(1, 2), keepdim=True)) ** 2
            return heat.mean(dim=(1, 2)), heat

    export_graph(Scorer().eval(), torch.zeros(2, 1, 16, 16), tmp_path / "g.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 16, 16)).astype(np.float32)  # another batch size
    score, heat = ort.InferenceSession(str(tmp_path / "g.onnx")).run([SCORE_NAME, HEATMAP_NAME], {INPUT_NAME: x})
    ref_s, ref_h = (t.numpy() for t in Scorer()(torch.from_numpy(x)))
    np.testing.assert_allclose(score, ref_s, atol=1e-5)
    np.testing.assert_allclose(heat, ref_h, atol=1e-5)


def test_cuda_without_a_gpu_is_a_problem_named_by_its_option(folders, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    args = ["--normal", str(folders["normal"]), "--unlabeled", str(folders["unlabeled"]), "--out", str(tmp_path / "r"),
            "--preset", "tiny", "--device", "cuda", "--progress", "json"]
    code, text = _train([*args, "--check"], capsys)
    problems = json.loads(text.strip().splitlines()[-1])["problems"]
    assert code == 1 and [p["level"] for p in problems if p["option"] == "--device"] == ["error"]
    code, text = _train(args, capsys)
    assert code == 1 and "no usable CUDA GPU" in text and "Traceback" not in text


def test_the_check_says_which_operating_points_the_calibration_normals_support():
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.base import generic_problems

    def note(n_cal: int) -> str:
        counts = {"normal": 600, "unlabeled": 500, "abnormal": 0, "normal_calibration": n_cal}
        return [p.message for p in generic_problems(registry()["ddad"], None, counts) if p.level == "note"][0]

    # "90 %" as in the rest of the sentence, the card and the operating-point panel (it read "90%, 95% ... 99 %")
    assert note(60) == ("60 known normals will be held out to calibrate: thresholds at 90 %, 95 % specificity rest on "
                        "enough of them (99 % needs at least 100)")
    assert note(100).endswith("thresholds at 90 %, 95 %, 99 % specificity rest on enough of them")
    assert "too few" in note(9) and "90 %" in note(10)
