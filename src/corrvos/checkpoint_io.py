"""Safe reading of weight files: the one ``torch.load(..., weights_only=True)`` of the package.

Every file corrvos reads with torch (model weights, official STCN files, training checkpoints, ImageNet backbones)
goes through :func:`read_checkpoint`, so that a pickle carrying code is always refused and every failure is a
:class:`corrvos.errors.CheckpointError` that names the file. What the loaded object must contain is checked by
the callers (``corrvos.models.convert``, ``corrvos.training.checkpoint``, ``corrvos.models.backbones``).
"""

from __future__ import annotations

import re
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
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip / truncated), EOFError, ...
        raise CheckpointError(f"{path}: {_explain_load_failure(exc, what, path)}") from exc


def _explain_load_failure(exc: Exception, what: str, path: Path) -> str:
    """One line saying why ``torch.load(weights_only=True)`` failed, without torch's advice to disable it.

    A file that is neither a zip archive (``torch.save``) nor a binary pickle (the legacy format) is not a PyTorch
    file at all (a text file, an HTML error page): said first, as torch's own error then names pickle internals.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        size = path.stat().st_size
    except OSError:
        head, size = b"", 0
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        return f"cannot read the {what}: not a PyTorch weight file (it starts with {head!r})"
    text = str(exc)
    if "deserialize object on a CUDA device" in text or "torch.cuda.is_available() is False" in text:
        return (
            f"{what} was saved on a CUDA device and this machine has no CUDA: "
            "load it with map_location='cpu' (the corrvos CLI does this with --device cpu)"
        )
    if "Weights only load failed" in text or "Unsupported global" in text:
        # torch's message recommends weights_only=False; corrvos never loads a file that way
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        detail = f" (it pickles {match.group(1)})" if match else ""
        return (
            f"refused: not a weights-only {what}: it holds pickled Python objects or code{detail}, "
            "which corrvos never loads; re-save only its tensors (a state_dict) where it was made"
        )
    return (
        f"cannot read the {what}: the file is truncated or corrupt ({size / 1e6:.1f} MB; an interrupted "
        "download or copy?): download or copy it again"
    )
