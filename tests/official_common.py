"""Test helper shared by ``official_stcn.py`` and ``official_xmem.py``: import official code from a git-ignored
``.ref/`` checkout without leaking its generic top-level packages, and drive an official trainer's ``do_pass`` on
the CPU."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch


@contextlib.contextmanager
def official_import_scope(ref: Path, packages: tuple[str, ...]) -> Iterator[None]:
    """``ref`` first on ``sys.path`` and the official ``packages`` (e.g. "model", "util") fresh in ``sys.modules``;
    both restored on exit, so the official modules stay reachable only through the objects imported inside."""
    saved_path = list(sys.path)
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in packages}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(ref))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k.split(".")[0] in packages]:
            del sys.modules[k]
        sys.modules.update(saved)


def run_do_pass(trainer: Any, data: dict[str, Any], it: int, patches: tuple[tuple[Any, str, Any], ...] = ()) -> None:
    """Call the official ``trainer.do_pass(data, it)`` on the CPU: ``Tensor.cuda`` is the identity, each
    ``(object, attribute, value)`` of ``patches`` is set for the call, the deprecation warning of
    ``torch.cuda.amp.autocast(enabled=False)`` is silenced, and the global grad mode that ``do_pass`` sets is
    restored."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
        for obj, name, value in patches:
            mp.setattr(obj, name, value)
        grad_mode = torch.is_grad_enabled()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                trainer.do_pass(data, it)
        finally:
            torch.set_grad_enabled(grad_mode)
