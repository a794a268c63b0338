"""The development protocol's split for the dev benches: where it is, dev_test, the training data.

Every dev bench (ddad_dev, amae_dev, wscxr_dev, msacl_dev, memmc_dev) reads the same split file,
``../shared/data/kermany/splits/dev.json`` beside the checkout (``use_data`` points it elsewhere:
a bench's ``--data DIR``), through the engine's own readers, so a bench's dev_test and training
lists are those of `cxrscreen eval --split` and `cxrscreen train --split`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO.parent / "shared" / "data" / "kermany" / "splits" / "dev.json"


def use_data(data_dir: Path) -> None:
    """Read the split of the shared data folder ``data_dir`` instead of the one beside the checkout."""
    global SPLIT
    SPLIT = Path(data_dir) / "kermany" / "splits" / "dev.json"


def require() -> None:
    """Exit with one line when the real data is not there."""
    if not SPLIT.is_file():
        sys.exit(f"real data not found ({SPLIT}): this benchmark needs ../shared/data beside the checkout, "
                 "or --data DIR")


def dev_test() -> tuple[list[Path], np.ndarray]:
    """dev_test paths (normal, then abnormal) and labels: the engine's reading of a split part."""
    from cxrscreen.engine.evaluate import read_split_part

    part = read_split_part(SPLIT, "dev_test")
    return part.paths, part.labels.astype(int)


def training_data(ar: float = 0.6, shots: int | None = None, seed: int = 0, unlabeled: bool = True):
    """`train --split dev.json --ar AR [--shots K --seed SEED]`: the known normals with the engine's
    calibration hold-out, D_u at anomaly rate ``ar`` (none when not ``unlabeled``, as for a one-class
    method), the first K confirmed-abnormal images of the seed's draw."""
    from cxrscreen.engine.datasets import from_split

    data = from_split(SPLIT, ar, shots=shots, shots_seed=seed)
    return data if unlabeled else data.without_unlabeled("not used by this run")
