"""Tests of corrvos.inference: geometry helpers, object bookkeeping, and InferenceCore against a plain reference.

The reference (``reference_run``) is written independently of the engine, following the official STCN YouTube-VOS
core: the whole video is held, every object has its own memory bank started at its first annotated frame, and the
temporary last frame is kept per bank. A tiny hand-weighted model whose output is driven by the memory readout
makes the comparisons sensitive to every memory decision; the real STCN (random weights, 64x96) is run too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.inference import InferenceConfig, InferenceCore
from corrvos.inference.geometry import pad_to_multiple, resized_shape, unpad
from corrvos.inference.objects import ObjectManager
from corrvos.models.memory import l2_affinity, readout, softmax_affinity, topk_softmax
from corrvos.types import QueryFeatures, SegmentOutput


class TinyVOS(nn.Module):
    """A fake model with the STCN stage-method contract whose prediction is the memory readout of the mask.

    Features are at stride 4 (the engine does not depend on the stride). Keys are random 4x4-patch projections of
    the frame; the value of object k is [pooled mask_k - 1/2, pooled others - 1/2]; the decoder logit is
    12 * channel 0 of the readout, upsampled x4.
    """

    family = "stcn"
    key_dim = 8
    value_dim = 2
    hidden_dim = 0
    single_object = False

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.key_proj = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        with torch.no_grad():
            self.key_proj.weight.copy_(torch.randn(8, 3, 4, 4, generator=g) * 0.15)
            self.key_proj.bias.zero_()

    def encode_key(self, frame: Tensor, *, need_shrinkage: bool = True, need_selection: bool = True) -> QueryFeatures:
        key = self.key_proj(frame)  # [B, 8, h, w]
        f16 = F.avg_pool2d(frame, 4)  # [B, 3, h, w]
        return QueryFeatures(key=key, f16=f16, f8=f16, f4=f16)

    def encode_value(self, frame: Tensor, f16: Tensor, masks: Tensor, hidden=None, *, deep_update: bool = True):
        others = masks.sum(dim=1, keepdim=True) - masks  # [B, N, H, W]
        v = torch.stack([F.avg_pool2d(masks, 4), F.avg_pool2d(others, 4)], dim=2)  # [B, N, 2, h, w]
        return v - 0.5, hidden

    def read_memory(
        self,
        mem_key: Tensor,
        mem_value: Tensor,
        query_key: Tensor,
        *,
        top_k: int | None = None,
        mem_shrinkage=None,
        query_selection=None,
    ):
        affinity = l2_affinity(mem_key, query_key)
        weights = softmax_affinity(affinity) if top_k is None else topk_softmax(affinity, top_k)
        return readout(weights, mem_value)

    def segment(
        self,
        readout16: Tensor,
        feats: QueryFeatures,
        hidden=None,
        *,
        selector: Tensor | None = None,
        update_hidden: bool = True,
    ) -> SegmentOutput:
        logits = 12 * readout16[:, :, 0]  # [B, N, h, w]
        prob = torch.sigmoid(F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False))
        bg = torch.prod(1 - prob, dim=1, keepdim=True)  # [B, 1, H, W]
        p = torch.cat([bg, prob], dim=1).clamp(1e-7, 1 - 1e-7)
        agg_logits = torch.log(p / (1 - p))
        return SegmentOutput(agg_logits, torch.softmax(agg_logits, dim=1))


# ----------------------------------------------------------------------------------------------------------------
# independent reference


def _aggregate(p: Tensor) -> Tensor:
    """[N, H, W] -> [N+1, H, W]: softmax of the clamped log-odds of [prod(1 - p), p]."""
    q = torch.cat([(1 - p).prod(0, keepdim=True), p]).clamp(1e-7, 1 - 1e-7)
    return torch.softmax((q / (1 - q)).log(), dim=0)


def _prep(frames: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (frames - mean) / std
    h, w = x.shape[-2:]
    nh, nw = math.ceil(h / 16) * 16, math.ceil(w / 16) * 16
    pad = ((nw - w) // 2, nw - w - (nw - w) // 2, (nh - h) // 2, nh - h - (nh - h) // 2)
    return F.pad(x, pad), pad


@torch.no_grad()
def reference_run(model, frames: Tensor, masks: dict[int, np.ndarray], *, top_k, mem_every, include_last):
    """Whole-video reference. Returns per frame [1 + #ids, H, W] over ALL ids of the video (ascending), or None."""
    x_all, pad = _prep(frames)
    t_len = frames.shape[0]
    all_ids = sorted({int(i) for m in masks.values() for i in np.unique(m) if i != 0})
    banks: dict[int, dict] = {}
    enabled: list[int] = []
    last_mem = None
    outs: list[Tensor | None] = []
    for t in range(t_len):
        end = t == t_len - 1
        if not enabled and t not in masks:
            outs.append(None)
            continue
        x = x_all[t : t + 1]
        feats = model.encode_key(x)
        probs: dict[int, Tensor] = {}
        if enabled:
            reads = []
            for oi in enabled:
                b = banks[oi]
                ks, vs = list(b["k"]), list(b["v"])
                if b["tk"] is not None:
                    ks.append(b["tk"])
                    vs.append(b["tv"])
                mk = torch.stack(ks, dim=2)  # [1, CK, T, h, w]
                mv = torch.stack(vs, dim=3)  # [1, 1, CV, T, h, w]
                reads.append(model.read_memory(mk, mv, feats.key, top_k=top_k))
            prob = model.segment(torch.cat(reads, dim=1), feats).prob
            probs = {oi: prob[0, 1 + i] for i, oi in enumerate(enabled)}
        memorize = None
        if t in masks:
            label = F.pad(torch.from_numpy(masks[t]).long(), pad)
            ids = [int(i) for i in np.unique(masks[t]) if i != 0]
            region = torch.isin(label, torch.tensor(ids))
            probs = {oi: p * (~region) for oi, p in probs.items()}
            for oi in ids:
                probs[oi] = (label == oi).float()
                if oi not in enabled:
                    enabled.append(oi)
                    banks[oi] = {"k": [], "v": [], "tk": None, "tv": None}
            agg = _aggregate(torch.stack([probs[oi] for oi in enabled]))
            probs = {oi: agg[1 + i] for i, oi in enumerate(enabled)}
            if not end:
                memorize, last_mem = "permanent", t
        elif not end:
            if t - last_mem >= mem_every:
                memorize, last_mem = "permanent", t
            elif include_last:
                memorize = "temp"
        if memorize:
            values, _ = model.encode_value(x, feats.f16, torch.stack([probs[oi] for oi in enabled])[None])
            for i, oi in enumerate(enabled):
                b = banks[oi]
                b["tk"], b["tv"] = None, None
                if memorize == "temp":
                    b["tk"], b["tv"] = feats.key, values[:, i : i + 1]
                else:
                    b["k"].append(feats.key)
                    b["v"].append(values[:, i : i + 1])
        bg = 1 - sum(probs.values()) if probs else None
        full = torch.stack([bg] + [probs.get(oi, torch.zeros_like(bg)) for oi in all_ids])
        outs.append(full[:, pad[2] : full.shape[1] - pad[3], pad[0] : full.shape[2] - pad[1]])
    return outs


def run_core(core: InferenceCore, frames: Tensor, masks: dict[int, np.ndarray]) -> list[Tensor]:
    out = []
    for t in range(frames.shape[0]):
        out.append(core.step(frames[t], masks.get(t), end=t == frames.shape[0] - 1))
    return out


def moving_video(t_len: int = 9, h: int = 40, w: int = 72, seed: int = 0) -> tuple[Tensor, list[np.ndarray]]:
    """Textured background with two rectangles drifting right; returns frames [T, 3, H, W] and label maps."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(3, h, w, generator=g) * 0.5
    frames, labels = [], []
    for t in range(t_len):
        img = bg.clone()
        lab = np.zeros((h, w), np.uint8)
        img[:, 5:20, 4 + 2 * t : 20 + 2 * t] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
        lab[5:20, 4 + 2 * t : 20 + 2 * t] = 2
        img[:, 22:36, 30 + t : 44 + t] = torch.tensor([0.1, 0.2, 0.9]).view(3, 1, 1)
        lab[22:36, 30 + t : 44 + t] = 5
        frames.append(img)
        labels.append(lab)
    return torch.stack(frames), labels


# ----------------------------------------------------------------------------------------------------------------
# geometry and bookkeeping


@pytest.mark.parametrize(("h", "w"), [(17, 33), (16, 32), (1, 1), (31, 47), (480, 854)])
def test_pad_unpad_round_trip(h: int, w: int) -> None:
    x = torch.randn(2, 3, h, w)
    padded, pad = pad_to_multiple(x, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    assert padded.shape[-2] - h < 16 and padded.shape[-1] - w < 16
    ph, pw = padded.shape[-2] - h, padded.shape[-1] - w
    assert pad == (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    assert torch.equal(padded[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w], x)
    assert padded.abs().sum() == pytest.approx(x.abs().sum().item(), rel=1e-6)  # the padding is zeros
    assert torch.equal(unpad(padded, pad), x)


def test_resized_shape_follows_shorter_side_rule() -> None:
    assert resized_shape(720, 1280, 480) == (480, int(480 * 1280 / 720))
    assert resized_shape(1280, 720, 480) == (int(480 * 1280 / 720), 480)
    assert resized_shape(480, 910, 480) == (480, 910)  # already there: untouched
    assert resized_shape(123, 77, None) == (123, 77)


def test_object_manager_channels_follow_ascending_ids() -> None:
    om = ObjectManager()
    om.add([7, 3], frame=0)
    assert om.ids == [3, 7] and om.add([3], frame=1) is None
    group = om.add([5, 3], frame=4)
    assert group is not None and group.ids == [5] and group.first_frame == 4
    assert om.ids == [3, 5, 7] and om.channels([7, 5]) == [2, 1]


# ----------------------------------------------------------------------------------------------------------------
# InferenceCore with the tiny model


@pytest.mark.parametrize("include_last", [False, True])
@pytest.mark.parametrize("mem_every", [1, 3])
def test_core_matches_reference_all_objects_on_first_frame(include_last: bool, mem_every: int) -> None:
    model = TinyVOS().eval()
    frames, labels = moving_video()
    masks = {0: labels[0]}
    core = InferenceCore(model, InferenceConfig(top_k=5, mem_every=mem_every, include_last=include_last))
    got = run_core(core, frames, masks)
    ref = reference_run(model, frames, masks, top_k=5, mem_every=mem_every, include_last=include_last)
    for t, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert a.shape == (3, 40, 72), t
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the model propagates: the moving objects are tracked well on the last frame
    pred = core.prob_to_mask(got[-1]).numpy()
    for obj in (2, 5):
        inter = np.logical_and(pred == obj, labels[-1] == obj).sum()
        union = np.logical_or(pred == obj, labels[-1] == obj).sum()
        assert inter / union > 0.6


def test_first_frame_mask_is_echoed() -> None:
    frames, labels = moving_video(t_len=2)
    core = InferenceCore(TinyVOS().eval())
    prob = core.step(frames[0], labels[0])
    assert core.object_ids == [2, 5]
    assert torch.equal(core.prob_to_mask(prob), torch.from_numpy(labels[0]).long())


def test_object_introduced_mid_video_matches_reference() -> None:
    model = TinyVOS().eval()
    frames, labels = moving_video(t_len=10)
    first = np.where(labels[0] == 5, 5, 0).astype(np.uint8)
    later = np.where(labels[4] == 2, 2, 0).astype(np.uint8)
    masks = {1: first, 4: later}  # nothing known on frame 0; object 2 (smaller id) appears on frame 4
    core = InferenceCore(model, InferenceConfig(top_k=7, mem_every=2, include_last=True))
    got = run_core(core, frames, masks)
    ref = reference_run(model, frames, masks, top_k=7, mem_every=2, include_last=True)
    assert got[0].shape == (1, 40, 72) and torch.all(got[0] == 1)  # before any mask: background only
    for t in range(1, 4):
        assert got[t].shape == (2, 40, 72)  # background + object 5
        torch.testing.assert_close(got[t], ref[t][[0, 2]], atol=1e-5, rtol=0)  # object 2 not known yet
    for t in range(4, 10):
        assert got[t].shape == (3, 40, 72)  # background, 2, 5 in ascending id order
        torch.testing.assert_close(got[t], ref[t], atol=1e-5, rtol=0)
    assert core.memory.starts == [0, core.memory.num_frames - 3]  # frames 1, 3 | 4, 6, 8
    # on the mask frame, the given object takes its mask exactly
    assert torch.equal(core.prob_to_mask(got[4])[torch.from_numpy(later) == 2], torch.full(((later == 2).sum(),), 2))


def test_topk_covering_memory_equals_full_softmax() -> None:
    model = TinyVOS().eval()
    frames, labels = moving_video(t_len=6)
    outs = []
    for top_k in (10**6, None):
        outs.append(run_core(InferenceCore(model, InferenceConfig(top_k=top_k, mem_every=1)), frames, {0: labels[0]}))
    for a, b in zip(*outs, strict=True):
        # two float32 softmaxes over the same values, summed in different orders (sorted top-k vs memory order),
        # each within ~2e-6 of a float64 softmax; TinyVOS' decoder multiplies the readout by 12 and every frame's
        # probabilities feed the next memory values, so the rounding grows to ~1.5e-5 by frame 5
        torch.testing.assert_close(a, b, atol=5e-5, rtol=0)
    small = run_core(InferenceCore(model, InferenceConfig(top_k=1, mem_every=1)), frames, {0: labels[0]})
    assert (small[-1] - outs[1][-1]).abs().max() > 1e-3  # top-k is not a no-op


def test_runs_are_identical_and_reset_restarts() -> None:
    model = TinyVOS().eval()
    frames, labels = moving_video(t_len=5)
    core = InferenceCore(model, InferenceConfig(top_k=4, mem_every=2))
    a = run_core(core, frames, {0: labels[0]})
    core.reset()
    b = run_core(core, frames, {0: labels[0]})
    c = run_core(InferenceCore(model, InferenceConfig(top_k=4, mem_every=2)), frames, {0: labels[0]})
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_internal_resize_returns_input_size() -> None:
    frames, labels = moving_video(t_len=3, h=40, w=72)
    core = InferenceCore(TinyVOS().eval(), InferenceConfig(internal_size=32))
    outs = run_core(core, frames, {0: labels[0]})
    assert all(o.shape == (3, 40, 72) for o in outs)
    assert core.pad == (3, 4, 0, 0)  # 32 x 57 -> padded to 32 x 64
    assert (core.prob_to_mask(outs[0]).numpy() == labels[0]).mean() > 0.95


def test_skip_frame_follows_memory_schedule() -> None:
    frames, labels = moving_video(t_len=8)
    model = TinyVOS().eval()
    core = InferenceCore(model, InferenceConfig(mem_every=3))
    needed = []
    for t in range(8):
        if t == 0:
            core.step(frames[0], labels[0])
            continue
        needed.append(core.next_frame_needed(end=t == 7))
        core.step(frames[t], end=t == 7)
    assert needed == [False, False, True, False, False, True, False]
    # skipping the unneeded frames leaves the outputs of the kept frames unchanged
    full = run_core(InferenceCore(model, InferenceConfig(mem_every=3)), frames, {0: labels[0]})
    core = InferenceCore(model, InferenceConfig(mem_every=3))
    core.step(frames[0], labels[0])
    for t in range(1, 8):
        if t in (3, 6, 7):
            torch.testing.assert_close(core.step(frames[t], end=t == 7), full[t], atol=0, rtol=0)
        else:
            core.skip_frame()


def test_bad_inputs_raise() -> None:
    frames, labels = moving_video(t_len=2)
    core = InferenceCore(TinyVOS().eval())
    with pytest.raises(ValueError, match="mask must be"):
        core.step(frames[0], labels[0][:, :10])
    core.reset()
    core.step(frames[0], labels[0])
    with pytest.raises(ValueError, match="size"):
        core.step(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="amp"):
        InferenceCore(TinyVOS(), InferenceConfig(amp="fp16"))


# ----------------------------------------------------------------------------------------------------------------
# the real STCN (random weights)


@pytest.fixture(scope="module")
def stcn():
    from corrvos.families.stcn.network import STCN

    torch.manual_seed(0)
    model = STCN().eval()
    with torch.no_grad():  # random keys are ~40 in size: affinities would overflow the unsubtracted top-k exp
        model.key_proj.key_proj.weight.mul_(0.05)
    return model


def test_real_stcn_matches_reference(stcn) -> None:
    frames, labels = moving_video(t_len=5, h=64, w=96)
    lab0 = labels[0].copy()
    lab0[40:60, 5:25] = 9  # a third object
    masks = {0: lab0}
    got = run_core(InferenceCore(stcn, InferenceConfig(top_k=20, mem_every=2)), frames, masks)
    ref = reference_run(stcn, frames, masks, top_k=20, mem_every=2, include_last=False)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == (4, 64, 96)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_channels_last_decoder_keeps_outputs(stcn) -> None:
    import copy

    frames, labels = moving_video(t_len=4, h=64, w=96)
    nchw = copy.deepcopy(stcn).to(memory_format=torch.contiguous_format)  # the fixture may have been converted
    model = copy.deepcopy(nchw)
    core = InferenceCore(model, InferenceConfig(top_k=20, mem_every=2))  # channels_last_decoder=True by default
    assert model.decoder.pred.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.key_encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # encoders stay NCHW
    got = run_core(core, frames, {0: labels[0]})
    ref = reference_run(nchw, frames, {0: labels[0]}, top_k=20, mem_every=2, include_last=False)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # same values, another convolution algorithm
    InferenceCore(nchw, InferenceConfig(channels_last_decoder=False))  # opting out leaves the model's layout alone
    assert not nchw.decoder.pred.weight.is_contiguous(memory_format=torch.channels_last)


def test_real_stcn_object_later_and_odd_size(stcn) -> None:
    frames, labels = moving_video(t_len=4, h=50, w=70)
    masks = {0: np.where(labels[0] == 5, 5, 0).astype(np.uint8), 2: np.where(labels[2] == 2, 2, 0).astype(np.uint8)}
    got = run_core(InferenceCore(stcn, InferenceConfig(top_k=20, mem_every=5, include_last=True)), frames, masks)
    ref = reference_run(stcn, frames, masks, top_k=20, mem_every=5, include_last=True)
    torch.testing.assert_close(got[1], ref[1][[0, 2]], atol=1e-5, rtol=0)
    for t in (2, 3):
        assert got[t].shape == (3, 50, 70)
        torch.testing.assert_close(got[t], ref[t], atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_cuda_matches_cpu(stcn, amp: str, monkeypatch) -> None:
    import copy

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions differ from CPU by ~1e-3

    frames, labels = moving_video(t_len=4, h=64, w=96)
    cpu = run_core(InferenceCore(stcn, InferenceConfig(mem_every=2)), frames, {0: labels[0]})
    gpu_model = copy.deepcopy(stcn).cuda()
    gpu = run_core(InferenceCore(gpu_model, InferenceConfig(mem_every=2, amp=amp)), frames, {0: labels[0]})
    tol = 1e-4 if amp == "none" else 5e-2
    for a, b in zip(cpu, gpu, strict=True):
        assert b.device.type == "cuda" and b.dtype == torch.float32
        torch.testing.assert_close(b.cpu(), a, atol=tol, rtol=0)


@pytest.mark.parametrize("channels", [1, 2, 4, 7])
def test_channel_argmax_equals_torch_argmax_including_ties(channels):
    from corrvos.inference.core import channel_argmax

    g = torch.Generator().manual_seed(channels)
    prob = torch.rand(channels, 33, 47, generator=g)
    prob[:, :5] = torch.round(prob[:, :5] * 2) / 2  # many exact ties: the first index must win, as in argmax
    assert torch.equal(channel_argmax(prob), prob.argmax(dim=0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_channel_argmax_on_cuda_equals_cpu():
    from corrvos.inference.core import channel_argmax

    prob = torch.round(torch.rand(4, 33, 47, generator=torch.Generator().manual_seed(0)) * 3) / 3  # with ties
    assert torch.equal(channel_argmax(prob.cuda()).cpu(), channel_argmax(prob))


def test_copy_first_frame_baseline_drops_void(tmp_path) -> None:
    """The baseline copies the frame-0 objects; DAVIS void (255) is no object (it would be an id > N in eval)."""
    from corrvos.data.io import read_label, write_image, write_label
    from corrvos.evaluation import evaluate_davis
    from corrvos.inference.baseline import copy_first_frame

    root = tmp_path / "DAVIS"
    _, labels = moving_video(t_len=4, h=32, w=48)
    first = labels[0].copy()
    first[:2] = 255  # a void band in the first annotation
    for t, lab in enumerate([first, *labels[1:]]):
        write_image(root / "JPEGImages" / "480p" / "s" / f"{t:05d}.jpg", np.zeros((32, 48, 3), np.uint8))
        write_label(root / "Annotations" / "480p" / "s" / f"{t:05d}.png", lab)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("s\n")
    out = copy_first_frame(root, tmp_path / "res", progress=False)
    expected = np.where(first == 255, 0, first)
    for t in range(4):
        assert np.array_equal(read_label(out / "s" / f"{t:05d}.png"), expected)
    res = evaluate_davis(root, out, workers=1, write_csv=False, progress=False)
    assert res.object_names == ["s_1", "s_2", "s_3", "s_4", "s_5"]  # N = 5 from frame 0 (ids 2 and 5)


def test_config_defaults_follow_the_model_family() -> None:
    from corrvos.inference import inference_config_for

    stcn, xmem = inference_config_for("stcn"), inference_config_for("xmem")
    assert (stcn.top_k, stcn.internal_size, stcn.resize_mode) == (20, None, "bicubic")
    assert (xmem.top_k, xmem.internal_size, xmem.resize_mode, xmem.num_prototypes) == (30, 480, "bilinear", 128)
    full = inference_config_for("xmem", top_k=None, internal_size=None)  # None is a value, not "keep the default"
    assert full.top_k is None and full.internal_size is None
    with pytest.raises(TypeError, match="family"):
        inference_config_for(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="unknown inference options"):
        inference_config_for("stcn", topk=3)
    with pytest.raises(ValueError, match="min_mid_term_frames"):
        inference_config_for("xmem", min_mid_term_frames=10)
    with pytest.raises(ValueError, match="include_last"):
        InferenceCore(build_xmem_for_test(), InferenceConfig(include_last=True))


def build_xmem_for_test() -> nn.Module:
    from corrvos.models import build_model

    return build_model("xmem").eval()
