"""Test helper: hkchengrex/STCN's own network and training step, imported from the git-ignored ``.ref/STCN`` checkout.

The checkout (``git archive`` of the official repository's ``model/`` and ``util/``) is never committed; tests that
need it skip when it is absent (:data:`HAS_REF`). As in ``official_xmem.py``, the official top-level packages
(``model``, ``util``) are removed from ``sys.modules`` again after the import, and the ImageNet download of
``mod_resnet`` is patched out. Two imports of the official code cannot be satisfied here and are stubbed for the
import only:

- ``torchvision`` (``model/modules.py``: ``models.resnet50(pretrained=True)`` for the key encoder) by
  :func:`_torchvision_resnet50`, our own re-statement of torchvision's ResNet-50 layout (bias-free convs, the
  stride of a downsampling Bottleneck on its 3x3 conv, ResNet v1.5) up to ``layer3``, the part ``KeyEncoder`` keeps;
- ``util.image_saver`` (``model/model.py``; needs the official ``dataset`` package and OpenCV) by a module whose
  ``pool_pairs`` raises: it is only called when images are logged, which :func:`official_stcn_step` disables.

:func:`official_stcn_step` runs the official ``STCNModel.do_pass`` on CPU: the trainer object is made with
``object.__new__`` (its ``__init__`` builds DDP and CUDA tensors), ``torch.Tensor.cuda`` is the identity during the
pass, the optimiser only clears gradients (``step`` does nothing, so the gradients of the backward pass stay on the
parameters) and the scheduler does nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor, nn

from corrvos.types import ClipBatch
from official_common import official_import_scope, run_do_pass

REF = Path(__file__).resolve().parents[1] / ".ref" / "STCN"
OFFICIAL_PACKAGES = ("model", "util", "torchvision")
HAS_REF = all((REF / "model" / name).is_file() for name in ("model.py", "losses.py", "network.py", "modules.py"))
NEVER = 10**12  # report / image / checkpoint interval that no test iteration reaches


# ---------------------------------------------------------------------------------------------------------------
# import stubs


class _Bottleneck(nn.Module):
    """torchvision's ResNet-50 block: 1x1 -> 3x3 (strided) -> 1x1 (x4), BN after each, no conv biases."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _torchvision_resnet50(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Stand-in for ``torchvision.models.resnet50``: the stem and layer1..layer3 (``layer4`` / ``fc`` are never used
    by the official ``KeyEncoder``). The weights are random; the tests load theirs afterwards."""
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(64)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    inplanes = 64
    for name, planes, blocks, stride in (("layer1", 64, 3, 1), ("layer2", 128, 4, 2), ("layer3", 256, 6, 2)):
        layer = [_Bottleneck(inplanes, planes, stride)]
        layer += [_Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
        setattr(net, name, nn.Sequential(*layer))
        inplanes = planes * 4
    return net


def _stub_modules() -> dict[str, types.ModuleType]:
    torchvision = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.resnet50 = _torchvision_resnet50
    torchvision.models = models

    image_saver = types.ModuleType("util.image_saver")

    def pool_pairs(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("image logging of the official trainer is not supported in tests")

    image_saver.pool_pairs = pool_pairs
    return {"torchvision": torchvision, "torchvision.models": models, "util.image_saver": image_saver}


@contextlib.contextmanager
def _official_import_scope() -> Any:
    """sys.path / sys.modules set up for importing ``.ref/STCN`` and restored afterwards."""
    with official_import_scope(REF, OFFICIAL_PACKAGES):
        importlib.import_module("util")  # the real package, before its stubbed submodule is registered
        sys.modules.update(_stub_modules())
        with pytest.MonkeyPatch.context() as mp:
            mod_resnet = importlib.import_module("model.mod_resnet")
            mp.setattr(mod_resnet.model_zoo, "load_url", lambda *args, **kwargs: {})
            yield


@dataclass
class OfficialSTCN:
    """The official network and the modules of its trainer (``model.model``, ``model.losses``, ...)."""

    network: nn.Module
    model: types.ModuleType
    losses: types.ModuleType
    log_integrator: types.ModuleType


def build_official_stcn(single_object: bool = False) -> OfficialSTCN:
    """The official ``model.network.STCN(single_object)`` (random init) and the trainer modules."""
    with _official_import_scope():
        network = importlib.import_module("model.network")
        model = importlib.import_module("model.model")
        losses = importlib.import_module("model.losses")
        log_integrator = importlib.import_module("util.log_integrator")
        net = network.STCN(single_object)
    return OfficialSTCN(net, model, losses, log_integrator)


# ---------------------------------------------------------------------------------------------------------------
# batches and the training step


def official_stcn_batch(batch: ClipBatch, *, single_object: bool) -> dict[str, Any]:
    """A corrvos ClipBatch in the official dataset's format (``vos_dataset.py`` / ``static_dataset.py``).

    Multi-object batches need N = 2 slots: slot 1 is the official target object (``gt``), slot 2 the second object
    (``sec_gt``), ``cls_gt`` the class map (0 / 1 / 2) and ``selector`` [B, 2]. Single-object batches (N = 1) have
    ``gt`` and ``cls_gt`` only, as the static-image dataset of stage 0.
    """
    n = batch.num_objects
    if n != (1 if single_object else 2):
        raise ValueError(f"official STCN training takes {1 if single_object else 2} object slots, the batch has {n}")
    data: dict[str, Any] = {
        "rgb": batch.frames.clone(),  # [B, T, 3, H, W]
        "gt": batch.masks[:, :, 0:1].clone(),  # [B, T, 1, H, W]
        "cls_gt": batch.labels.clone(),  # [B, T, H, W] int64
        "info": {"name": list(batch.names)},
    }
    if not single_object:
        data["sec_gt"] = batch.masks[:, :, 1:2].clone()  # [B, T, 1, H, W]
        data["selector"] = batch.selector.clone()  # [B, 2]
    return data


class _GradKeepingOptimizer:
    """Replaces Adam: ``zero_grad`` clears the gradients as the official call does, ``step`` changes nothing."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        pass


class _NoScheduler:
    def step(self) -> None:
        pass

    def get_last_lr(self) -> list[float]:
        return [0.0]


class _CapturingLossComputer:
    """Wraps the official ``LossComputer``: keeps its inputs (data and network outputs) and the loss dict."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.inputs: dict[str, Any] = {}
        self.losses: dict[str, Any] = {}

    def compute(self, data: dict[str, Any], it: int) -> dict[str, Any]:
        self.inputs = data
        self.losses = self.inner.compute(data, it)
        return self.losses


@dataclass
class OfficialStep:
    """What one official ``do_pass`` produced: the loss dict and the ``{**data, **out}`` the losses saw."""

    losses: dict[str, Any]
    inputs: dict[str, Any]


def official_stcn_step(official: OfficialSTCN, data: dict[str, Any], *, it: int) -> OfficialStep:
    """Run the official ``STCNModel.do_pass(data, it)`` in fp32 on CPU; the gradients stay on
    ``official.network``'s parameters (read them from ``.grad``).

    The trainer is set up as ``STCNModel.__init__`` + ``train()`` would (BN in eval mode, ``amp`` off), without DDP
    (the network is called directly, as DDP's forward would), logging or checkpointing.
    """
    net = official.network
    para = {"single_object": net.single_object, "amp": False, "debug": False}
    trainer = object.__new__(official.model.STCNModel)
    trainer.para = para
    trainer.single_object = net.single_object
    trainer.local_rank = 0
    trainer.STCN = net
    trainer.logger = None
    trainer.save_path = None
    trainer.train_integrator = official.log_integrator.Integrator(None, distributed=False)
    capture = _CapturingLossComputer(official.losses.LossComputer(para))
    trainer.loss_computer = capture
    trainer.optimizer = _GradKeepingOptimizer([p for p in net.parameters() if p.requires_grad])
    trainer.scheduler = _NoScheduler()
    trainer.report_interval = trainer.save_im_interval = trainer.save_model_interval = NEVER
    trainer.train()  # the official train(): _is_train, _do_log, and the whole network in eval mode
    run_do_pass(trainer, data, it)
    return OfficialStep(capture.losses, capture.inputs)
