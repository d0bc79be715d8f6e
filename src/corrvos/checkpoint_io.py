"""Safe reading of weight files: the one ``torch.load(..., weights_only=True)`` of the package.

Every file corrvos reads with torch (model weights, official STCN files, training checkpoints, ImageNet backbones)
goes through :func:`read_checkpoint`, so that a pickle carrying code is always refused and every failure is a
:class:`corrvos.errors.CheckpointError` that names the file. What the loaded object must contain is checked by
the callers (``corrvos.models.convert``, ``corrvos.training.checkpoint``, ``corrvos.models.backbones``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from corrvos.errors import CheckpointError

__all__ = ["read_checkpoint"]


def read_checkpoint(path: str | Path, *, map_location: Any = "cpu", what: str = "checkpoint file") -> Any:
    """``torch.load(path, map_location=map_location, weights_only=True)``.

    Args:
        path: the file.
        map_location: passed to ``torch.load`` (a device, a string such as "cpu", or a mapping).
        what: what the file is, for error messages (e.g. "ImageNet resnet50 weight file").

    Returns:
        the loaded object (tensors, numbers, strings, lists, dicts, ...).

    Raises:
        CheckpointError: the file is missing, corrupt, or holds pickled code or objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip / truncated), EOFError, ...
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"{path}: refused: not a weights-only {what} (it holds pickled code or objects, or is corrupt); "
            f"{type(exc).__name__}: {first_line}"
        ) from exc
