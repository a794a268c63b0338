"""Old vs ported training code: DDAD and AMAE give bitwise the same networks (issue 19).

The pre-port commit (80dd090 by default) is checked out in a temporary git worktree outside
the repository; each method is trained twice with a reduced but real configuration, once with
that code and once with this checkout's (each in its own Python process, ``PYTHONPATH`` at its
tree, one torch thread), through the public driver both have (``engine.train.run_training``).
Every tensor of the two ``model.pt`` files is compared bitwise, and the dev_test AUROC of every
score type is computed with each version's own evaluation function.

    python bench/contract_equivalence.py                       # Kermany dev split (../shared/data)
    python bench/contract_equivalence.py --data /work/shared/data --ddad-epochs 5 --amae-epochs 2

Data: the development split's known normals and its unlabeled pool at AR 0.6; dev_test is only
evaluated. Without ../shared/data, synthetic chests (engine.synth) are used instead (said in the
result). Results: bench/results/contract/equivalence.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results" / "contract"

# runs in a child process with PYTHONPATH at one code tree; argv: method out_dir ddad_epochs amae_epochs split|synthetic
CHILD = r'''
import importlib, importlib.abc, importlib.util, sys
if importlib.util.find_spec("cxrscreen") is None:
    # a tree from before the one namespace: its top-level modules, the same objects, under the new names
    class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "cxrscreen" or name.startswith("cxrscreen."):
                return importlib.util.spec_from_loader(name, self, is_package=True)
            return None
        def create_module(self, spec):
            if spec.name == "cxrscreen":
                return None
            return importlib.import_module(spec.name.split(".", 1)[1])
        def exec_module(self, module):
            pass
    sys.meta_path.insert(0, _OldNames())
import json, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from cxrscreen import engine
from cxrscreen.engine import metrics as M
from cxrscreen.engine.datasets import from_split, from_folders, load_images
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.train import run_training

method, out, ddad_epochs, amae_epochs, source = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if source == "synthetic":
    from cxrscreen.engine.synth import write_study
    root = out / "data"
    if not root.exists():
        write_study(root / "normal", 60, 0, seed=1, size=96, formats=("png",), marker=False)
        write_study(root / "unlabeled", 20, 20, seed=2, size=96, formats=("png",), marker=False, lesion_strength=2.0)
        write_study(root / "test", 20, 20, seed=3, size=96, formats=("png",), marker=False, lesion_strength=2.0)
        for f in ("normal", "unlabeled"):
            (root / f / "labels.csv").unlink()
    data = from_folders(root / "normal", root / "unlabeled")
    import csv
    rows = list(csv.DictReader(open(root / "test" / "labels.csv")))
    test_paths = [root / "test" / r["path"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
else:
    split = Path(source)
    data = from_split(split, 0.6)
    d = json.loads(split.read_text())["dev_test"]
    test_paths = [split.parent.parent / p for p in d["normal"] + d["abnormal"]]
    labels = np.r_[np.zeros(len(d["normal"])), np.ones(len(d["abnormal"]))].astype(int)

if method == "ddad":
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.methods.ddad.recipe import all_maps, load_scorer
    config = Config(epochs=ddad_epochs, device="cpu", checkpoint_every_s=1e9, batch_size=16 if source == "synthetic" else 64)
else:
    from cxrscreen.engine.methods.amae import preset_config
    from cxrscreen.engine.methods.amae.recipe import all_scores
    config = preset_config("small", pretrain_epochs=amae_epochs, stage1_epochs=amae_epochs, epochs=amae_epochs,
                           warmup_epochs=1, pretrain_warmup_epochs=1, device="cpu", checkpoint_every_s=1e9,
                           batch_size=16 if source == "synthetic" else 64)
run = out / method
t0 = time.time()
outcome = run_training(method, config, data, run, Progress("none"))
assert outcome.status == "done", outcome.status
seconds = time.time() - t0
images = load_images(test_paths, config.preprocess)
scores = all_maps(load_scorer(run), images) if method == "ddad" else all_scores(run, images)
# the model file this code wrote (trusted: made just now by this process); the pre-port AMAE file
# holds a numpy array, which a weights-only load refuses
saved = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
flat = {}
def walk(obj, prefix):
    if isinstance(obj, torch.Tensor):
        flat[prefix] = obj.contiguous()
    elif isinstance(obj, np.ndarray):
        flat[prefix] = torch.from_numpy(np.ascontiguousarray(obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            walk(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            walk(v, f"{prefix}[{i}]")
walk(saved, "model")
torch.save(flat, out / f"{method}_tensors.pt")
(out / f"{method}.json").write_text(json.dumps({
    "engine": engine.__file__, "config": config.to_dict(), "data": data.summary(), "train_seconds": seconds,
    "test": {"n": int(len(labels)), "n_abnormal": int(labels.sum())},
    "auroc": {k: M.auroc(labels, v) for k, v in scores.items()}}, default=str))
'''


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def _train(tree: Path, method: str, out: Path, args: argparse.Namespace, source: str) -> dict:
    # packaging/src: the parent package cxrscreen of a tree with the one namespace (none in older trees)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "packaging" / "src"), str(tree)]), "OMP_NUM_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, method, str(out), str(args.ddad_epochs), str(args.amae_epochs),
                           source], env=env, cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{tree} {method} failed:\n{proc.stderr[-3000:]}")
    result = json.loads((out / f"{method}.json").read_text())
    result["wall_seconds"] = time.time() - t
    return result


def _compare(a: Path, b: Path) -> dict:
    import torch

    ta, tb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    differ = [k for k in ta if k in tb and not (ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]))]
    return {"tensors_old": len(ta), "tensors_new": len(tb), "only_old": sorted(set(ta) - set(tb)),
            "only_new": sorted(set(tb) - set(ta)), "differ": differ,
            "elements": int(sum(t.numel() for t in ta.values())),
            "bitwise_equal": not differ and set(ta) <= set(tb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="80dd090", help="the pre-port commit (default: %(default)s)")
    parser.add_argument("--ddad-epochs", type=int, default=5)
    parser.add_argument("--amae-epochs", type=int, default=2, help="epochs of each AMAE phase (small architecture)")
    parser.add_argument("--methods", nargs="+", default=["ddad", "amae"])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: %(default)s)")
    args = parser.parse_args()
    split = args.data / "kermany" / "splits" / "dev.json"
    source = str(split) if split.is_file() else "synthetic"
    with tempfile.TemporaryDirectory(prefix="cxr_contract_") as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "old"
        _git("worktree", "add", "--detach", str(old_tree), args.old)
        try:
            results = {"old_commit": _git("rev-parse", args.old).strip(), "new_commit": _git("rev-parse", "HEAD").strip(),
                       "new_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no").strip()),
                       "data": "kermany dev split, AR 0.6; dev_test evaluated" if source != "synthetic"
                       else "synthetic chests (../shared/data absent)",
                       "ddad_epochs": args.ddad_epochs, "amae_epochs_per_phase": args.amae_epochs, "methods": {}}
            for method in args.methods:
                old = _train(old_tree, method, tmp / "run_old", args, source)
                new = _train(REPO, method, tmp / "run_new", args, source)
                cmp = _compare(tmp / "run_old" / f"{method}_tensors.pt", tmp / "run_new" / f"{method}_tensors.pt")
                results["methods"][method] = {"old": old, "new": new, "model_pt": cmp}
                same_auroc = {k: old["auroc"][k] == new["auroc"].get(k) for k in old["auroc"]}
                print(f"{method}: {cmp['tensors_old']} tensors ({cmp['elements']} values) bitwise equal: "
                      f"{cmp['bitwise_equal']}; dev_test AUROC old {old['auroc']} new {new['auroc']} "
                      f"(identical: {all(same_auroc.values())}); train s old {old['train_seconds']:.0f} "
                      f"new {new['train_seconds']:.0f}", flush=True)
        finally:
            _git("worktree", "remove", "--force", str(old_tree))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "equivalence.json").write_text(json.dumps(results, indent=2, default=str))
    if not all(m["model_pt"]["bitwise_equal"] for m in results["methods"].values()):
        sys.exit("the ported code trains other networks than the pre-port code")


if __name__ == "__main__":
    main()
