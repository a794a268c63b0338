"""Fixtures shared by the whole suite, and the source-checkout import shim.

The shim (before anything of cxrscreen is imported): ``cxrscreen`` is this checkout's, whatever
else is installed. The parent package lives in ``packaging/src/cxrscreen`` and, in a checkout,
maps ``cxrscreen.app`` / ``.engine`` / ``.models`` to the top-level folders; ``packaging/src``
goes first on ``sys.path`` and on ``PYTHONPATH``, so the processes the tests start (``python -m
cxrscreen.engine``, the app's engine processes) import this checkout too (README, "Development
notes").
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMESPACE_DIR = REPO / "packaging" / "src"
sys.path.insert(0, str(NAMESPACE_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(NAMESPACE_DIR), os.environ.get("PYTHONPATH")) if p)
import cxrscreen  # noqa: E402

if Path(cxrscreen.__file__).resolve() != NAMESPACE_DIR / "cxrscreen" / "__init__.py" or str(REPO) not in cxrscreen.__path__:
    raise RuntimeError(f"cxrscreen was imported from {cxrscreen.__file__} before tests/conftest.py could point it at "
                       f"{REPO}: run pytest from the checkout, without importing cxrscreen first")

import pytest  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"

# `make test` runs the suite in parallel (pytest-xdist, `--dist loadscope`): one work unit per test
# module, so a module's fixtures are built once, and modules that share an expensive session fixture
# share a unit too (SHARED_FIXTURE_GROUPS: built once for both). xdist's own `loadgroup` marks cannot
# do this with pytest 9 (xdist 3.8 renames `item._nodeid`, which pytest 9 no longer reads).
SHARED_FIXTURE_GROUPS = {
    "tests/engine/test_ensemble.py": "ensemble_runs",
    "tests/app/test_ensemble_app.py": "ensemble_runs",
}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without the plugin
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_FIXTURE_GROUPS.get(module, module)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real chest X-ray data beside the checkout (../shared/data); skip when absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (it lives beside the checkout; CI has it)")
    return SHARED_DATA


def build_local_contrast_detector(path: Path, size: int = 32, n_normals: int = 50, crop: str = "none") -> Path:
    """A small real ONNX detector with cxrscreen metadata, built without torch.

    heatmap = (x − 3x3 box blur of x)², score = mean(heatmap): a local-contrast detector. Its
    calibration comes from running it (onnxruntime) on smooth random "normal" images. ``crop``
    is its preprocessing's crop step ("none" or "field").
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cxrscreen.engine.detector import HEATMAP_NAME, INPUT_NAME, METADATA_KEY, SCORE_NAME, DetectorMetadata, NormalCalibration
    from cxrscreen.engine.preprocess import PreprocessSpec

    kernel = helper.make_tensor("k", TensorProto.FLOAT, [1, 1, 3, 3], [1.0 / 9] * 9)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "k"], ["blur"], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", [INPUT_NAME, "blur"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("Squeeze", ["sq", "axis1"], [HEATMAP_NAME]),
        helper.make_node("ReduceMean", [HEATMAP_NAME, "axes12"], [SCORE_NAME], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "local_contrast",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info(HEATMAP_NAME, TensorProto.FLOAT, ["batch", size, size])],
        initializer=[kernel, helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    normals = rng.normal(0, 0.05, (n_normals, 1, size, size)).astype(np.float32)
    scores, heatmaps = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: normals})
    meta = DetectorMetadata(
        method="test-local-contrast", backbone="box-blur", score_type="local-contrast",
        preprocess=PreprocessSpec(size=size, crop=crop), calibration=NormalCalibration.from_samples(scores, heatmaps),
        training={"normal_train": 0, "note": "analytic test detector"}, name="local contrast (test)",
        software={"cxrscreen": "test"}, created="2026-01-01T00:00:00+00:00",
    )
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


class EpochProbe:
    """A training progress sink that asks ``stop`` to stop at the first epoch end and keeps the messages."""

    def __init__(self) -> None:
        from cxrscreen.engine.stop import StopRequest

        self.stop = StopRequest()
        self.messages: list[str] = []

    def progress(self):
        from cxrscreen.engine.progress import Progress

        probe = self

        class Probe(Progress):
            def update(self, step, force=False, **fields):
                if fields.get("epoch_end"):
                    probe.stop.request()

            def message(self, text, level="info"):
                probe.messages.append(text)

        return Probe("none")


@pytest.fixture
def epoch_probe() -> EpochProbe:
    return EpochProbe()


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory) -> Path:
    """Path to a small real ONNX detector (see :func:`build_local_contrast_detector`)."""
    return build_local_contrast_detector(tmp_path_factory.mktemp("detector") / "local_contrast.onnx")


ENSEMBLE_MEMBERS = ("msacl", "amae")


@pytest.fixture(scope="session")
def ensemble_runs(tmp_path_factory) -> dict[str, Path]:
    """Two methods' tiny runs on the same 30 known normals (AMAE also on 12 unlabeled images, MSACL
    on none: it does not use them), each exported to ``root/NAME.onnx``; ``root/test``: 8 + 8 chests.
    Shared by the engine's and the app's ensemble tests (tests/engine/test_ensemble.py,
    tests/app/test_ensemble_app.py)."""
    import torch

    from cxrscreen.engine.datasets import from_folders
    from cxrscreen.engine.export import export_run
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.synth import write_study
    from cxrscreen.engine.train import run_training

    root = tmp_path_factory.mktemp("ensemble")
    study = dict(size=64, formats=("png",), variation=0.5, marker=False)
    write_study(root / "normal", 30, 0, seed=31, **study)
    write_study(root / "unlabeled", 6, 6, seed=32, **study, lesion_strength=2.0)
    write_study(root / "test", 8, 8, seed=33, **study, lesion_strength=2.0)
    for f in ("normal", "unlabeled"):
        (root / f / "labels.csv").unlink()
    data = from_folders(root / "normal", root / "unlabeled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict[str, Path] = {"root": root}
    try:
        for name in ENSEMBLE_MEMBERS:
            config = registry()[name].config("tiny")
            config = type(config).from_dict({**config.to_dict(), "checkpoint_every_s": 0.0, "device": "cpu"})
            uses_unlabeled = any(r.role == "unlabeled" and r.requirement != "unused" for r in registry()[name].roles)
            run = root / f"run_{name}"
            assert run_training(name, config, data if uses_unlabeled else data.without_unlabeled(), run,
                                Progress("none")).status == "done"
            export_run(run, root / f"{name}.onnx", name=f"{name.upper()} site A")
            out[name] = run
    finally:
        torch.set_num_threads(threads)
    return out
