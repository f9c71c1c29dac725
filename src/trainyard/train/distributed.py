"""Data-parallel training through ``torch.distributed`` (``torchrun --nproc_per_node N -m trainyard fit``).

Each process trains on a fixed share of the training rows (row i belongs to rank i mod world size),
shuffled anew every epoch; gradients are averaged by DistributedDataParallel. Rank 0 writes the run
directory; every rank writes its own ledger shard (``ledger/rank<r>/``), merged on read.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) from the environment torchrun sets; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return world()[0] == 0


def init(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns True when data-parallel."""
    rank, size = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def own_rows(n: int) -> np.ndarray:
    """The training rows this process trains on."""
    rank, size = world()
    return np.arange(rank, n, size)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Sum of each value over all processes (identity for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
