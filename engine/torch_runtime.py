"""Where training runs: device choice and CPU threads (shared by every method's recipe).

Threads are a property of the machine and the moment (a CPU shared with other jobs can run one
thread several times faster than two, because OpenMP threads wait for each other), not of a
run: they are set per process (`cxrscreen train --threads N`) and never stored in a run's
settings, so a run can be resumed with another thread count.
"""
from __future__ import annotations

import os
from typing import Literal

import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(choice: DeviceChoice) -> torch.device:
    """"auto" is CUDA when torch sees a usable GPU, else the CPU; "cuda" without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no usable CUDA GPU")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def set_threads(n: int) -> int:
    """Use ``n`` CPU threads for torch (0: one per core); returns the number set."""
    if n < 0:
        raise ValueError(f"threads must be >= 0, got {n}")
    n = n or max(1, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n
