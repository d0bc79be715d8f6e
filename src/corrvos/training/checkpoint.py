"""Training checkpoints: atomic save, safe (``weights_only=True``) load, RNG states as plain tensors and lists.

A checkpoint is a dict (``format_version`` 1)::

    {"format_version": 1, "arch": "stcn" | "stcn_corr" | "xmem", "model_args": constructor kwargs,
     "single_object": bool, "model": network state_dict, "extra": {"proj_head": state_dict, ...},
     "config": TrainConfig as a plain dict, "stage": stage name, "stage_index": int,
     "step": steps done in the stage, "global_step": steps done in the run,
     "optimizer": state_dict, "scheduler": plain dict, "scaler": state_dict | None,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "numpy": {...}, "python": [...]}}

``corrvos.models.load_model`` reads the ``model`` entry (with ``arch``) directly, so a training checkpoint is also
a model file. Everything in it is a tensor, number, string, bool, None, list or dict, so it loads under
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corrvos.checkpoint_io import read_checkpoint
from corrvos.errors import CheckpointError
from corrvos.utils import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "capture_rng_state",
    "find_latest_checkpoint",
    "load_checkpoint",
    "load_scheduler_state",
    "restore_rng_state",
    "save_checkpoint",
    "scheduler_state",
]

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d+)\.pth$")


def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, NumPy and Python RNG states as tensors, lists and numbers."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - the global legacy RNG is what we save
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [int(py_version), list(py_internal), py_gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        ("MT19937", npst["key"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """A scheduler state_dict with ``collections.Counter`` (MultiStepLR milestones) turned into a plain dict."""
    state = dict(scheduler.state_dict())
    for key, value in state.items():
        if isinstance(value, Counter):
            state[key] = {int(k): int(v) for k, v in value.items()}
    return state


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    state = dict(state)
    if isinstance(state.get("milestones"), dict):
        state["milestones"] = Counter(state["milestones"])
    scheduler.load_state_dict(state)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``format_version``) to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a corrvos training checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: missing or unreadable file, not a corrvos training checkpoint, or a newer format.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a corrvos training checkpoint (no 'format_version'/'model' entries)")
    if int(ckpt["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format_version']} is newer than {FORMAT_VERSION}")
    for key in ("config", "stage", "step", "global_step", "optimizer"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: a resumable checkpoint needs '{key}' (is this a weights-only file?)")
    return ckpt


def find_latest_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file; for a run folder, its checkpoint with the highest global step."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    candidates = []
    if folder.is_dir():
        for f in folder.iterdir():
            m = _STEP_FILE.match(f.name)
            if m:
                candidates.append((int(m.group(1)), f))
    if not candidates:
        raise CheckpointError(f"{path}: no step_*.pth checkpoint to resume from")
    return max(candidates)[1]
