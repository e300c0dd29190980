"""Process-wide state a run sets and restores: threads, determinism, and the random number
generators (saved in checkpoints so that a resumed run draws what an uninterrupted one would)."""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager

import numpy as np
import torch

from . import distributed as D
from .recipes import TrainConfig

__all__ = [
    "gather_rng",
    "global_settings",
    "seed_everything",
    "seed_rank",
    "seconds_since",
    "set_rng",
]


@contextmanager
def global_settings(config: TrainConfig, device: torch.device):
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cudnn_det = torch.backends.cudnn.deterministic
    prev_threads = torch.get_num_threads()
    try:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_cudnn_det
        if config.threads > 0:
            torch.set_num_threads(prev_threads)


def _get_rng() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = rng["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in rng and torch.cuda.is_available():
        states = rng["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seed_rank(seed: int, info: D.DistInfo) -> None:
    """Under torchrun, each rank its own stream (dropout and the like) once the initial weights
    are alike on every rank; the data order stays global."""
    if info.enabled:
        torch.manual_seed(seed + 7919 * info.rank)


def seconds_since(t0: float, device: torch.device) -> float:
    """Wall-clock seconds since ``t0`` (``time.perf_counter()``) once the work queued on a
    GPU is done, so that the time is the work's and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def gather_rng(info: D.DistInfo) -> list[dict]:
    mine = _get_rng()
    if not info.enabled:
        return [mine]
    import torch.distributed as dist

    box: list = [None] * info.world_size
    dist.all_gather_object(box, mine)
    return box
