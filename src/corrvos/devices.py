"""Device selection shared by training, inference and the CLI: :func:`resolve_device`.

A device is named as on the command line or in a config: "auto" (CUDA when available, else the CPU), "cpu",
"cuda" or "cuda:K". Asking for CUDA on a machine without it is a :class:`corrvos.errors.ConfigError` rather
than a failure at the first tensor transfer.
"""

from __future__ import annotations

import torch

from corrvos.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto", *, local_rank: int | None = None, option: str = "device") -> torch.device:
    """The ``torch.device`` that ``name`` asks for.

    Args:
        name: "auto", "cpu", "cuda", "cuda:K" (or any other string ``torch.device`` accepts).
        local_rank: the process's local rank under torchrun; a CUDA device without an index then becomes
            ``cuda:(local_rank % device_count)``, one GPU per process. ``None`` leaves it unindexed.
        option: the option or config field that holds ``name``, for error messages (e.g. "--device").

    Raises:
        ConfigError: ``name`` is not a device, or names a CUDA device and CUDA is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"{option} {name!r}: not a device (use auto, cpu, cuda or cuda:K)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {name!r}: CUDA is not available on this machine (use {option} cpu)")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device
