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

from official_common import official_import_scope, run_do_pass

REF = Path(__file__).resolve().parents[1] / ".ref" / "XMem"
OFFICIAL_PACKAGES = ("model", "util", "inference")


def build_official_xmem(*modules: str) -> tuple[torch.nn.Module, list[Any]]:
    """The official ``XMem`` network (multi-object, random init) and the official modules named in ``modules``
    (e.g. "model.memory_util", "inference.inference_core"), imported from ``.ref/XMem``."""
    with official_import_scope(REF, OFFICIAL_PACKAGES), pytest.MonkeyPatch.context() as mp:
        resnet = importlib.import_module("model.resnet")
        mp.setattr(resnet, "load_weights_add_extra_dim", lambda *args, **kwargs: None)
        mp.setattr(resnet.model_zoo, "load_url", lambda *args, **kwargs: {})
        network = importlib.import_module("model.network")
        loaded = [importlib.import_module(name) for name in modules]
        with contextlib.redirect_stdout(io.StringIO()):
            net = network.XMem({"single_object": False}, None)
    return net, loaded


def import_official_trainer() -> Any:
    """hkchengrex/XMem's ``model.trainer`` module from ``.ref/XMem`` (its image logger, which needs torchvision, is
    replaced by a stub: logging is off in the step we drive)."""
    import types

    with official_import_scope(REF, OFFICIAL_PACKAGES):
        stub = types.ModuleType("util.image_saver")
        stub.pool_pairs = None
        sys.modules["util.image_saver"] = stub
        return importlib.import_module("model.trainer")


class _NoStep:
    """Optimizer / scheduler stand-in: ``zero_grad`` clears the gradients, ``step`` does nothing (so the gradients
    of the official backward pass stay on the parameters for comparison)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.net.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        pass


def official_training_step(
    trainer_mod: Any,
    net: torch.nn.Module,
    batch: Any,
    *,
    it: int,
    num_ref_frames: int,
    memory_frames: dict[int, torch.Tensor],
    deep_updates: dict[int, bool],
    deep_update_prob: float = 0.2,
) -> dict[str, torch.Tensor]:
    """Run ``XMemTrainer.do_pass`` of the official trainer on a corrvos ``ClipBatch``, on the CPU, replaying the
    given random draws; returns the official loss dict. The gradients are left on ``net``'s parameters.

    The trainer is built without its constructor (which needs CUDA and DDP): the attributes ``do_pass`` reads are
    set here, ``Tensor.cuda`` is the identity, ``torch.randperm`` returns the recorded reference frames (the
    drawn ones first, as ``perm[:k-1] + 1``) and ``np.random.rand`` the recorded deep-update decisions.
    """
    t = batch.frames.shape[1]
    n = batch.masks.shape[2]
    config = {
        "num_frames": t,
        "num_ref_frames": num_ref_frames,
        "deep_update_prob": deep_update_prob,
        "hidden_dim": net.hidden_dim if hasattr(net, "hidden_dim") else 64,
        "amp": False,
        "start_warm": 20000,
        "end_warm": 70000,
    }
    trainer = object.__new__(trainer_mod.XMemTrainer)
    trainer.config = config
    trainer.num_frames, trainer.num_ref_frames, trainer.deep_update_prob = t, num_ref_frames, deep_update_prob
    trainer.local_rank, trainer.logger, trainer.XMem = 0, None, net
    captured: dict[str, torch.Tensor] = {}
    inner = trainer_mod.LossComputer(config)

    class _Capture:
        def compute(self, data: dict, num_objects: list[int], it: int) -> dict:
            losses = inner.compute(data, num_objects, it)
            captured.update(losses)
            return losses

    trainer.loss_computer = _Capture()
    trainer._is_train, trainer._do_log = True, False
    big = 10**12
    trainer.log_text_interval = trainer.log_image_interval = big
    trainer.save_network_interval = trainer.save_checkpoint_interval = big
    trainer.optimizer = trainer.scheduler = _NoStep(net)

    perms = []
    for ti in sorted(memory_frames):
        for row in memory_frames[ti]:
            drawn = [int(i) - 1 for i in row[1:]]
            perms.append((ti - 1, drawn))
    decisions = [deep_updates[ti] for ti in sorted(deep_updates)]

    def fake_randperm(size: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        expected, drawn = perms.pop(0)
        assert size == expected, f"official randperm({size}) where corrvos drew from {expected} frames"
        rest = [i for i in range(size) if i not in drawn]
        return torch.tensor(drawn + rest, dtype=torch.long)

    def fake_rand(*args: Any) -> float:
        return 0.0 if decisions.pop(0) else 1.0  # `rand() < p` decides the deep update

    data = {
        "rgb": batch.frames.clone(),
        "first_frame_gt": batch.masks[:, :1].clone(),  # [B, 1, N, H, W]
        "cls_gt": batch.labels[:, :, None].clone(),  # [B, T, 1, H, W]
        "selector": batch.selector.clone(),  # [B, N]
        "info": {"num_objects": batch.selector.sum(dim=1).long()},
    }
    assert data["first_frame_gt"].shape[2] == n
    run_do_pass(
        trainer, data, it, ((trainer_mod.torch, "randperm", fake_randperm), (trainer_mod.np.random, "rand", fake_rand))
    )
    assert not perms and not decisions, "the official trainer made fewer random draws than corrvos"
    return captured
