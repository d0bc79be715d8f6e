"""XMem training: the clip unroll's policy (reference frames, deep updates, hidden state), its wiring into the
losses, and one step against the official XMem trainer (``.ref/XMem``, skipped when absent)."""

from __future__ import annotations

import pytest
import torch

from corrvos.families import family
from corrvos.losses.config import LossConfig
from corrvos.losses.segmentation import bootstrap_fraction, bootstrapped_ce, class_mask, object_dice_loss
from corrvos.models import build_model
from corrvos.training.task import CorrespondenceTask
from corrvos.training.unroll import ClipUnroller, UnrollPolicy
from corrvos.types import ClipBatch
from official_xmem import REF

HW = 32


def make_batch(b: int = 2, t: int = 8, n: int = 3, hw: int = HW, seed: int = 0) -> ClipBatch:
    """Clips with moving rectangles: clip 0 has all N objects, the others one object (selector [1, 0, ...])."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, hw, hw, generator=gen)
    labels = torch.zeros(b, t, hw, hw, dtype=torch.long)
    for bi in range(b):
        count = n if bi == 0 else 1
        for k in range(1, count + 1):
            for ti in range(t):
                y = (3 + 5 * k + ti) % (hw - 8)
                x = (2 + 7 * k + 2 * ti) % (hw - 8)
                labels[bi, ti, y : y + 6 + k, x : x + 6] = k
    slots = torch.arange(1, n + 1).view(1, 1, n, 1, 1)
    masks = (labels.unsqueeze(2) == slots).float()  # [B, T, N, H, W]
    counts = torch.tensor([n] + [1] * (b - 1)).view(-1, 1)
    selector = (torch.arange(n).view(1, n) < counts).float()
    return ClipBatch(frames=frames, masks=masks, labels=labels, selector=selector, names=[f"c{i}" for i in range(b)])


@pytest.fixture(scope="module")
def xmem() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("xmem").eval()


def _unroller(model, num_ref: int | None = 3, p: float = 0.2, seed: int = 5) -> ClipUnroller:
    unroller = ClipUnroller(model, policy=UnrollPolicy(num_ref_frames=num_ref, deep_update_prob=p))
    unroller.clip_generator = torch.Generator().manual_seed(seed)
    return unroller


def test_draws_follow_the_generator_and_the_xmem_rule(xmem) -> None:
    batch = make_batch(b=3)
    with torch.no_grad():
        unroller = _unroller(xmem, seed=11)
        unroller(batch)
    draws = unroller.last_draws
    # independent replay of the same generator in XMem's draw order: per frame t > 3, one randperm per clip, then
    # (frames 1..6) one deep-update draw after segmenting
    gen = torch.Generator().manual_seed(11)
    for ti in range(1, 8):
        if ti > 3:
            zero = torch.zeros(1, dtype=torch.long)
            expected = torch.stack([torch.cat([zero, torch.randperm(ti - 1, generator=gen)[:2] + 1]) for _ in range(3)])
            assert torch.equal(draws.memory_frames[ti], expected)
        if ti < 7:
            assert draws.deep_updates[ti] == bool(torch.rand((), generator=gen) < 0.2)
    assert sorted(draws.memory_frames) == [4, 5, 6, 7] and sorted(draws.deep_updates) == [1, 2, 3, 4, 5, 6]
    for ti, idx in draws.memory_frames.items():  # frame 0 first, then distinct earlier frames
        assert (idx[:, 0] == 0).all() and (idx[:, 1:] >= 1).all() and (idx[:, 1:] < ti).all()
        assert all(len(set(row.tolist())) == 3 for row in idx)
    # another seed draws other frames
    with torch.no_grad():
        other = _unroller(xmem, seed=12)
        other(batch)
    assert any(not torch.equal(other.last_draws.memory_frames[t], draws.memory_frames[t]) for t in range(4, 8))


def test_memory_read_uses_exactly_the_drawn_frames(xmem) -> None:
    """Each read gets the keys and shrinkage of exactly its memory frames: all earlier frames while t <= 3, then
    frame 0 plus the drawn ones (spied on the model's read_memory)."""
    batch = make_batch(b=2, n=1)
    reads = []
    original = xmem.read_memory

    def spy(mem_key, mem_value, query_key, **kwargs):
        reads.append((mem_key, kwargs["mem_shrinkage"], query_key, kwargs["query_selection"]))
        return original(mem_key, mem_value, query_key, **kwargs)

    xmem.read_memory = spy
    try:
        with torch.no_grad():
            unroller = _unroller(xmem, p=0.0, seed=3)
            unroller(batch)
            feats = xmem.encode_key(batch.frames.flatten(0, 1))
    finally:
        del xmem.read_memory
    key = feats.key.view(2, 8, *feats.key.shape[1:])  # [B, T, CK, h, w]
    shrink = feats.shrinkage.view(2, 8, *feats.shrinkage.shape[1:])
    select = feats.selection.view(2, 8, *feats.selection.shape[1:])
    assert len(reads) == 7
    for ti, (mem_key, mem_shrink, query_key, query_sel) in enumerate(reads, start=1):
        torch.testing.assert_close(query_key, key[:, ti])
        torch.testing.assert_close(query_sel, select[:, ti])
        for bi in range(2):
            frames = list(range(ti)) if ti <= 3 else unroller.last_draws.memory_frames[ti][bi].tolist()
            torch.testing.assert_close(mem_key[bi].transpose(0, 1), key[bi, frames])
            torch.testing.assert_close(mem_shrink[bi].transpose(0, 1), shrink[bi, frames])
    # the two clips drew different frames somewhere (a draw shared by the batch would fail this)
    assert any(
        unroller.last_draws.memory_frames[t][0].tolist() != unroller.last_draws.memory_frames[t][1].tolist()
        for t in range(4, 8)
    )


def test_hidden_state_reaches_the_loss(xmem) -> None:
    """The hidden state is threaded: frame 2's logits change when frame 1's decoder update is removed (zeroed)."""
    batch = make_batch(b=1, t=4, n=1)
    with torch.no_grad():
        base = _unroller(xmem, num_ref=None, p=0.0)(batch).logits
    original = xmem.segment

    def no_update(readout, feats, hidden, **kwargs):
        out = original(readout, feats, hidden, **kwargs)
        if out.hidden is not None:
            out.hidden = torch.zeros_like(out.hidden)
        return out

    xmem.segment = no_update
    try:
        with torch.no_grad():
            zeroed = _unroller(xmem, num_ref=None, p=0.0)(batch).logits
    finally:
        del xmem.segment
    torch.testing.assert_close(zeroed[:, 0], base[:, 0])  # frame 1 is decoded before any update
    assert (zeroed[:, 1] - base[:, 1]).abs().max() > 1e-4
    # and the hidden state carries gradient from the loss back into the decoder's GRU
    xmem.zero_grad(set_to_none=True)
    logits = _unroller(xmem, num_ref=None, p=0.0)(batch).logits
    logits[:, -1].sum().backward()
    grad = xmem.decoder.hidden_update.transform.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    xmem.zero_grad(set_to_none=True)


def test_deep_update_draw_changes_the_clip(xmem) -> None:
    batch = make_batch(b=1, t=3, n=1)
    with torch.no_grad():
        never = _unroller(xmem, num_ref=None, p=0.0)(batch).logits
        always = _unroller(xmem, num_ref=None, p=1.0)(batch).logits
    torch.testing.assert_close(never[:, 0], always[:, 0])  # frame 1 sees frame 0's (always deep) update only
    assert (never[:, 1] - always[:, 1]).abs().max() > 1e-4  # frame 2 sees frame 1's deep update or not


def test_frame_0_value_deep_updates_the_hidden_state(xmem) -> None:
    """Frame 1's decoder gets the hidden state of frame 0's deep update (``hidden_reinforce`` on frame 0's
    ground-truth values, from zeros), whatever ``deep_update_prob`` says; without it frame 1 would see zeros.
    Needs no official code: the expected state is computed from the model's own encoder, outside the unroller."""
    batch = make_batch(b=2, t=3, n=2)
    seen = []
    original = xmem.segment

    def spy(readout, feats, hidden, **kwargs):
        seen.append(hidden.clone())
        return original(readout, feats, hidden, **kwargs)

    xmem.segment = spy
    try:
        with torch.no_grad():
            logits = _unroller(xmem, num_ref=None, p=0.0)(batch).logits  # frames 1.. never deep-update
            f16 = xmem.encode_key(batch.frames[:, 0]).f16  # [B, C16, h, w]
            zeros = torch.zeros(2, 2, xmem.hidden_dim, *f16.shape[-2:])  # [B, N, CH, h, w]
            _, want = xmem.encode_value(batch.frames[:, 0], f16, batch.masks[:, 0], zeros, deep_update=True)
    finally:
        del xmem.segment
    assert len(seen) == 2 and logits.shape[1] == 2
    assert want.abs().max() > 1e-3  # the deep update from zeros gives a non-zero state (so zeros would differ)
    torch.testing.assert_close(seen[0], want, rtol=1e-5, atol=1e-6)


def test_task_seeds_the_draws_per_step(xmem) -> None:
    batch = make_batch(b=2)
    task = CorrespondenceTask(_unroller(xmem), LossConfig(mode="none", **family("xmem").loss_defaults))
    with torch.no_grad():
        a = task.step(batch, step=0, seed=7)
        draws_a = task.core.last_draws
        b = task.step(batch, step=0, seed=7)
        draws_b = task.core.last_draws
        c = task.step(batch, step=0, seed=8)
        draws_c = task.core.last_draws
    assert torch.equal(a["loss"], b["loss"]) and draws_a.deep_updates == draws_b.deep_updates
    assert all(torch.equal(draws_a.memory_frames[t], draws_b.memory_frames[t]) for t in range(4, 8))
    differ = draws_a.deep_updates != draws_c.deep_updates or any(
        not torch.equal(draws_a.memory_frames[t], draws_c.memory_frames[t]) for t in range(4, 8)
    )
    assert differ and not torch.equal(a["loss"], c["loss"])


def test_xmem_dice_matches_the_xmem_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 8, 8, generator=gen)
    labels = torch.randint(0, 4, (2, 3, 8, 8), generator=gen)
    got = object_dice_loss(logits, labels)
    prob = logits.softmax(dim=2)
    for b in range(2):
        for t in range(3):
            terms = []
            for k in range(3):
                m = prob[b, t, k + 1].flatten()
                g = (labels[b, t] == k + 1).float().flatten()
                terms.append(1 - (2 * (m * g).sum() + 1) / (m.sum() + g.sum() + 1))
            torch.testing.assert_close(got[b, t], torch.stack(terms).mean())


@pytest.mark.skipif(not (REF / "model" / "trainer.py").is_file(), reason="official XMem checkout .ref/XMem absent")
@pytest.mark.parametrize("it", [0, 30_000])
def test_one_step_matches_the_official_xmem_trainer(it: int) -> None:
    from official_xmem import build_official_xmem, import_official_trainer, official_training_step

    torch.manual_seed(0)
    net, _ = build_official_xmem()
    trainer_mod = import_official_trainer()
    net.eval()
    model = build_model("xmem")
    model.load_state_dict(net.state_dict())
    model.eval()
    batch = make_batch(b=2, t=8, n=3, hw=32, seed=it)

    task = CorrespondenceTask(
        _unroller(model, num_ref=3, p=0.2), LossConfig(mode="none", **family("xmem").loss_defaults)
    )
    ours = task.step(batch, step=it, seed=1234)
    ours["loss"].backward()
    draws = task.core.last_draws
    assert any(draws.deep_updates.values()) or it == 0  # (seed 1234 draws at least one deep update at it=30000)

    official = official_training_step(
        trainer_mod,
        net,
        batch,
        it=it,
        num_ref_frames=3,
        memory_frames=draws.memory_frames,
        deep_updates=draws.deep_updates,
    )
    torch.testing.assert_close(ours["loss"].detach(), official["total_loss"].detach(), rtol=1e-5, atol=0)
    # per-frame terms, recomputed from our logits with our functions
    logits, labels = ours["outputs"].logits.detach(), batch.labels[:, 1:]
    frac = bootstrap_fraction(it, start=20_000, end=70_000, top_p=0.15)
    ce = bootstrapped_ce(logits, labels, fraction=frac, present=class_mask(batch.selector, labels, 4)).mean(dim=0)
    dice = object_dice_loss(logits, labels).mean(dim=0)
    for ti in range(1, 8):
        torch.testing.assert_close(ce[ti - 1], official[f"ce_loss_{ti}"].detach(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(dice[ti - 1], official[f"dice_loss_{ti}"].detach(), rtol=1e-5, atol=1e-7)
    assert ours["stats"]["bootstrap_p"] == pytest.approx(float(official["p"]))
    # gradients: relative to each tensor's largest entry, floored at 1e-3 of the largest gradient of the network (the
    # key projection's bias has an analytically zero gradient, 1e-9 of float noise on both sides)
    theirs = dict(net.named_parameters())
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {
        n for n, p in theirs.items() if p.grad is not None
    }
    floor = 1e-3 * max(float(p.grad.abs().max()) for p in theirs.values() if p.grad is not None)
    worst = max(
        float((p.grad - theirs[n].grad).abs().max()) / max(float(theirs[n].grad.abs().max()), floor)
        for n, p in model.named_parameters()
        if p.grad is not None
    )
    assert worst < 1e-4, f"largest gradient difference relative to the tensor's scale: {worst:.2e}"


def test_pcl_on_xmem_trains_key_shrinkage_and_selection_but_not_the_pseudo_labels(xmem) -> None:
    """Paper-mode L_PCL alone on an XMem clip: its gradient reaches the key encoder and all three key heads
    (key, shrinkage d_proj, selection e_proj) but not the decoder or value encoder; per frame, it reaches the keys
    and selection of t2, the keys and shrinkage of r, and nothing of the pseudo-label frame t1."""
    import dataclasses

    from corrvos.losses.objective import compute_losses

    batch = make_batch(b=2, t=5, n=2)
    cfg = LossConfig(mode="paper", seg_weight=0.0, ocl_weight=0.0, pcl_ramp_start=0, pcl_ramp_end=0, pcl_grid_stride=1)
    xmem.zero_grad(set_to_none=True)
    outputs = _unroller(xmem, num_ref=2, p=0.2)(batch)
    leaves = {name: getattr(outputs, name).detach().requires_grad_() for name in ("keys", "shrinkage", "selection")}
    gen = torch.Generator().manual_seed(0)
    detached = dataclasses.replace(outputs, logits=outputs.logits.detach(), **leaves)
    compute_losses(detached, batch, cfg=cfg, step=0, generator=gen).total.backward()
    r, t2 = 0, 4  # defaults r = 0, t1 = -2 (frame 3, the pseudo-label frame), t2 = -1 in a 5-frame clip

    def touched(name: str) -> set[int]:
        grad = leaves[name].grad  # [B, T, C, h, w]
        return {t for t in range(5) if grad[:, t].abs().sum() > 0}

    assert touched("keys") == {r, t2}
    assert touched("shrinkage") == {r}
    assert touched("selection") == {t2}
    # through the real network: the same loss on the unrolled outputs
    gen = torch.Generator().manual_seed(0)
    compute_losses(outputs, batch, cfg=cfg, step=0, generator=gen).total.backward()
    grads = {n: p.grad for n, p in xmem.named_parameters()}
    for name in (
        "key_proj.key_proj.weight",
        "key_proj.d_proj.weight",
        "key_proj.e_proj.weight",
        "key_encoder.conv1.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    for name, grad in grads.items():
        if name.startswith(("decoder.", "value_encoder.")):
            assert grad is None or grad.abs().sum() == 0, name
    xmem.zero_grad(set_to_none=True)
