"""Optional multi-process training: environment detection at call time, single-process fallback, rank helpers.

``init_distributed()`` reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) when it is called, never at import. Without them (or with ``WORLD_SIZE=1``) it
returns a single-process :class:`DistInfo` and creates no process group. The backend is NCCL on CUDA and gloo on
CPU. Only rank 0 writes files and logs; :func:`all_reduce_mean` averages scalars for logging.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from corrvos.devices import resolve_device

__all__ = ["DistInfo", "all_reduce_flag", "all_reduce_mean", "barrier", "init_distributed", "shutdown_distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - immutable
    backend: str | None = None
    """"nccl" / "gloo" when a process group was created by :func:`init_distributed`, else None."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the torchrun job described by the environment, or run as a single process.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:K". With "cuda" each process uses GPU ``LOCAL_RANK``.
        timeout_s: process-group timeout.

    Returns:
        The process's :class:`DistInfo`. A process group already initialised by the caller is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), dev, dist.get_backend())
    if world_size <= 1:
        return DistInfo(0, 0, 1, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    logger.info("process %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistInfo(rank, local_rank, world_size, dev, backend)


def shutdown_distributed(info: DistInfo) -> None:
    """Destroy the process group created by :func:`init_distributed` (no-op for single processes)."""
    if info.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of Python floats over all processes (identity for a single process)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(info))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def all_reduce_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``params`` over processes in one all-reduce (missing gradients count as zeros);
    for modules DDP does not wrap."""
    if not info.distributed:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])  # [P]
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p))
        offset += n


def all_reduce_flag(flag: bool, info: DistInfo) -> bool:
    """True only when ``flag`` is True on every process (used to skip a step everywhere at once)."""
    return _reduce_flag(flag, info, dist.ReduceOp.MIN)


def any_process(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is True on at least one process (used to stop every process at the same step)."""
    return _reduce_flag(flag, info, dist.ReduceOp.MAX)


def _reduce_flag(flag: bool, info: DistInfo, op) -> bool:
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device(info))
    dist.all_reduce(t, op=op)
    return bool(t.item())


def _comm_device(info: DistInfo) -> torch.device:
    return info.device if info.backend == "nccl" else torch.device("cpu")
