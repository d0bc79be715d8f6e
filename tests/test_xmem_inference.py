"""Tests of XMem's streaming inference (corrvos.inference.core with corrvos.inference.xmem_memory).

A. Parity with the official hkchengrex/XMem inference (inference/inference_core.py, memory_manager.py,
   kv_memory_store.py, driven as eval.py does) on a random-weight network, when its code is in .ref/XMem:
   long-term consolidation and eviction, objects introduced on a later frame, and the working memory alone with a
   non-synchronised deep update and the full softmax.
B. The bookkeeping of ``KeyValueStore`` / ``XMemMemory`` checked by hand on tiny hand-made keys (no network).
C. The memory stays bounded over a long stream.
D. An object introduced mid-video: channel order by id, zero hidden state, and top-k == full softmax when k covers
   the memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from corrvos.inference.config import InferenceConfig, inference_config_for
from corrvos.inference.core import InferenceCore
from corrvos.inference.xmem_memory import KeyValueStore, XMemMemory, long_term_usage_rule
from corrvos.models import build_model
from corrvos.types import QueryFeatures

REF = Path(__file__).resolve().parents[1] / ".ref" / "XMem"
OFFICIAL_PACKAGES = ("model", "util", "inference")
HAS_REF = (REF / "inference" / "inference_core.py").is_file() and (REF / "model" / "network.py").is_file()
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
H, W = 32, 48  # stride 16: h, w = 2, 3 -> HW = 6 positions per frame


# ---------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """Tiny frames: one thread is faster than several on a shared machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def textured_video(t_len: int, h: int = H, w: int = W, *, seed: int = 0, late: int | None = None,
                   ids: tuple[int, int, int] = (1, 2, 3)) -> tuple[Tensor, list[np.ndarray]]:
    """A panning random texture with per-frame noise and drifting rectangles.

    Returns frames [T, 3, H, W] in [0, 1] and label maps (uint8 [H, W]): objects ``ids[0]`` and ``ids[1]`` from the
    start, and ``ids[2]`` (a third rectangle) from frame ``late`` on when given.
    """
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(3, h, w + t_len, generator=g) * 0.6
    frames, labels = [], []
    for t in range(t_len):
        img = bg[:, :, t // 2 : t // 2 + w] + 0.05 * torch.rand(3, h, w, generator=g)
        lab = np.zeros((h, w), np.uint8)
        y, x = h // 2 - t % 4, w // 2 + t % 5
        rects = [(ids[0], 2, 2 + h // 3, t % (w // 2), t % (w // 2) + w // 4, (0.9, 0.15, 0.1)),
                 (ids[1], y, y + h // 3, x, x + w // 4, (0.1, 0.3, 0.9))]
        if late is not None and t >= late:
            x = w // 4 + (t - late) % 6
            rects.append((ids[2], h - h // 4 - 1, h - 1, x, x + w // 5, (0.2, 0.9, 0.2)))
        for obj, y0, y1, x0, x1, colour in rects:
            noise = 0.05 * torch.rand(3, y1 - y0, x1 - x0, generator=g)
            img[:, y0:y1, x0:x1] = torch.tensor(colour).view(3, 1, 1) + noise
            lab[y0:y1, x0:x1] = obj
        frames.append(img.clamp(0, 1))
        labels.append(lab)
    return torch.stack(frames), labels


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights conditioned so that the outputs are neither saturated nor indifferent to the memory.

    A randomly initialised XMem gives probabilities that barely depend on the readout (the image features dominate
    the decoder) and nearly identical keys on small frames; scaling the key projection, the mask inputs of the
    value encoder and the readout/hidden inputs of the decoder makes the memory matter.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
        model.key_proj.key_proj.weight.mul_(3.0)  # similarities of a few units: informative softmax
        model.key_proj.d_proj.weight.mul_(3.0)  # shrinkage 1..2
        model.value_encoder.conv1.weight[:, 3:].mul_(100.0)  # the masks shape the values
        dec = model.decoder
        for conv in (dec.fuser.block1.conv1, dec.fuser.block1.downsample):
            conv.weight[:, :1024].mul_(0.1)  # image features (f16) weaker ...
            conv.weight[:, 1024:].mul_(10.0)  # ... readout and hidden state stronger
        dec.up_16_8.skip_conv.weight.mul_(0.1)
        dec.up_8_4.skip_conv.weight.mul_(0.1)
        dec.pred.weight.mul_(3.0)
    return model.eval()


@pytest.fixture(scope="module")
def xmem() -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomise(build_model("xmem"), seed=1)


def _build_official() -> tuple[torch.nn.Module, Any]:
    """hkchengrex/XMem's network (ImageNet downloads patched out) and its ``inference.inference_core`` module,
    imported from .ref/XMem without leaving its top-level packages (model, util, inference) in ``sys.modules``."""
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
            inference_core = importlib.import_module("inference.inference_core")
            with contextlib.redirect_stdout(io.StringIO()):
                net = network.XMem({"single_object": False}, None)
        return net, inference_core
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k.split(".")[0] in OFFICIAL_PACKAGES]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def official(xmem: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
    """The official network holding our weights (strict load), and the official ``inference_core`` module."""
    net, inference_core = _build_official()
    net.load_state_dict(xmem.state_dict(), strict=True)
    return net.eval(), inference_core


class _MaskMapper:
    """eval.py's ``MaskMapper`` (default, non-exhaustive mode) with ``dataset.util.all_to_onehot``: new labels get
    consecutive ids in order; the one-hot mask covers every label seen so far."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.remappings: dict[int, int] = {}

    def convert_mask(self, mask: np.ndarray) -> tuple[Tensor, list[int]]:
        labels = [int(x) for x in np.unique(mask).astype(np.uint8) if x != 0]
        new = [x for x in labels if x not in self.labels]
        assert len(new) == len(labels), "old labels found in non-exhaustive mode"
        for i, x in enumerate(new):
            self.remappings[x] = i + len(self.labels) + 1
        mapped = list(range(len(self.labels) + 1, len(self.labels) + len(new) + 1))
        self.labels.extend(new)
        onehot = np.stack([(mask == x) for x in self.labels]).astype(np.uint8)  # all_to_onehot
        return torch.from_numpy(onehot).float(), mapped


def _official_config(cfg: dict[str, Any], video_length: int) -> dict[str, Any]:
    config = {**cfg, "hidden_dim": 64}
    config["enable_long_term_count_usage"] = config["enable_long_term"] and (
        video_length / (config["max_mid_term_frames"] - config["min_mid_term_frames"]) * config["num_prototypes"]
    ) >= config["max_long_term_elements"]
    return config


def run_official(net: torch.nn.Module, inference_core: Any, frames: Tensor, masks: dict[int, np.ndarray],
                 cfg: dict[str, Any]) -> tuple[list[Tensor | None], list[int]]:
    """The official InferenceCore driven as eval.py drives it (without AMP and without the resize).

    Returns the per-frame probabilities [N+1, H, W] (None for the frames before the first mask, which eval.py
    skips) with the channels in the official order, and the original labels of channels 1..N.
    """
    t_len = len(frames)
    processor = inference_core.InferenceCore(net, config=_official_config(cfg, t_len))
    mapper = _MaskMapper()
    out: list[Tensor | None] = []
    with torch.no_grad():
        for t in range(t_len):
            if not mapper.labels and t not in masks:
                out.append(None)  # no point to do anything without a mask
                continue
            rgb = (frames[t] - MEAN) / STD  # the dataset's im_normalization
            msk, labels = None, None
            if t in masks:
                msk, labels = mapper.convert_mask(masks[t])
                processor.set_all_labels(list(mapper.remappings.values()))
            out.append(processor.step(rgb, msk, labels, end=(t == t_len - 1)).clone())
    return out, list(mapper.labels)


def our_config(model: torch.nn.Module, cfg: dict[str, Any]) -> InferenceConfig:
    """Our options equal to ``cfg`` (the official config keys), no resize (``internal_size=None``)."""
    # ``inference_config_for`` ignores None overrides, so internal_size / top_k None are set afterwards
    config = inference_config_for(model, **{k: v for k, v in cfg.items() if v is not None})
    return dataclasses.replace(config, internal_size=None, top_k=cfg["top_k"])


def run_ours(model: torch.nn.Module, frames: Tensor, masks: dict[int, np.ndarray], cfg: dict[str, Any],
             trace: list | None = None) -> tuple[list[Tensor], InferenceCore]:
    """Our per-frame probabilities [N+1, H, W] (objects in ascending id order) and the core; ``trace`` collects
    (working size, long-term size, long-term groups) after every frame."""
    t_len = len(frames)
    core = InferenceCore(model, our_config(model, cfg), video_length=t_len)
    out = []
    for t in range(t_len):
        mask = None if t not in masks else torch.from_numpy(masks[t].astype(np.int64))
        out.append(core.step(frames[t], mask, end=(t == t_len - 1)).clone())
        if trace is not None:
            trace.append((core.memory.work.size, core.memory.long.size, core.memory.long.num_groups))
    return out, core


def _compare(ours: list[Tensor], ref: list[Tensor | None], labels: list[int] | None = None) -> tuple[float, float]:
    """Max abs difference and argmax disagreement (fraction of pixels) over the frames the reference processed.

    ``labels``: the reference's channels 1..N in order of appearance (ours are in ascending id order).
    """
    assert len(ours) == len(ref)
    diff, wrong, total = 0.0, 0, 0
    for a, b in zip(ours, ref, strict=True):
        if b is None:
            continue
        if labels is not None:
            known = labels[: b.shape[0] - 1]
            a = a[[0, *(1 + sorted(known).index(label) for label in known)]]
        assert a.shape == b.shape, (a.shape, b.shape)
        assert bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())
        diff = max(diff, float((a - b).abs().max()))
        wrong += int((a.argmax(0) != b.argmax(0)).sum())
        total += a[0].numel()
    return diff, wrong / total


def _assert_informative(probs: list[Tensor]) -> None:
    """The outputs are neither saturated nor constant: parity on them means something."""
    later = torch.stack([p[:3] for p in probs])  # [T', 3, H, W]: background and two objects
    assert float(((later > 0.01) & (later < 0.99)).float().mean()) > 0.9  # not saturated
    assert float(later.std(dim=0).max()) > 0.05  # changes over time
    assert float(later.std(dim=(2, 3)).min()) > 0.01  # varies over the image
    assert len(torch.unique(later.argmax(1))) == 3


# ---------------------------------------------------------------------------------------------------------------
# A. parity with the official XMem inference

TOL, ARGMAX_TOL = 1e-4, 1e-4
PARITY_CASES: dict[str, dict[str, Any]] = {
    # one mask with 2 objects; consolidation every 2 frames, eviction from the 4th consolidation on.
    # LT_max - P = 20 is not a multiple of P: the official eviction asks topk for k = 0 elements (and fails) when
    # the long-term memory holds exactly LT_max - P elements.
    "long_term_evict": {
        "video": {"t_len": 24, "seed": 2},
        "masks": {0: (1, 2)},
        "cfg": {"top_k": 4, "mem_every": 1, "deep_update_every": -1, "enable_long_term": True,
                "max_mid_term_frames": 4, "min_mid_term_frames": 2, "num_prototypes": 8,
                "max_long_term_elements": 28},
    },
    # ids 2 and 5 on frame 0, id 3 on frame 9 (a second group; smaller id than 5, so our channel order differs from
    # the official order of appearance). LT_max is large: the official code cannot evict with several groups.
    "late_object_long_term": {
        "video": {"t_len": 26, "seed": 3, "late": 9, "ids": (2, 5, 3)},
        "masks": {0: (2, 5), 9: (3,)},
        "cfg": {"top_k": 4, "mem_every": 2, "deep_update_every": -1, "enable_long_term": True,
                "max_mid_term_frames": 4, "min_mid_term_frames": 2, "num_prototypes": 8,
                "max_long_term_elements": 1000},
    },
    # working memory only, deep update every 3 frames (not synchronised with mem_every 2), the full softmax; the
    # first mask on frame 2 (eval.py skips the frames before it) and a new object on frame 7.
    "working_only_full_softmax": {
        "video": {"t_len": 18, "seed": 4, "late": 7},
        "masks": {2: (1, 2), 7: (3,)},
        "cfg": {"top_k": None, "mem_every": 2, "deep_update_every": 3, "enable_long_term": False,
                "max_mid_term_frames": 4, "min_mid_term_frames": 2, "num_prototypes": 8,
                "max_long_term_elements": 28},
    },
}


def _case_inputs(name: str) -> tuple[Tensor, dict[int, np.ndarray], dict[str, Any]]:
    case = PARITY_CASES[name]
    frames, labels = textured_video(**case["video"])
    masks = {t: np.where(np.isin(labels[t], ids), labels[t], 0).astype(np.uint8) for t, ids in case["masks"].items()}
    return frames, masks, case["cfg"]


@pytest.mark.skipif(not HAS_REF, reason="official XMem code not in .ref/XMem")
@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_parity_with_official_inference(name: str, xmem: torch.nn.Module, official: tuple) -> None:
    net, inference_core = official
    frames, masks, cfg = _case_inputs(name)
    ref, labels = run_official(net, inference_core, frames, masks, cfg)
    trace: list[tuple[int, int, int]] = []
    ours, core = run_ours(xmem, frames, masks, cfg, trace)
    assert sorted(labels) == core.object_ids
    diff, disagreement = _compare(ours, ref, labels)
    print(f"\n{name}: max abs diff {diff:.2e}, argmax disagreement {disagreement:.2e}; (work, long, groups) {trace}")
    _assert_informative([p for t, (p, r) in enumerate(zip(ours, ref, strict=True)) if r is not None and t not in masks])
    assert diff <= TOL and disagreement <= ARGMAX_TOL

    hw = (H // 16) * (W // 16)
    t_max, p, lt_max = cfg["max_mid_term_frames"], cfg["num_prototypes"], cfg["max_long_term_elements"]
    work, long, groups = (list(x) for x in zip(*trace, strict=True))
    assert max(work) < t_max * hw  # consolidation keeps the working memory under T_max frames
    if name == "long_term_evict":
        assert sum(b == a + p for a, b in zip(long, long[1:])) >= 3  # several consolidations
        assert any(b < a + p and b > a - p for a, b in zip(long, long[1:]) if b != a)  # an eviction before one
        assert max(long) <= lt_max
    elif name == "late_object_long_term":
        assert groups[-1] == 2 and core.memory.work.num_groups == 2  # the late group reached long-term memory too
        assert max(long) == long[-1] < lt_max - p  # no eviction (the official code cannot evict with two groups)
    else:
        assert max(long) == 0 and work[-1] == 8 * hw  # memory frames 2, 4, 6, 7 (mask), 9, 11, 13, 15
