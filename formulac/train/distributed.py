"""Data-parallel training under ``torchrun`` (PyTorch DDP), and the same code path in one
process.

``torchrun --nproc_per_node=K -m formulac train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` sees them, initialises the
process group (nccl on CUDA, gloo on CPU; ``FORMULAC_DIST_BACKEND`` overrides) once per process,
and picks the rank's device.  Every
rank draws the same global batch; :func:`shard` gives each rank its contiguous slice, so the
global batch equals ``batch_size`` whatever the number of ranks.  Only rank 0 writes files.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import TrainError

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "detect",
    "setup",
    "shard",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``enabled`` is True under torchrun with WORLD_SIZE > 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """Read the torchrun environment variables (no process group is started)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainError("RANK/WORLD_SIZE/LOCAL_RANK must be integers") from None
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=rank, world_size=world, local_rank=local, enabled=True)


_OWNED_GROUP = False


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is there, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TrainError(f"unknown device '{device}'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"device '{device}' asked for, but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return dev


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise the process group when running under torchrun (once per process) and return
    (info, this rank's device)."""
    global _OWNED_GROUP
    info = detect()
    dev = resolve_device(device, info)
    if not info.enabled:
        return info, dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # FORMULAC_DIST_BACKEND=gloo lets several ranks share one GPU (NCCL refuses that)
        backend = os.environ.get("FORMULAC_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = dev
        try:
            dist.init_process_group(backend=backend, **kwargs)
        except TypeError:  # older torch without device_id
            dist.init_process_group(backend=backend)
        _OWNED_GROUP = True
        atexit.register(_cleanup)
    if dist.get_world_size() != info.world_size or dist.get_rank() != info.rank:
        raise TrainError("the process group disagrees with RANK/WORLD_SIZE")
    return DistInfo(info.rank, info.world_size, info.local_rank, True, dist.get_backend()), dev


def _cleanup() -> None:
    if _OWNED_GROUP and dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else ``model`` itself."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        return DDP(model, device_ids=[device], output_device=device)
    return DDP(model)


def shard(n: int, info: DistInfo) -> slice:
    """This rank's contiguous slice of a global batch of ``n`` examples (``torch.tensor_split``
    sizes: the first ``n % world`` ranks take one more)."""
    if not info.enabled:
        return slice(0, n)
    base, extra = divmod(n, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks (in place) and return it."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
