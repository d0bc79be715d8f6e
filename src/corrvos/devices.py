"""Device selection shared by training, inference and the CLI: :func:`resolve_device`, :func:`device_option`.

A device is named as on the command line or in a config: "auto" (CUDA when available, else the CPU), "cpu",
"cuda" or "cuda:K". Every ``--device`` option and the ``device`` config field read it with :func:`check_device_name`
(the CLI's ``--device`` through :func:`device_option`, so that a bad name is a usage error before anything runs).
Asking for CUDA on a machine without it is a :class:`corrvos.errors.ConfigError` rather than a failure at the
first tensor transfer.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from corrvos.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["check_device_name", "device_option", "resolve_device"]

_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str, option: str = "device") -> str:
    """``name`` when it is "auto", "cpu", "cuda" or "cuda:K" (K a non-negative integer).

    Raises:
        ConfigError: naming ``option`` and the accepted names.
    """
    if not isinstance(name, str) or _DEVICE_NAME.fullmatch(name) is None:
        raise ConfigError(f"{option} {name!r}: not a device (use auto, cpu, cuda or cuda:K)")
    return name


def device_option(text: str) -> str:
    """``type=`` of the CLI's ``--device`` options: :func:`check_device_name` as an argparse usage error."""
    try:
        return check_device_name(text.strip().lower())
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not a device (use auto, cpu, cuda or cuda:K)") from exc


def resolve_device(name: str = "auto", *, local_rank: int | None = None, option: str = "device") -> torch.device:
    """The ``torch.device`` that ``name`` asks for.

    Args:
        name: "auto", "cpu", "cuda" or "cuda:K".
        local_rank: the process's local rank under torchrun; a CUDA device without an index then becomes
            ``cuda:(local_rank % device_count)``, one GPU per process. ``None`` leaves it unindexed.
        option: the option or config field that holds ``name``, for error messages (e.g. "--device").

    Raises:
        ConfigError: ``name`` is not a device, or names a CUDA device and CUDA is not available (or not that index).
    """
    import torch

    check_device_name(name, option)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {name!r}: CUDA is not available on this machine (use {option} cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{option} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device
