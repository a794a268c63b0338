"""Conformance of every registered method (the pattern of timm's tests/test_models.py).

A method gets all of this by registering: its ``tiny`` preset (tests only) trains on synthetic
chests, exports to ONNX that onnxruntime runs like PyTorch, scores without NaN, stops and resumes
(with other run settings) to bitwise the same networks, never trains on the calibration normals,
is not retrained when only its "done" status was lost, and round-trips through `methods --json`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrscreen.engine.datasets import TrainingData, from_folders, load_images
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.base import COMMON_OPTIONS, trained_dict
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import RUN_FILE, read_run, run_training

METHODS = list(registry())
STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def chests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conformance")
    write_study(root / "normal", 22, 0, seed=21, **STUDY)
    write_study(root / "unlabeled", 6, 6, seed=22, **STUDY, lesion_strength=2.0)
    write_study(root / "other", 4, 0, seed=23, **STUDY)
    write_study(root / "abnormal", 0, 4, seed=24, **STUDY, lesion_strength=2.0)
    for f in ("normal", "unlabeled", "other", "abnormal"):
        (root / f / "labels.csv").unlink()
    return {"normal": root / "normal", "unlabeled": root / "unlabeled", "other": root / "other",
            "abnormal": root / "abnormal"}


def _roles(name: str) -> dict[str, int]:
    """The image counts a method gets: every role it does not declare "unused"."""
    m = registry()[name]
    used = {r.role for r in m.roles if r.requirement != "unused"}
    return {"normal": 22, "unlabeled": 12 if "unlabeled" in used else 0, "abnormal": 4 if "abnormal" in used else 0}


def _data(name: str, chests: dict[str, Path]) -> TrainingData:
    roles = _roles(name)
    return from_folders(chests["normal"], chests["unlabeled"] if roles["unlabeled"] else None,
                        abnormal_dir=chests["abnormal"] if roles["abnormal"] else None)


def _tiny(name: str, **run_settings):
    m = registry()[name]
    config = m.config("tiny")
    values = {"checkpoint_every_s": 0.0, "device": "cpu", **run_settings}
    return type(config).from_dict({**config.to_dict(), **values})


def _model(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)


def _tensors(obj, prefix=""):
    """Every tensor of a nested model.pt payload, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def _assert_same_networks(a: dict, b: dict) -> None:
    ta, tb = dict(_tensors(a)), dict(_tensors(b))
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


class _StopAtFirstEpoch(Progress):
    def __init__(self, stop: StopRequest) -> None:
        super().__init__("none")
        self.stop = stop

    def update(self, step, force=False, **fields):
        if fields.get("epoch_end"):
            self.stop.request()
        super().update(step, force, **fields)


@pytest.fixture(scope="module")
def trained(chests, tmp_path_factory) -> dict[str, tuple[Path, TrainingData]]:
    out = {}
    for name in METHODS:
        data = _data(name, chests)
        run = tmp_path_factory.mktemp(f"conf_{name}") / "run"
        torch.set_num_threads(1)
        assert run_training(name, _tiny(name), data, run, Progress("none")).status == "done"
        out[name] = (run, data)
    return out


@pytest.mark.parametrize("name", METHODS)
def test_tiny_preset_is_declared_for_tests_only(name):
    tiny = registry()[name].preset("tiny")
    assert tiny.tests_only and "tests only" in tiny.description.lower() and not tiny.as_published


@pytest.mark.parametrize("name", METHODS)
def test_trains_exports_and_scores_like_pytorch(name, trained, chests, tmp_path):
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.export import export_run

    run, data = trained[name]
    m = registry()[name]
    summary = read_run(run)
    assert summary["status"] == "done" and summary["data"]["roles"] == _roles(name)
    assert not list(run.glob(".*.part")) and not (run / "checkpoint.pt").exists()
    report = export_run(run, tmp_path / "d.onnx")  # refuses unless onnxruntime matches PyTorch within 1e-4
    assert report.n_checked > 0 and report.metadata.training["roles"]["normal"] == 22
    det = Detector(tmp_path / "d.onnx", provider="cpu")
    images = load_images(sorted(chests["unlabeled"].glob("*.png")), det.preprocess_spec)
    with torch.no_grad():
        ref = m.hooks().load_scorer(run)(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(det.run(images).scores, ref, atol=1e-4)
    # the thresholds' floor: the training normals, scored by the trained networks once training ended
    seen = load_images(data.normal_train, det.preprocess_spec)
    with torch.no_grad():
        seen_scores = np.sort(m.hooks().load_scorer(run)(torch.from_numpy(seen))[0].numpy())
    np.testing.assert_allclose(det.meta.calibration.training_normal_scores, seen_scores, rtol=1e-5, atol=1e-6)
    scores = m.hooks().evaluate(run, images)
    assert set(scores) == set(m.score_types)
    for score_type, s in scores.items():
        assert s.shape == (len(images),) and np.isfinite(s).all(), score_type


@pytest.mark.parametrize("name", METHODS)
def test_stop_and_resume_with_other_run_settings_gives_the_same_networks(name, trained, tmp_path):
    straight, data = trained[name]
    stop = StopRequest()
    run = tmp_path / "resumed"
    first = run_training(name, _tiny(name), data, run, _StopAtFirstEpoch(stop), stop)
    assert first.status == "stopped" and (run / "checkpoint.pt").exists()
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)  # tensors and plain values only
    assert ckpt["epoch"] == 1
    # a run setting changed (the checkpoint interval): still the same run, resumed
    again = run_training(name, _tiny(name, checkpoint_every_s=1000.0), data, run, Progress("none"))
    assert again.status == "done"
    _assert_same_networks(_model(straight), _model(run))


@pytest.mark.parametrize("name", METHODS)
def test_calibration_normals_never_reach_training(name, trained, chests, tmp_path):
    straight, data = trained[name]
    other = sorted(chests["other"].glob("*.png"))
    swapped = TrainingData(data.normal_train, other[: len(data.normal_calibration)], data.unlabeled,
                           abnormal=data.abnormal)
    assert run_training(name, _tiny(name), swapped, tmp_path / "run", Progress("none")).status == "done"
    _assert_same_networks(_model(straight), _model(tmp_path / "run"))


@pytest.mark.parametrize("name", METHODS)
def test_a_finished_model_is_not_retrained_when_its_status_was_lost(name, trained, tmp_path):
    import shutil

    straight, data = trained[name]
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    summary = read_run(run)
    summary["status"] = "running"  # killed between model.pt and the "done" status
    (run / RUN_FILE).write_text(json.dumps(summary))
    (run / "calibration.json").unlink()
    before = (run / "model.pt").stat().st_mtime_ns
    events = []

    class Record(Progress):
        def message(self, text, level="info"):
            events.append(text)

    assert run_training(name, _tiny(name), data, run, Record("none")).status == "done"
    assert (run / "model.pt").stat().st_mtime_ns == before and (run / "calibration.json").is_file()
    assert any("not training again" in e for e in events)


@pytest.mark.parametrize("name", METHODS)
def test_round_trips_through_methods_json(name, capsys):
    from cxrscreen.engine import train_cli
    from cxrscreen.engine.cli import main as cli

    assert cli(["methods", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    decl = next(m for m in d["methods"] if m["name"] == name)
    m = registry()[name]
    assert decl == json.loads(json.dumps(m.to_json()))
    options = {o["name"]: o for o in (*d["common_options"], *decl["options"])}
    for preset in decl["presets"]:
        argv = ["--method", name, "--out", "unused"]
        for key, value in preset["values"].items():  # the app's command line: every value as its flag
            o = options[key]
            if o["type"] == "bool":
                argv.append(o["flag"] if value else f"--no-{o['flag'][2:]}")
            else:
                argv += [o["flag"], str(value)]
        parser = argparse.ArgumentParser()
        train_cli.add_arguments(parser, argv=argv)
        config = train_cli.config_from_namespace(m, parser.parse_args(argv))
        assert trained_dict(config) == trained_dict(m.config(preset["name"])), preset["name"]
    assert {o.name for o in COMMON_OPTIONS} == {o["name"] for o in d["common_options"]}
