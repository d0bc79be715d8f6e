"""Test helper: hkchengrex/XMem's own network and modules, imported from the git-ignored ``.ref/XMem`` checkout.

The checkout (``git archive`` of the official repository's ``model/``, ``inference/``, ``util/`` and ``eval.py``) is
never committed; tests that need it skip when it is absent. The official top-level packages
(``model``, ``util``, ``inference``) would shadow nothing of corrvos but are generic names, so they are removed from
``sys.modules`` again after the import; the official ResNet constructors' ImageNet download is patched out.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

REF = Path(__file__).resolve().parents[1] / ".ref" / "XMem"
OFFICIAL_PACKAGES = ("model", "util", "inference")


def build_official_xmem(*modules: str) -> tuple[torch.nn.Module, list[Any]]:
    """The official ``XMem`` network (multi-object, random init) and the official modules named in ``modules``
    (e.g. "model.memory_util", "inference.inference_core"), imported from ``.ref/XMem``."""
    saved_path = list(sys.path)
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in OFFICIAL_PACKAGES}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(REF))
    try:
        with pytest.MonkeyPatch.context() as mp:
            resnet = importlib.import_module("model.resnet")
            mp.setattr(resnet, "load_weights_add_extra_dim", lambda *args, **kwargs: None)
            mp.setattr(resnet.model_zoo, "load_url", lambda *args, **kwargs: {})
            network = importlib.import_module("model.network")
            loaded = [importlib.import_module(name) for name in modules]
            with contextlib.redirect_stdout(io.StringIO()):
                net = network.XMem({"single_object": False}, None)
        return net, loaded
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k.split(".")[0] in OFFICIAL_PACKAGES]:
            del sys.modules[k]
        sys.modules.update(saved)
