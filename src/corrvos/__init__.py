"""corrvos: matching-based video object segmentation with space-time correspondence learning.

Public API (imported lazily so that ``import corrvos`` stays cheap):

- :func:`corrvos.load_model` / :func:`corrvos.build_model` (``corrvos.models``)
- :class:`corrvos.InferenceCore` (``corrvos.inference``)
- :func:`corrvos.evaluate_davis` (``corrvos.evaluation``)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "corrvos.models",
    "build_model": "corrvos.models",
    "InferenceCore": "corrvos.inference",
    "evaluate_davis": "corrvos.evaluation",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'corrvos' has no attribute {name!r}")
