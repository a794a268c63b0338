"""DDAD recipe details: layouts agree, losses are the paper's, seeds differ per member."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from cxrscreen.engine.methods import ddad
from cxrscreen.engine.methods.ddad import Config
from cxrscreen.engine.methods.ddad.recipe import _Ensemble, member_losses
from cxrscreen.engine.preprocess import PreprocessSpec
from cxrscreen.models.autoencoder import BACKBONES as MODEL_BACKBONES
from cxrscreen.models.autoencoder import AEOutput
from cxrscreen.models.ddad import SCORE_TYPES as MODEL_SCORE_TYPES

CFG = Config(backbone="ae-u", members=2, epochs=1, batch_size=8, preprocess=PreprocessSpec(size=32))


def _one_step(layout: str, data: torch.Tensor) -> list:
    e = _Ensemble("a", data, CFG, torch.device("cpu"), layout)
    e.steps_per_epoch = 1
    e.run_epoch(lambda n: None)
    return [m.state_dict() for m in e.members_on_cpu()]


def test_stacked_and_separate_layouts_take_the_same_first_step():
    # Adam's first step is lr * sign(gradient): the layouts agree except where a gradient is
    # float noise (biases cancelled by the following BatchNorm), where the sign may flip (≤ 2 lr).
    torch.manual_seed(0)
    data = torch.rand(24, 1, 32, 32) * 2 - 1
    sep, stk = _one_step("separate", data), _one_step("stacked", data)
    differing = total = 0
    for a, b in zip(sep, stk):
        for name in a:
            if not a[name].dtype.is_floating_point:
                continue
            d = (a[name] - b[name]).abs()
            assert d.max() <= 2 * CFG.lr + 1e-6, name
            differing += int((d > 1e-6).sum())
            total += d.numel()
    assert differing / total < 0.01  # a batching error would flip about half of all signs


def test_members_get_different_initialisations_and_shuffles():
    e = _Ensemble("a", torch.zeros(16, 1, 32, 32), CFG, torch.device("cpu"), "separate")
    w0, w1 = (m.encoder[0].weight for m in e.nets)
    assert not torch.equal(w0, w1)
    p0, p1 = (torch.randperm(16, generator=g) for g in e.generators)
    assert not torch.equal(p0, p1)
    b = _Ensemble("b", torch.zeros(16, 1, 32, 32), CFG, torch.device("cpu"), "separate")
    assert not torch.equal(b.nets[0].encoder[0].weight, w0)  # module B is seeded apart from A


def test_losses_are_the_papers():
    x = torch.zeros(2, 1, 1, 2)
    mean = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    logvar = torch.log(torch.full((2, 1, 1, 2), 2.0))
    loss, rec = member_losses(AEOutput(mean, logvar, None), x, "ae-u", 0.0)
    # mean(exp(-logvar) * (x - mean)^2) + mean(logvar) = (1/2 * 1/4) + log 2
    torch.testing.assert_close(loss, torch.tensor([0.125 + torch.log(torch.tensor(2.0)).item()]))
    torch.testing.assert_close(rec, torch.tensor([0.25]))
    att = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])  # entropies log 2 and 0 -> mean log2 / 2
    loss, _ = member_losses(AEOutput(mean, None, att), x, "memae", 2e-4)
    torch.testing.assert_close(loss, torch.tensor([0.25 + 2e-4 * torch.log(torch.tensor(2.0)).item() / 2]))


def test_engine_names_match_the_networks():
    assert ddad.BACKBONES == MODEL_BACKBONES and ddad.SCORE_TYPES == MODEL_SCORE_TYPES


def test_config_validation_and_round_trip():
    assert Config.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ValueError, match="members"):
        Config(members=1)
    with pytest.raises(ValueError, match="divisible by 16"):
        Config(preprocess=PreprocessSpec(size=40))
    with pytest.raises(ValueError, match="backbone"):
        Config(backbone="vae")
    for bad in (0.0, 1.01):
        with pytest.raises(ValueError, match="score_top_fraction"):
            Config(score_top_fraction=bad)


def test_score_pooling_is_a_setting_the_paper_preset_keeps_at_the_mean():
    assert Config().score_top_fraction == 1.0
    for preset in ("paper", "robust", "quick"):
        assert ddad.METHOD.config(preset).score_top_fraction == 1.0
    assert ddad.make_config({"score_top_fraction": 0.01}).score_top_fraction == 0.01
    # a run trained before the setting existed loads with the paper's mean
    old = {k: v for k, v in CFG.to_dict().items() if k != "score_top_fraction"}
    assert Config.from_dict(old).score_top_fraction == 1.0
    # and resumes: a setting its saved settings lack matches only at its default
    from cxrscreen.engine.loop import settings_match

    assert settings_match(old, CFG)
    assert not settings_match(old, Config(**{**CFG.__dict__, "score_top_fraction": 0.01}))


class _Data:
    normal_train: list = []

    @staticmethod
    def file_list_hash() -> str:
        return "test"


def _train_members(tmp_path, workers: int, monkeypatch) -> tuple[list[dict], list[int]]:
    """Two epochs of a tiny DDAD on random images with ``workers`` members at a time."""
    import numpy as np

    from cxrscreen.engine.methods.ddad import recipe
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest

    steps: list[int] = []

    class Steps(Progress):
        def update(self, step: int, force: bool = False, **fields) -> None:
            steps.append(step)

    monkeypatch.setattr(recipe, "cpu_member_workers", lambda device, layout, nets: workers)
    rng = np.random.default_rng(0)
    images = {"normal_train": rng.uniform(-1, 1, (24, 1, 32, 32)).astype(np.float32),
              "unlabeled": rng.uniform(-1, 1, (16, 1, 32, 32)).astype(np.float32)}
    config = Config(backbone="ae-u", members=2, epochs=2, batch_size=8, preprocess=PreprocessSpec(size=32),
                    device="cpu", layout="separate")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert recipe.train(config, _Data(), images, tmp_path, Steps("none"), StopRequest())
    finally:
        torch.set_num_threads(threads)
    saved = torch.load(tmp_path / ddad.FINAL_MODEL, weights_only=False)
    return saved["ensemble"], steps


def test_members_trained_concurrently_learn_exactly_what_they_learn_one_at_a_time(tmp_path, monkeypatch):
    serial, serial_steps = _train_members(tmp_path / "serial", 1, monkeypatch)
    parallel, parallel_steps = _train_members(tmp_path / "parallel", 3, monkeypatch)
    assert serial.keys() == parallel.keys()
    for name in serial:
        assert torch.equal(serial[name], parallel[name]), name
    # every optimiser step is counted once: (5 + 3 steps) x 2 members x 2 epochs
    assert serial_steps[-1] == parallel_steps[-1] == 32
    assert parallel_steps == sorted(parallel_steps)


def test_concurrent_members_only_on_a_cpu_with_separate_members(monkeypatch):
    from cxrscreen.engine.methods.ddad.recipe import cpu_member_workers

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert cpu_member_workers(torch.device("cpu"), "separate", 6) == 2
    assert cpu_member_workers(torch.device("cpu"), "separate", 1) == 1
    assert cpu_member_workers(torch.device("cpu"), "stacked", 6) == 1
    assert cpu_member_workers(torch.device("cuda"), "separate", 6) == 1


def test_interleaved_units_keep_their_step_order_balance_the_workers_and_raise_errors():
    from concurrent.futures import ThreadPoolExecutor

    from cxrscreen.engine.methods.ddad.recipe import run_interleaved

    running: set[str] = set()
    overlap: list[str] = []
    lock = threading.Lock()
    log: list[tuple[str, float]] = []

    def unit(name: str, steps: int):
        def gen():
            for i in range(steps):
                with lock:
                    if name in running:
                        overlap.append(name)  # a unit must never run on two threads at once
                    running.add(name)
                time.sleep(0.01)
                with lock:
                    running.discard(name)
                    log.append((name, time.monotonic()))
                yield (name, i)
        return gen

    units = {"a0": (6, unit("a0", 6)), "a1": (6, unit("a1", 6)), "a2": (6, unit("a2", 6)), "b0": (0, unit("b0", 0))}
    with ThreadPoolExecutor(2) as pool:
        results = run_interleaved(pool, 2, units)
    assert overlap == []
    assert {k: v for k, v in results.items()} == {k: [(k, i) for i in range(n)] for k, (n, _) in units.items()}
    # the three equal units finish together, not one of them alone after the other two as with
    # one unit per worker (there the last unit's last step comes 6 steps after the others')
    finished = [max(i for i, (name, _) in enumerate(log) if name == unit_name) for unit_name in ("a0", "a1", "a2")]
    assert max(finished) - min(finished) <= 3, log

    def broken():
        yield ("x", 0)
        raise ValueError("disk full")

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="disk full"):
        run_interleaved(pool, 2, {"x": (3, broken), "y": (3, unit("y", 3))})
