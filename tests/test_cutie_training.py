"""Cutie training: the clip unroll (memory frames, deep updates, object memory, auxiliary heads), its point-sampled
losses, and one step against the official Cutie trainer's wrapper and loss (``.ref/Cutie``, skipped when absent)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from corrvos.families.cutie.losses import (
    PointLossConfig,
    point_dice,
    point_sample,
    segmentation_terms,
    uncertain_points,
)
from corrvos.families.cutie.network import Cutie
from corrvos.families.cutie.unroll import PAD_LOGIT, CutieUnroller, CutieUnrollPolicy
from corrvos.types import ClipBatch
from official_cutie import have_official_cutie

HW = 64


def make_batch(b: int = 2, t: int = 5, n: int = 3, hw: int = HW, seed: int = 0, counts=(2, 1)) -> ClipBatch:
    """Clips with moving rectangles; clip i has ``counts[i]`` objects in its first slots (the rest is padding)."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, hw, hw, generator=gen)
    labels = torch.zeros(b, t, hw, hw, dtype=torch.long)
    for bi in range(b):
        for k in range(1, counts[bi] + 1):
            for ti in range(t):
                y = (3 + 11 * k + 2 * ti) % (hw - 20)
                x = (2 + 13 * k + 3 * ti) % (hw - 20)
                labels[bi, ti, y : y + 12 + 2 * k, x : x + 14] = k
    masks = (labels.unsqueeze(2) == torch.arange(1, n + 1).view(1, 1, n, 1, 1)).float()  # [B, T, N, H, W]
    selector = (torch.arange(n).view(1, n) < torch.tensor(counts).view(-1, 1)).float()  # [B, N]
    return ClipBatch(frames=frames, masks=masks, labels=labels, selector=selector, names=[f"c{i}" for i in range(b)])


@pytest.fixture(scope="module")
def cutie() -> Cutie:
    torch.manual_seed(0)
    return Cutie(key_encoder="resnet18").eval()


def _unroller(model, num_ref: int = 2, p: float = 0.5, seed: int = 5) -> CutieUnroller:
    unroller = CutieUnroller(model, policy=CutieUnrollPolicy(num_ref_frames=num_ref, deep_update_prob=p))
    unroller.clip_generator = torch.Generator().manual_seed(seed)
    return unroller


def test_outputs_have_the_clip_shapes_and_padded_slots(cutie) -> None:
    batch = make_batch()
    with torch.no_grad():
        out = _unroller(cutie)(batch)
    h = HW // 16
    assert out.logits.shape == (2, 4, 4, HW, HW)
    assert out.aux_logits.shape == (2, 4, 5, 4, h, h)  # sensory head + 4 object-transformer levels
    assert out.keys.shape == (2, 5, 64, h, h) and out.selection.shape == (2, 5, 64, h, h)
    assert out.shrinkage.shape == (2, 5, 1, h, h) and out.res4.shape == (2, 5, cutie.f16_dim, h, h)
    # slot 3 holds no object in any clip: it is not unrolled, its logits are those of a zero probability
    assert (out.logits[:, :, 3] == PAD_LOGIT).all() and (out.aux_logits[:, :, :, 3] == PAD_LOGIT).all()
    # slot 2 of clip 1 is padding inside the unroll (selector 0): the same constant
    torch.testing.assert_close(out.logits[1, :, 2], torch.full_like(out.logits[1, :, 2], PAD_LOGIT))
    # and truncating the slots beforehand changes nothing
    small = ClipBatch(batch.frames, batch.masks[:, :, :2], batch.labels, batch.selector[:, :2])
    with torch.no_grad():
        same = _unroller(cutie)(small)
    assert torch.equal(same.logits, out.logits[:, :, :3]) and torch.equal(same.aux_logits, out.aux_logits[:, :, :, :3])


def test_draws_follow_the_generator_and_the_official_rule(cutie) -> None:
    batch = make_batch(b=3, t=7, counts=(2, 1, 1))
    with torch.no_grad():
        unroller = _unroller(cutie, num_ref=3, p=0.4, seed=11)
        out = unroller(batch)
        again = _unroller(cutie, num_ref=3, p=0.4, seed=11)
        out_again = again(batch)
    draws = unroller.last_draws
    # independent replay in the official order: per frame t > 3 one randperm(t) per clip (frame 0 not forced), then
    # (frames 1..5) one deep-update draw
    gen = torch.Generator().manual_seed(11)
    for ti in range(1, 7):
        if ti > 3:
            expected = torch.stack([torch.randperm(ti, generator=gen)[:3] for _ in range(3)])
            assert torch.equal(draws.memory_frames[ti], expected)
        if ti < 6:
            assert draws.deep_updates[ti] == bool(torch.rand((), generator=gen) < 0.4)
    assert sorted(draws.memory_frames) == [4, 5, 6] and sorted(draws.deep_updates) == [1, 2, 3, 4, 5]
    assert any(not (idx == 0).any(dim=1).all() for idx in draws.memory_frames.values())  # frame 0 is not forced
    assert torch.equal(out.logits, out_again.logits)
    with torch.no_grad():
        other = _unroller(cutie, num_ref=3, p=0.4, seed=12)
        other(batch)
    assert any(not torch.equal(other.last_draws.memory_frames[t], draws.memory_frames[t]) for t in range(4, 7))


def test_memory_and_object_reads_use_the_drawn_frames_and_every_summary(cutie) -> None:
    """Each pixel read gets the keys and shrinkage of exactly its memory frames (all earlier frames while t <= 2,
    then the drawn ones, per clip); the object transformer gets the summaries of every earlier frame."""
    batch = make_batch(t=6)
    reads, objects = [], []
    read, read_objects = cutie.read_memory, cutie.read_objects

    def spy_read(mem_key, mem_value, query_key, **kwargs):
        reads.append((mem_key, kwargs["mem_shrinkage"], query_key, kwargs["query_selection"]))
        return read(mem_key, mem_value, query_key, **kwargs)

    def spy_objects(pixel, obj_memory, **kwargs):
        objects.append(obj_memory)
        return read_objects(pixel, obj_memory, **kwargs)

    cutie.read_memory, cutie.read_objects = spy_read, spy_objects
    try:
        with torch.no_grad():
            unroller = _unroller(cutie, num_ref=2, p=1.0, seed=3)
            unroller(batch)
            feats = cutie.encode_key(batch.frames.flatten(0, 1))
    finally:
        del cutie.read_memory, cutie.read_objects
    key, shrink, select = (x.view(2, 6, *x.shape[1:]) for x in (feats.key, feats.shrinkage, feats.selection))
    assert len(reads) == 5 and [o.shape[2] for o in objects] == [1, 2, 3, 4, 5]
    for ti, (mem_key, mem_shrink, query_key, query_sel) in enumerate(reads, start=1):
        torch.testing.assert_close(query_key, key[:, ti])
        torch.testing.assert_close(query_sel, select[:, ti])
        for bi in range(2):
            frames = list(range(ti)) if ti <= 2 else unroller.last_draws.memory_frames[ti][bi].tolist()
            torch.testing.assert_close(mem_key[bi].transpose(0, 1), key[bi, frames])
            torch.testing.assert_close(mem_shrink[bi].transpose(0, 1), shrink[bi, frames])
    assert any(
        unroller.last_draws.memory_frames[t][0].tolist() != unroller.last_draws.memory_frames[t][1].tolist()
        for t in range(3, 6)
    )


def test_gradient_reaches_keys_shrinkage_selection_and_summarizer_but_not_later_ground_truth(cutie) -> None:
    """L_SEG of a clip trains the key projection with its shrinkage and selection heads, the object summarizer, the
    sensory head and the object transformer's mask heads; frames 1..T-1 are encoded from the predictions, so their
    ground-truth masks get no gradient (only frame 0's are an input)."""
    batch = make_batch(t=4)
    batch.masks.requires_grad_()
    cutie.zero_grad(set_to_none=True)
    out = _unroller(cutie, num_ref=2, p=0.5)(batch)
    terms = segmentation_terms(
        out.logits,
        out.aux_logits,
        batch.labels[:, 1:],
        [2, 1],
        PointLossConfig(num_points=128),
        torch.Generator().manual_seed(0),
    )
    sum(terms.values()).backward()
    grads = dict(cutie.named_parameters())
    for name in (
        "key_proj.key_proj.weight",
        "key_proj.d_proj.weight",
        "key_proj.e_proj.weight",
        "object_summarizer.input_proj.weight",
        "aux_computer.sensory_aux.projection.weight",
        "object_transformer.mask_pred.0.1.weight",
        "pixel_encoder.conv1.weight",
    ):
        grad = grads[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    mask_grad = batch.masks.grad  # [B, T, N, H, W]
    assert mask_grad[:, 0].abs().sum() > 0
    assert mask_grad[:, 1:].abs().sum() == 0
    cutie.zero_grad(set_to_none=True)


def test_point_sample_reads_pixel_centres_exactly() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    ys, xs = torch.tensor([0, 3, 2]), torch.tensor([4, 0, 1])
    coords = torch.stack([(xs + 0.5) / 5, (ys + 0.5) / 4], dim=1).expand(2, -1, -1)  # [2, 3, 2] (x, y)
    torch.testing.assert_close(point_sample(x, coords), x[:, :, ys, xs])


def test_uncertain_points_keep_the_smallest_margins_then_uniform_points() -> None:
    """Logits whose margin is smallest in one known column: with importance 1 every kept candidate is among the
    most uncertain; the uniform part is the generator's next draws."""
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 0] = torch.linspace(-4, 4, 8).abs().view(1, 8)  # margin |x| small near the middle columns
    gen = torch.Generator().manual_seed(3)
    coords = uncertain_points(logits, num_points=40, oversample_ratio=3, importance_sample_ratio=0.5, generator=gen)
    replay = torch.Generator().manual_seed(3)
    candidates = torch.rand(1, 120, 2, generator=replay)
    uniform = torch.rand(1, 20, 2, generator=replay)
    assert torch.equal(coords[:, 20:], uniform)
    # independent uncertainty of each candidate: minus the gap between the two largest sampled logits
    sampled = point_sample(logits, candidates)[0]  # [3, 120]
    top = sampled.sort(dim=0, descending=True).values
    uncertainty = top[1] - top[0]
    chosen = {tuple(c.tolist()) for c in coords[0, :20]}
    order = uncertainty.argsort(descending=True)
    assert chosen == {tuple(candidates[0, i].tolist()) for i in order[:20]}


def test_point_dice_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    prob = torch.rand(3, 4, 50, generator=gen)
    labels = torch.rand(3, 4, 50, generator=gen)
    expected = torch.stack(
        [
            torch.stack(
                [
                    1 - (2 * (prob[t, k] * labels[t, k]).sum() + 1) / (prob[t, k].sum() + labels[t, k].sum() + 1)
                    for k in (1, 2, 3)
                ]
            ).mean()
            for t in range(3)
        ]
    ).sum()
    torch.testing.assert_close(point_dice(prob, labels), expected)


# ------------------------------------------------------------------------------------------ official parity


@pytest.mark.skipif(
    not have_official_cutie() or importlib.util.find_spec("einops") is None,
    reason="official Cutie checkout .ref/Cutie, omegaconf or einops absent",
)
def test_one_step_matches_the_official_cutie_trainer() -> None:
    """Same weights, batch and random choices (our memory frames, deep updates and point draws replayed into the
    official ``CutieTrainWrapper`` and ``LossComputer``): every loss term and every parameter's gradient agree."""
    from official_cutie import official_training_modules

    t, num_ref, p, points = 5, 2, 0.5, 256
    stage = {
        "num_objects": 3,
        "seq_length": t,
        "num_ref_frames": num_ref,
        "deep_update_prob": p,
        "amp": False,
        "point_supervision": True,
        "train_num_points": points,
        "oversample_ratio": 3.0,
        "importance_sample_ratio": 0.75,
    }
    torch.manual_seed(0)
    model = Cutie(key_encoder="resnet18").train()
    for m in model.modules():  # the official encoders keep their BatchNorm in eval mode (the trainer's freeze_bn)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    net, computer = official_training_modules("small", stage)
    net.load_state_dict(model.state_dict())
    net.pixel_mean.zero_()  # our frames come normalised; the official wrapper normalises inside
    net.pixel_std.fill_(1.0)
    net.train()
    batch = make_batch(t=t, counts=(2, 1))

    unroller = _unroller(model, num_ref=num_ref, p=p, seed=2)
    out = unroller(batch)
    cfg = PointLossConfig(num_points=points)
    ours = segmentation_terms(
        out.logits, out.aux_logits, batch.labels[:, 1:], [2, 1], cfg, torch.Generator().manual_seed(7)
    )
    sum(ours.values()).backward()
    draws = unroller.last_draws
    assert sorted(draws.memory_frames) == [3, 4] and set(draws.deep_updates.values()) == {True, False}

    data = {
        "rgb": batch.frames.clone(),
        "first_frame_gt": batch.masks[:, :1].clone(),  # [B, 1, N, H, W]
        "cls_gt": batch.labels.unsqueeze(2).clone(),  # [B, T, 1, H, W]
        "selector": batch.selector.clone(),
        "info": {"num_objects": torch.tensor([2, 1])},
    }
    perms = [draws.memory_frames[ti][bi] for ti in sorted(draws.memory_frames) for bi in range(2)]
    asked: list[int] = []
    deep = [draws.deep_updates[ti] for ti in sorted(draws.deep_updates)]
    point_gen = torch.Generator().manual_seed(7)
    rand = torch.rand

    def replay_randperm(n, *args, **kwargs):
        asked.append(int(n))
        return perms.pop(0)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.autocast(enabled=...)
        mp.setattr(torch, "randperm", replay_randperm)
        mp.setattr(np.random, "rand", lambda: 0.0 if deep.pop(0) else 1.0)
        theirs_out = net(data)
        mp.setattr(torch, "rand", lambda *size, device=None, **kw: rand(*size, generator=point_gen, device=device))
        theirs = computer.compute({**data, **theirs_out}, theirs_out["num_filled_objects"])
    theirs["total_loss"].backward()
    assert asked == [3, 3, 4, 4] and not perms and not deep

    for ti in range(1, t):
        torch.testing.assert_close(
            out.logits[:, ti - 1, :3].detach(), theirs_out[f"logits_{ti}"].detach(), rtol=1e-5, atol=1e-5
        )
    names = {"ce": "loss_ce", "dice": "loss_dice"}
    assert {names.get(k, k) for k in ours} | {"total_loss"} == set(theirs)
    for name, value in ours.items():
        torch.testing.assert_close(value.detach(), theirs[names.get(name, name)].detach(), rtol=1e-5, atol=0)
    # gradients, relative to each tensor's largest entry (floored at 1e-3 of the network's largest gradient)
    official = dict(net.named_parameters())
    assert {n for n, q in model.named_parameters() if q.grad is not None} == {
        n for n, q in official.items() if q.grad is not None
    }
    floor = 1e-3 * max(float(q.grad.abs().max()) for q in official.values() if q.grad is not None)
    worst = max(
        (float((q.grad - official[n].grad).abs().max()) / max(float(official[n].grad.abs().max()), floor), n)
        for n, q in model.named_parameters()
        if q.grad is not None
    )
    assert worst[0] < 1e-4, f"largest gradient difference relative to the tensor's scale: {worst}"


def test_official_mode_is_refused_with_a_config_error(cutie) -> None:
    from corrvos.errors import ConfigError
    from corrvos.training.unroll import UnrollPolicy, build_unroller

    with pytest.raises(ConfigError, match=r"loss\.mode 'official'"):
        build_unroller(cutie, policy=UnrollPolicy(num_ref_frames=3), second_view=True)
    with pytest.raises(ValueError, match="num_ref_frames"):
        build_unroller(cutie, policy=UnrollPolicy(num_ref_frames=None))


def test_a_clip_without_objects_gives_finite_terms() -> None:
    """A clip whose selector is all zero (no object in its first frame) has only the background channel: its CE is 0
    (a one-class softmax) and it contributes nothing, without NaN."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 3, 16, 16, generator=gen, requires_grad=True)
    labels = torch.zeros(2, 3, 16, 16, dtype=torch.long)
    labels[0, :, 2:8, 2:8] = 1
    terms = segmentation_terms(logits, None, labels, [1, 0], PointLossConfig(num_points=32), gen)
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() == 0
