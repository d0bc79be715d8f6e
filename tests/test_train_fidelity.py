"""Training-step fidelity: one corrvos training step equals the official trainer's step on the same weights and batch.

The official code is imported from the git-ignored ``.ref/<repo>`` checkouts by the ``official_*.py`` helpers; each
test skips when its checkout is absent. A test builds a corrvos network (random init), loads the same state_dict
into the official network, runs one step on each side on CPU (BatchNorm frozen, as both trainers do) and compares
the network outputs, every loss term of the official loss dict (relative difference <= 1e-5; STCN: ``loss_1``,
``loss_2``, ``p``, ``total_loss``; its ``hide_iou`` counters are logging only) and every parameter's gradient:
``allclose(ours, official, rtol, atol * S)`` with S the largest official gradient entry of the step (some gradients
are analytically zero, e.g. the bias of STCN's ``key_proj``, which the softmax of the L2 affinity cancels, and hold
rounding noise only).

fp32 tolerances are set by rounding, not by the implementations: the two sides batch some convolutions differently
(corrvos runs the decoder and value encoder on all B*N objects at once, the official code once per object), and the
gradients of a randomly initialised ResNet are sums with heavy cancellation. Measured on the STCN step below: fp32
gradients of either side differ from the fp64 ones by up to ~4e-4 S, ours from the official fp32 ones by <= ~1e-6 S;
the fp64 test shows the two agree to ~4e-8 S (our losses are computed in fp32 even for an fp64 network).

STCN (hkchengrex/STCN, ``model/model.py`` ``STCNModel.do_pass`` with ``model/losses.py``): a 3-frame clip with two
objects next to one with a single object (selector [1, 0]), at iteration 0 (plain cross-entropy) and 30K (inside
the bootstrap warm-up 20K -> 70K, so the top-p path), multi-object and single-object (stage-0) networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from corrvos.losses.config import LossConfig
from corrvos.losses.segmentation import segmentation_loss
from corrvos.models import build_model
from corrvos.training.task import CorrespondenceTask
from corrvos.training.unroll import build_unroller
from corrvos.types import ClipBatch
from official_stcn import HAS_REF as HAS_STCN
from official_stcn import build_official_stcn, official_stcn_batch, official_stcn_step

LOSS_RTOL = 1e-5
#: dtype -> (rtol, atol relative to the largest official gradient entry of the step); see the module docstring
GRAD_TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-6, 1e-6)}


# ---------------------------------------------------------------------------------------------------------------
# shared helpers


def textured_clips(
    objects: list[list[tuple[int, int, int, int, int, int]]], *, t: int, h: int, w: int, n: int, seed: int = 0
) -> ClipBatch:
    """A ClipBatch of smooth random textures with moving rectangles as objects.

    Args:
        objects: per clip, its objects as (y0, x0, height, width, dy, dx): a rectangle at (y0, x0) on frame 0 that
            moves by (dy, dx) per frame; object k of a clip gets label k + 1 (later objects paint over earlier).
        t, h, w: frames per clip and their size.
        n: object slots (selector [B, N]: 1 for the clip's objects, 0 for the padding slots).
        seed: texture seed.

    Returns:
        ClipBatch: frames [B, T, 3, H, W] (roughly ImageNet-normalised), labels [B, T, H, W], masks [B, T, N, H, W].
    """
    g = torch.Generator().manual_seed(seed)
    b = len(objects)
    coarse = torch.randn(b * t, 3, h // 8, w // 8, generator=g)
    frames = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    frames = (frames + 0.3 * torch.randn(b * t, 3, h, w, generator=g)).view(b, t, 3, h, w)
    labels = torch.zeros(b, t, h, w, dtype=torch.long)
    for bi, clip in enumerate(objects):
        for k, (y0, x0, hh, ww, dy, dx) in enumerate(clip):
            for ti in range(t):
                y, x = y0 + dy * ti, x0 + dx * ti
                labels[bi, ti, y : y + hh, x : x + ww] = k + 1
                frames[bi, ti, :, y : y + hh, x : x + ww] += 0.8 * (k + 1)  # objects look different from background
    masks = torch.stack([(labels == k + 1).float() for k in range(n)], dim=2)  # [B, T, N, H, W]
    selector = (torch.arange(n)[None] < torch.tensor([len(c) for c in objects])[:, None]).float()  # [B, N]
    return ClipBatch(frames=frames, masks=masks, labels=labels, selector=selector, names=[f"c{i}" for i in range(b)])


def freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm layers in eval mode (frozen statistics), as both official trainers and corrvos' trainer train."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def rel_diff(ours: Tensor | float, ref: Tensor | float) -> float:
    """|ours - ref| / |ref| of two scalars (0 when both are 0)."""
    a, r = float(ours), float(ref)
    return abs(a - r) / abs(r) if r != 0 else abs(a)


def to_dtype(batch: ClipBatch, dtype: torch.dtype) -> ClipBatch:
    """The batch with its floating-point tensors (frames, masks, selector) cast to ``dtype``."""
    return dataclasses.replace(
        batch, frames=batch.frames.to(dtype), masks=batch.masks.to(dtype), selector=batch.selector.to(dtype)
    )


def compare_grads(
    ours: nn.Module, official: nn.Module, *, rtol: float, atol: float
) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """Compare the ``.grad`` of equally named parameters: ``allclose(g, g_ref, rtol, atol * S)``, S the largest
    official gradient entry.

    Returns:
        (failures, max |g - g_ref| / S per parameter, max |g - g_ref| / max |g_ref| per parameter whose gradient
        is above the atol floor).
    """
    mine, ref = dict(ours.named_parameters()), dict(official.named_parameters())
    assert mine.keys() == ref.keys(), sorted(set(mine) ^ set(ref))
    scale = max(float(p.grad.abs().max()) for p in ref.values() if p.grad is not None)
    assert scale > 0
    failures, err_over_scale, rel = [], {}, {}
    for name, p in ref.items():
        g, g_ref = mine[name].grad, p.grad
        if g is None or g_ref is None:
            if (g is None) != (g_ref is None):
                failures.append(f"{name}: gradient only on the {'official' if g is None else 'corrvos'} side")
            continue
        err, ref_max = float((g - g_ref).abs().max()), float(g_ref.abs().max())
        err_over_scale[name] = err / scale
        if ref_max > atol * scale:
            rel[name] = err / ref_max
        if not torch.allclose(g, g_ref, rtol=rtol, atol=atol * scale):
            failures.append(f"{name}: max |diff| {err:.3g} ({err / scale:.3g} S), max |grad| {ref_max:.3g}")
    return failures, err_over_scale, rel


# ---------------------------------------------------------------------------------------------------------------
# STCN

STCN_CLIPS = [
    [(8, 6, 20, 18, 2, 1), (36, 30, 20, 24, 1, 3)],  # two objects
    [(20, 16, 24, 22, -2, 4)],  # one object: selector [1, 0]
]


@pytest.fixture(scope="module")
def stcn_pair() -> Iterator[Callable[..., tuple[nn.Module, Any, ClipBatch]]]:
    """(single_object, size, dtype) -> (corrvos STCN, official network, batch) with the same weights; built once."""
    cache: dict[tuple[bool, int, torch.dtype], tuple[nn.Module, Any, ClipBatch]] = {}

    def get(single_object: bool, size: int, dtype: torch.dtype) -> tuple[nn.Module, Any, ClipBatch]:
        key = (single_object, size, dtype)
        if key not in cache:
            n = 1 if single_object else 2
            s = size / 64  # STCN_CLIPS are drawn for 64 x 64 frames
            clips = [[tuple(round(v * s) for v in obj) for obj in c[:n]] for c in STCN_CLIPS]
            batch = to_dtype(textured_clips(clips, t=3, h=size, w=size, n=n, seed=1), dtype)
            torch.manual_seed(0)
            model = build_model("stcn", single_object=single_object)
            official = build_official_stcn(single_object)
            official.network.load_state_dict(model.state_dict())  # strict: the keys are the official ones
            cache[key] = (model.to(dtype), dataclasses.replace(official, network=official.network.to(dtype)), batch)
        return cache[key]

    yield get


def check_stcn_step(stcn_pair, *, single_object: bool, it: int, size: int, dtype: torch.dtype) -> None:
    model, official, batch = stcn_pair(single_object, size, dtype)
    cfg = LossConfig(mode="none")  # STCN's L_SEG only; default bootstrap schedule 20K -> 70K, top_p 0.15

    # corrvos: the unroller in train mode with frozen BatchNorm, as corrvos' trainer with freeze_bn
    unroller = build_unroller(model)
    unroller.train()
    freeze_batchnorm(unroller)
    model.zero_grad(set_to_none=True)
    result = CorrespondenceTask(unroller, cfg).step(batch, step=it, seed=0)
    result["loss"].backward()
    logits = result["outputs"].logits.detach()  # [B, T-1, N+1, H, W]

    # official: STCNModel.do_pass on the same batch in the official dict format
    step = official_stcn_step(official, official_stcn_batch(batch, single_object=single_object), it=it)
    losses = {k: v.detach() if isinstance(v, Tensor) else v for k, v in step.losses.items()}

    # network outputs (localises a mismatch before the losses)
    for i in (1, 2):
        ref = step.inputs[f"logits_{i}"].detach()
        err = float((logits[:, i - 1] - ref).abs().max())
        assert err <= 1e-5 * float(ref.abs().max()), f"logits of frame {i}: max |diff| {err:.3g}"

    # loss terms: per frame, the fraction p and the total
    for i in (1, 2):
        ours_i, _ = segmentation_loss(
            logits[:, i - 1 : i],
            batch.labels[:, i : i + 1],
            step=it,
            selector=batch.selector,
            bootstrap_start=cfg.bootstrap_start,
            bootstrap_end=cfg.bootstrap_end,
            top_p=cfg.bootstrap_top_p,
        )
        assert rel_diff(ours_i, losses[f"loss_{i}"]) <= LOSS_RTOL, (i, float(ours_i), float(losses[f"loss_{i}"]))
    assert rel_diff(result["stats"]["bootstrap_p"], losses["p"]) <= LOSS_RTOL
    total = result["loss"].detach()
    assert rel_diff(result["terms"]["seg"].detach(), losses["total_loss"]) <= LOSS_RTOL
    assert rel_diff(total, losses["total_loss"]) <= LOSS_RTOL, (float(total), float(losses["total_loss"]))

    rtol, atol = GRAD_TOL[dtype]
    failures, _, rel = compare_grads(model, official.network, rtol=rtol, atol=atol)
    assert not failures, "\n".join(failures)
    assert len(rel) > 0.9 * len(list(model.parameters()))  # nearly every parameter has a real gradient


@pytest.mark.skipif(not HAS_STCN, reason="official STCN code not in .ref/STCN (git archive of hkchengrex/STCN)")
@pytest.mark.parametrize("single_object", [False, True], ids=["multi", "single"])
@pytest.mark.parametrize("it", [0, 30_000], ids=["ce", "bootstrap"])
def test_stcn_training_step_matches_official(stcn_pair, single_object: bool, it: int) -> None:
    check_stcn_step(stcn_pair, single_object=single_object, it=it, size=64, dtype=torch.float32)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STCN, reason="official STCN code not in .ref/STCN (git archive of hkchengrex/STCN)")
def test_stcn_training_step_matches_official_fp64(stcn_pair) -> None:
    """In fp64 the rounding noise of the fp32 test falls away (32 x 32 frames: fp64 convolutions are slow on CPU)."""
    check_stcn_step(stcn_pair, single_object=False, it=30_000, size=32, dtype=torch.float64)
