"""DDAD training and scoring (imports torch). Settings, paper recipe and deviations: see ``engine.methods.ddad``."""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from cxrscreen.engine.augment import ASPECT_STRETCH, AcquisitionAugment
from cxrscreen.engine.datasets import DataError, TrainingData
from cxrscreen.engine.loop import TrainingLoop, load_file
from cxrscreen.engine.methods.ddad import FINAL_MODEL, Config, Layout
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.preprocess import EQUALIZED
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.torch_runtime import resolve_device
from cxrscreen.models.autoencoder import AEOutput, AutoEncoder, Backbone, stack_members, unstack_members
from cxrscreen.models.ddad import SCORE_TYPES, DDADScorer, ScoreType, pool_map  # noqa: F401  (ScoreType in signatures)

logger = logging.getLogger(__name__)

StepResult = tuple[Tensor, Tensor]  # per-member (training loss, reconstruction MSE) of one step


def resolve_layout(layout: Layout, device: torch.device) -> Literal["stacked", "separate"]:
    if layout == "auto":
        return "stacked" if device.type == "cuda" else "separate"
    return layout


def cpu_member_workers(device: torch.device, layout: Literal["stacked", "separate"], nets: int) -> int:
    """How many members train concurrently: on the CPU with separate members, one per torch thread.

    A 64 x 64 autoencoder's kernels are too small to keep several OpenMP threads busy (they wait
    for each other at every operation), so N members trained at once with one thread each run
    faster than one member at a time with N threads (bench/RESULTS.md). A member computed with
    one thread gives the same numbers whichever worker runs it, so the result does not depend on
    the number of workers (:func:`run_interleaved` schedules them). Elsewhere (CUDA, stacked
    members): 1.
    """
    if device.type != "cpu" or layout != "separate":
        return 1
    return max(1, min(torch.get_num_threads(), nets))


def run_interleaved(pool: ThreadPoolExecutor, workers: int,
                    units: dict[Hashable, tuple[int, Callable[[], Iterator[StepResult]]]]) -> dict[Hashable, list[StepResult]]:
    """Run independent units (``key: (steps, generator function)``) on ``workers`` threads of ``pool``.

    A worker takes one step of the free unit with the most steps left, then gives the unit back:
    the workers stay busy until the last step (3 members of 16 steps on 2 workers: 24 steps'
    time, where one member per worker from start to end would take 32). A unit never runs on two
    threads at once, its steps stay in order and its results in step order, so the outcome is
    the same as running the units one after another. The first error stops every worker and is
    raised here.
    """
    results: dict[Hashable, list[StepResult]] = {key: [] for key in units}
    left = {key: steps for key, (steps, _) in units.items()}
    order = {key: i for i, key in enumerate(units)}
    gens = {key: make() for key, (_, make) in units.items()}
    ready = {key for key in units if left[key] > 0}
    busy: set[Hashable] = set()
    failed: list[BaseException] = []
    cond = threading.Condition()

    def worker() -> None:
        while True:
            with cond:
                while not ready and busy and not failed:
                    cond.wait()
                if failed or not ready:
                    return
                key = max(ready, key=lambda k: (left[k], -order[k]))
                ready.discard(key)
                busy.add(key)
            try:
                result = next(gens[key])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with cond:
                    failed.append(exc)
                    busy.discard(key)
                    cond.notify_all()
                return
            with cond:
                busy.discard(key)
                results[key].append(result)
                left[key] -= 1
                if left[key] > 0:
                    ready.add(key)
                cond.notify_all()

    for future in [pool.submit(worker) for _ in range(workers)]:
        future.result()
    for gen in gens.values():
        gen.close()
    if failed:
        raise failed[0]
    if any(left.values()):
        raise RuntimeError(f"units left unfinished: {[k for k, n in left.items() if n]}")
    return results


def member_seed(base: int, module: Literal["a", "b"], k: int) -> int:
    return base * 1000 + (0 if module == "a" else 500) + k


def member_losses(out: AEOutput, x: Tensor, backbone: Backbone, entropy_weight: float) -> tuple[Tensor, Tensor]:
    """Per-member training losses (K,) and reconstruction MSEs (K,) for inputs x (B, K, H, W)."""
    mean = out.mean.float()
    sq = (mean - x) ** 2
    rec = sq.mean(dim=(0, 2, 3))
    if backbone == "ae-u":
        logvar = out.logvar.float()
        loss = (torch.exp(-logvar) * sq).mean(dim=(0, 2, 3)) + logvar.mean(dim=(0, 2, 3))
    else:
        loss = rec
    if backbone == "memae":
        att = out.attention.float()
        entropy = -(att * torch.log(att + 1e-12)).sum(dim=-1).mean(dim=0)
        loss = loss + entropy_weight * entropy
    return loss, rec.detach()


class _Ensemble:
    """One module (A or B) in training: its data, members, optimisers and shuffling generators."""

    def __init__(self, name: Literal["a", "b"], data: Tensor, config: Config, device: torch.device,
                 layout: Literal["stacked", "separate"]) -> None:
        self.name, self.data, self.config, self.device, self.layout = name, data, config, device, layout
        k = config.members
        singles = []
        for i in range(k):
            torch.manual_seed(member_seed(config.seed, name, i))
            singles.append(self._new_net(1))
        self.generators = [torch.Generator().manual_seed(member_seed(config.seed, name, i) + 77) for i in range(k)]
        self.augment = None
        if config.augment != "none":
            self.augment = AcquisitionAugment(config.preprocess.output_range,
                                              photometric=config.preprocess.intensity not in EQUALIZED,
                                              framing=config.augment != "acquisition",
                                              aspect=ASPECT_STRETCH if config.augment == "acquisition-aspect" else 1.0,
                                              processing=config.augment == "acquisition-processing")
        self.aug_generators = [torch.Generator().manual_seed(member_seed(config.seed, name, i) + 99) for i in range(k)]
        nets = [stack_members(singles)] if layout == "stacked" else singles
        self.nets = [self._prepare(n) for n in nets]
        fused = device.type in ("cpu", "cuda")
        self.optimizers = [
            torch.optim.Adam(n.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused)
            for n in self.nets
        ]
        self.steps_per_epoch = len(data) // config.batch_size
        if self.steps_per_epoch < 1:
            raise DataError(f"module {name.upper()} has {len(data)} training images, fewer than one batch of {config.batch_size}")

    def _new_net(self, members: int) -> AutoEncoder:
        c = self.config
        return AutoEncoder(c.backbone, members, c.latent_size, c.multiplier, c.preprocess.size, c.mem_dim, c.shrink_thres)

    def _prepare(self, net: AutoEncoder) -> AutoEncoder:
        net = net.to(self.device)
        if self.device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        return net.train()

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.members

    def _channels_last(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x

    def _batch(self, idx: Tensor) -> Tensor:
        return self._channels_last(self.data[idx].to(self.device, non_blocking=True))

    def _step(self, net: AutoEncoder, opt: torch.optim.Optimizer, x: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step on a batch (B, K_net, S, S); returns per-member (loss, rec MSE)."""
        c = self.config
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16"):
            out = net(x)
        loss, rec = member_losses(out, x, c.backbone, c.entropy_weight)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members have disjoint parameters: the sum trains each on its own loss
        opt.step()
        return loss.detach(), rec

    def epoch_units(self, on_step: Callable[[int], None]) -> list[Callable[[], Iterator[StepResult]]]:
        """One epoch as independent units of work (one per member when separate, one when stacked),
        each a generator that takes one optimiser step per ``next``.

        The shuffles are drawn here, in the calling thread; each unit touches only its own
        member's network, optimiser and augmentation generator, so units may run concurrently and
        a unit's steps may run on different threads one after another (:func:`run_interleaved`).
        """
        c = self.config
        perms = [torch.randperm(len(self.data), generator=g) for g in self.generators]
        bs = c.batch_size
        if self.layout == "stacked":
            def stacked() -> Iterator[StepResult]:
                for s in range(self.steps_per_epoch):
                    idx = torch.stack([p[s * bs : (s + 1) * bs] for p in perms], dim=1)  # (B, K)
                    x = self.data[idx.reshape(-1)].reshape(bs, c.members, *self.data.shape[2:]).to(self.device)
                    if self.augment is not None:  # member k's images with member k's generator, as when separate
                        x = torch.cat([self.augment(x[:, i : i + 1], g) for i, g in enumerate(self.aug_generators)], dim=1)
                    result = self._step(self.nets[0], self.optimizers[0], x)
                    on_step(c.members)
                    yield result
            return [stacked]

        def member(net: AutoEncoder, opt: torch.optim.Optimizer, perm: Tensor, aug_g: torch.Generator
                   ) -> Iterator[StepResult]:
            for s in range(self.steps_per_epoch):
                x = self._batch(perm[s * bs : (s + 1) * bs])
                if self.augment is not None:
                    x = self._channels_last(self.augment(x, aug_g))
                result = self._step(net, opt, x)
                on_step(1)
                yield result

        return [functools.partial(member, *args) for args in zip(self.nets, self.optimizers, perms, self.aug_generators)]

    @property
    def unit_steps(self) -> int:
        """Optimiser steps in one unit of :meth:`epoch_units` (for scheduling the longest first)."""
        return self.steps_per_epoch

    @staticmethod
    def summarise(results: list[list[StepResult]]) -> tuple[float, float]:
        """(mean training loss, mean reconstruction MSE) of an epoch's units, in member order."""
        steps = [r for unit in results for r in unit]
        losses = torch.cat([loss.reshape(-1) for loss, _ in steps])
        recs = torch.cat([rec.reshape(-1) for _, rec in steps])
        return float(losses.mean()), float(recs.mean())

    def run_epoch(self, on_step: Callable[[int], None]) -> tuple[float, float]:
        """One epoch for every member, in this thread; returns (mean training loss, mean reconstruction MSE)."""
        return self.summarise([list(unit()) for unit in self.epoch_units(on_step)])

    def state(self) -> dict[str, Any]:
        return {
            "nets": [n.state_dict() for n in self.nets],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "generators": [g.get_state() for g in self.generators],
            "aug_generators": [g.get_state() for g in self.aug_generators],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        for g, s in zip(self.aug_generators, state["aug_generators"]):
            g.set_state(s)

    def members_on_cpu(self) -> list[AutoEncoder]:
        singles: list[AutoEncoder] = []
        for n in self.nets:
            n = n.to("cpu", memory_format=torch.contiguous_format).eval()
            singles.extend(unstack_members(n) if n.members > 1 else [n])
        return singles


# settings that change what module B learns (layout, device, score, checkpoints do not)
_MODULE_B_FIELDS = ("backbone", "members", "epochs", "batch_size", "lr", "betas", "weight_decay", "latent_size",
                    "multiplier", "mem_dim", "shrink_thres", "entropy_weight", "seed", "preprocess", "precision")


def _reused_normal_module(config: Config, data: TrainingData, source: Path) -> list[AutoEncoder]:
    """Module B's members from another finished run, after checking it learnt the same thing."""
    import json

    from cxrscreen.engine.train import DATA_FILE

    if not (source / FINAL_MODEL).is_file():
        raise DataError(f"{source}: not a finished DDAD run (no {FINAL_MODEL}) to reuse module B from")
    saved = load_file(source / FINAL_MODEL, "DDAD model", "choose another --reuse-normal-module run")
    other = Config.from_dict(saved["config"])
    differ = [f for f in _MODULE_B_FIELDS if getattr(other, f) != getattr(config, f)]
    if differ:
        raise DataError(f"{source}: its module B was trained with different {', '.join(differ)}; cannot reuse it")
    other_normals = [str(Path(p).absolute()) for p in json.loads((source / DATA_FILE).read_text())["normal_train"]]
    if other_normals != [str(Path(p).absolute()) for p in data.normal_train]:
        raise DataError(f"{source}: its module B was trained on other known normals; cannot reuse it")
    ensemble = AutoEncoder(other.backbone, 2 * other.members, other.latent_size, other.multiplier,
                           other.preprocess.size, other.mem_dim, other.shrink_thres)
    ensemble.load_state_dict(saved["ensemble"])
    return unstack_members(ensemble.eval())[other.members:]


def train(config: Config, data: TrainingData, images: dict[str, np.ndarray], run_dir: Path,
          progress: Progress, stop: StopRequest) -> bool:
    """Train modules A and B on :class:`engine.loop.TrainingLoop` (one phase, "train"), resuming
    from ``run_dir/checkpoint.pt`` when present.

    Args:
        images: {"normal_train": (N_n, 1, S, S), "unlabeled": (N_u, 1, S, S)} preprocessed.

    Returns:
        True when finished (``model.pt`` written), False when stopped early (checkpoint written).
    """
    if len(images["unlabeled"]) == 0:
        raise DataError("DDAD needs unlabeled images (module A trains on normal ∪ unlabeled); none were given")
    loop = TrainingLoop(config, data.file_list_hash(), run_dir, progress, stop)
    device = resolve_device(config.device)
    layout = resolve_layout(config.layout, device)
    saved_layout = loop.saved.get("layout") if loop.resume_phase == "train" else None
    if saved_layout is not None and saved_layout != layout:  # the networks' layout is the checkpoint's
        progress.message(f"the checkpoint was written with layout '{saved_layout}': resuming with it")
        layout = saved_layout
    normal = torch.from_numpy(images["normal_train"])
    union = torch.from_numpy(np.concatenate([images["normal_train"], images["unlabeled"]]))
    if device.type == "cuda":
        normal, union = normal.to(device), union.to(device)
    reused_b = _reused_normal_module(config, data, Path(config.reuse_normal_module)) if config.reuse_normal_module else None
    modules = {"a": _Ensemble("a", union, config, device, layout)}
    if reused_b is None:
        modules["b"] = _Ensemble("b", normal, config, device, layout)
    else:
        progress.message(f"module B (normal-only) reused from {config.reuse_normal_module}")

    start_epoch, state = loop.resuming("train", config.epochs)
    if state is not None:
        for name, m in modules.items():
            m.load_state(state["modules"][name])  # loaded on the CPU; parameters and optimiser states follow the nets

    per_epoch = sum(m.total_steps for m in modules.values())
    total = per_epoch * config.epochs
    progress.phase("train", total, epochs=config.epochs, device=str(device), layout=layout, precision=config.precision,
                   members=config.members, backbone=config.backbone)
    losses: dict[str, float] = {}
    recs: dict[str, float] = {}
    workers = cpu_member_workers(device, layout, sum(len(m.nets) for m in modules.values()))
    if workers > 1:
        progress.message(f"{workers} members train at a time, one CPU thread each")
    threads_before = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 1 else None

    def run_epoch(epoch: int, on_step: Callable[..., None]) -> dict[str, float]:
        def step(n: int, name: str) -> None:
            on_step(n, module=name.upper(), loss=losses.get(name))

        if pool is None:
            for name, module in modules.items():
                losses[name], recs[name] = module.run_epoch(functools.partial(step, name=name))
        else:  # every member of both modules at once, step by step (members are independent)
            units = {(name, i): (module.unit_steps, unit) for name, module in modules.items()
                     for i, unit in enumerate(module.epoch_units(functools.partial(step, name=name)))}
            results = run_interleaved(pool, workers, units)
            for name, module in modules.items():
                losses[name], recs[name] = module.summarise([results[key] for key in units if key[0] == name])
        return {"loss": float(np.mean(list(losses.values()))), **{f"loss_{k}": v for k, v in losses.items()},
                **{f"rec_mse_{k}": v for k, v in recs.items()}}

    def state_now() -> dict[str, Any]:
        return {"modules": {name: m.state() for name, m in modules.items()}}

    try:
        if not loop.run_epochs("train", config.epochs, per_epoch, run_epoch, state_now, start_epoch, layout=layout):
            return False
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads_before)

    b_members = reused_b if reused_b is not None else modules["b"].members_on_cpu()
    ensemble = stack_members(modules["a"].members_on_cpu() + b_members).eval()
    loop.save_model({"config": config.to_dict(), "ensemble": ensemble.state_dict(), "members": config.members,
                     "train_seconds": loop.elapsed(), "device": str(device), "layout": layout})
    return True


def _load_model(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FINAL_MODEL
    if not path.is_file():
        raise DataError(f"{path}: no trained DDAD model (training not finished?)")
    return load_file(path, "DDAD model", "train the run again (delete the run folder) or choose another run")


def load_scorer(run_dir: Path, score_type: ScoreType | None = None) -> DDADScorer:
    """The trained detector (CPU, eval mode) from ``run_dir/model.pt``; ``score_type`` overrides the run's."""
    saved = _load_model(run_dir)
    c = Config.from_dict(saved["config"])
    ensemble = AutoEncoder(c.backbone, 2 * c.members, c.latent_size, c.multiplier, c.preprocess.size, c.mem_dim, c.shrink_thres)
    ensemble.load_state_dict(saved["ensemble"])
    return DDADScorer(ensemble.eval(), score_type or c.score_type, c.score_top_fraction).eval()


@torch.no_grad()
def all_maps(scorer: DDADScorer, images: np.ndarray, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Every DDAD map's image score, pooled as the scorer pools: {"rec", "intra", "inter"} -> (N,) (for evaluation)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in SCORE_TYPES}
    for i in range(0, len(images), batch_size):
        maps = scorer.maps(torch.from_numpy(images[i : i + batch_size]))
        for k in SCORE_TYPES:
            out[k].append(pool_map(maps[k], scorer.top_fraction).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in out.items()}



def evaluate(run_dir: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The evaluation hook: every score type's image scores {"rec", "intra", "inter"} -> (N,)."""
    return all_maps(load_scorer(run_dir), images)
