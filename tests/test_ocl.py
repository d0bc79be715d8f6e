"""L_OCL (Algorithm S2): boxes, subsets, the Hungarian step, the cross-batch NLL with per-clip offsets, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrvos.losses.object_coherence import (
    boxes_from_masks,
    hungarian_match,
    object_coherence_loss,
    object_embeddings,
    random_subset,
)
from corrvos.models.heads import ProjectionHead

C4, SIZE = 6, 64  # res4 channels, image side (feature side 4)


def _masks(spec, n=3):
    """spec: per clip, list of (slot, y1, y2, x1, x2) boxes -> [B, N, H, W] masks."""
    m = torch.zeros(len(spec), n, SIZE, SIZE)
    for b, objs in enumerate(spec):
        for slot, y1, y2, x1, x2 in objs:
            m[b, slot, y1:y2, x1:x2] = 1.0
    return m


def _setup(seed=0, b=2):
    torch.manual_seed(seed)
    head = ProjectionHead(in_dim=C4, hidden_dim=10, out_dim=5)
    res4_p = torch.randn(b, C4, SIZE // 16, SIZE // 16, requires_grad=True)
    res4_q = torch.randn(b, C4, SIZE // 16, SIZE // 16, requires_grad=True)
    return head, res4_p, res4_q


def test_boxes_from_masks():
    m = torch.zeros(3, 8, 10)
    m[0, 2:5, 3:7] = 1
    m[1, 6, 9] = 1  # one pixel in the corner
    boxes, nonempty = boxes_from_masks(m)
    torch.testing.assert_close(boxes, torch.tensor([[3.0, 2.0, 7.0, 5.0], [9.0, 6.0, 10.0, 7.0], [0, 0, 1, 1]]))
    assert nonempty.tolist() == [True, True, False]


def _brute_force_min(cost):
    r, c = cost.shape
    best = np.inf
    if r <= c:
        for perm in itertools.permutations(range(c), r):
            best = min(best, sum(cost[i, perm[i]] for i in range(r)))
    else:
        for perm in itertools.permutations(range(r), c):
            best = min(best, sum(cost[perm[j], j] for j in range(c)))
    return best


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (4, 4), (2, 3), (3, 2), (1, 4), (4, 2)])
def test_hungarian_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(10):
        cost = rng.normal(size=shape)
        rows, cols = hungarian_match(cost)
        assert len(rows) == min(shape) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(_brute_force_min(cost))


def test_object_embeddings_sample_res4_at_stride_16():
    """Boxes are in image pixels and res4 is at stride 16: on a res4 map that is linear in the cell coordinates
    (channel 0 = row, channel 1 = column), bilinear RoIAlign is exact, so with PROJ = identity the embedding is the
    box centre in res4 cells, (x1 + x2) / 32 - 1/2 (aligned=True). Stride 8 would double every coordinate and put
    the lower / right boxes outside the map (zeros)."""
    h = w = 8  # res4 of a 128 x 128 image
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    res4 = torch.stack([rows, cols, torch.ones(h, w, dtype=torch.float64)])[None]  # [1, 3, h, w]
    boxes = torch.tensor(
        [[[16.0, 24.0, 40.0, 48.0], [80.0, 90.0, 110.0, 120.0], [8.0, 72.0, 30.0, 112.0], [64.0, 8.0, 100.0, 24.0]]],
        dtype=torch.float64,
    )  # [1, 4, 4] (x1, y1, x2, y2); every box stays inside [0, 7] cells at stride 16
    emb = object_embeddings(res4, boxes, torch.nn.Identity(), roi_size=3, sampling_ratio=2)  # [1, 4, 3]
    x1, y1, x2, y2 = boxes[0].unbind(1)
    want = torch.stack([(y1 + y2) / 32 - 0.5, (x1 + x2) / 32 - 0.5, torch.ones(4, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(emb[0], want, rtol=0, atol=1e-12)


def test_random_subset():
    valid = torch.tensor([[True, True, True, False], [False, True, False, False], [False] * 4])
    for seed in range(5):
        sub = random_subset(valid, 2, generator=torch.Generator().manual_seed(seed))
        assert torch.all(~sub | valid)
        assert sub.sum(1).tolist() == [2, 1, 0]
    a = random_subset(valid, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, random_subset(valid, 2, generator=torch.Generator().manual_seed(1)))
    picks = {tuple(random_subset(valid, 2, generator=torch.Generator().manual_seed(s))[0].tolist()) for s in range(30)}
    assert len(picks) == 3  # every 2-subset of the three valid entries shows up


def _independent_loss(res4_p, res4_q, masks_p, masks_q, head, temperature, similarity):
    """Embeddings from the shared pieces; matching by brute force; NLL over all q objects written out."""
    bp, vp = boxes_from_masks(masks_p)
    bq, vq = boxes_from_masks(masks_q)
    o_p = object_embeddings(res4_p, bp, head, roi_size=3, sampling_ratio=2).detach().double()
    o_q = object_embeddings(res4_q, bq, head, roi_size=3, sampling_ratio=2).detach().double()
    q_list = [(b, m) for b in range(vq.shape[0]) for m in range(vq.shape[1]) if vq[b, m]]  # clip-major
    terms = []
    for b in range(vp.shape[0]):
        ps = [n for n in range(vp.shape[1]) if vp[b, n]]
        qs = [m for m in range(vq.shape[1]) if vq[b, m]]
        if not ps or not qs:
            continue
        cos = F.normalize(o_p[b], dim=1) @ F.normalize(o_q[b], dim=1).t()
        best, best_pairs = -np.inf, None
        for perm in itertools.permutations(qs, min(len(ps), len(qs))):
            for chosen in itertools.permutations(ps, len(perm)):
                score = sum(cos[n, m].item() for n, m in zip(chosen, perm, strict=True))
                if score > best + 1e-12:
                    best, best_pairs = score, list(zip(chosen, perm, strict=True))
        for n, m in best_pairs:

            def sim(u, v):
                if similarity == "cosine":
                    return (F.normalize(u, dim=0) * F.normalize(v, dim=0)).sum() / temperature
                return (u * v).sum() / temperature

            logits = torch.stack([sim(o_p[b, n], o_q[bb, mm]) for bb, mm in q_list])
            terms.append(-logits.log_softmax(0)[q_list.index((b, m))])
    return torch.stack(terms).mean(), len(terms)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_matches_independent_computation_with_uneven_q_counts(similarity):
    head, res4_p, res4_q = _setup(1, b=3)
    # q objects per clip: 1, 3, 2 -> label offsets 0, 1, 4 (the pseudocode's b * B offsets would be wrong)
    masks_p = _masks(
        [
            [(0, 0, 20, 0, 20), (1, 30, 60, 30, 60)],
            [(0, 5, 25, 5, 60), (1, 40, 64, 0, 30), (2, 30, 50, 40, 64)],
            [(0, 0, 64, 0, 30), (2, 10, 30, 35, 60)],
        ]
    )
    masks_q = _masks(
        [
            [(1, 2, 22, 2, 22)],
            [(0, 8, 28, 4, 58), (1, 38, 62, 2, 34), (2, 28, 52, 38, 62)],
            [(0, 0, 60, 0, 34), (2, 12, 34, 30, 62)],
        ]
    )
    res = object_coherence_loss(
        res4_p,
        res4_q,
        masks_p,
        masks_q,
        head,
        num_objects=3,
        roi_size=3,
        similarity=similarity,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    want, count = _independent_loss(res4_p, res4_q, masks_p, masks_q, head, 0.5, similarity)
    assert res.num_matched == count == 1 + 3 + 2
    assert res.loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_permuting_object_ids_leaves_loss_unchanged():
    head, res4_p, res4_q = _setup(2)
    spec_p = [[(0, 0, 20, 0, 20), (1, 30, 60, 30, 60), (2, 0, 30, 40, 64)], [(0, 10, 50, 10, 50)]]
    spec_q = [[(0, 4, 24, 4, 24), (1, 28, 58, 28, 58), (2, 2, 32, 38, 62)], [(0, 12, 52, 8, 48)]]
    masks_p, masks_q = _masks(spec_p), _masks(spec_q)
    selector = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    base = object_coherence_loss(
        res4_p,
        res4_q,
        masks_p,
        masks_q,
        head,
        selector=selector,
        roi_size=3,
        generator=torch.Generator().manual_seed(0),
    ).loss
    perm_p, perm_q = torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0])  # independent relabelling of p and q
    masks_p2, masks_q2 = masks_p.clone(), masks_q.clone()
    masks_p2[0] = masks_p[0, perm_p]
    masks_q2[0] = masks_q[0, perm_q]
    other = object_coherence_loss(
        res4_p,
        res4_q,
        masks_p2,
        masks_q2,
        head,
        selector=selector,
        roi_size=3,
        generator=torch.Generator().manual_seed(9),
    ).loss
    assert other.item() == pytest.approx(base.item(), rel=1e-6)


def test_clip_without_q_objects_is_skipped():
    head, res4_p, res4_q = _setup(3)
    masks_p = _masks([[(0, 0, 30, 0, 30), (1, 30, 64, 30, 64)], [(0, 10, 40, 10, 40)]])
    masks_q = _masks([[(0, 2, 32, 2, 32), (1, 28, 60, 28, 60)], []])
    res = object_coherence_loss(res4_p, res4_q, masks_p, masks_q, head, roi_size=3)
    alone = object_coherence_loss(res4_p[:1], res4_q[:1], masks_p[:1], masks_q[:1], head, roi_size=3)
    assert res.num_matched == 2 and res.pairs[1] == []
    assert res.loss.item() == pytest.approx(alone.loss.item(), rel=1e-6)


def test_nothing_matchable_gives_zero_with_graph():
    head, res4_p, res4_q = _setup(4)
    masks_p = _masks([[(0, 0, 30, 0, 30)], []])
    masks_q = _masks([[], [(0, 0, 30, 0, 30)]])
    res = object_coherence_loss(res4_p, res4_q, masks_p, masks_q, head, roi_size=3)
    assert res.num_matched == 0 and res.loss.item() == 0.0 and res.loss.requires_grad
    res.loss.backward()
    assert all(p.grad is not None and torch.all(p.grad == 0) for p in head.parameters())
    empty = object_coherence_loss(
        res4_p, res4_q, torch.zeros(2, 0, SIZE, SIZE), torch.zeros(2, 0, SIZE, SIZE), head, roi_size=3
    )  # no object slots at all
    assert empty.loss.item() == 0.0 and empty.loss.requires_grad


def test_subset_size_tiny_objects_and_gradients():
    head, res4_p, res4_q = _setup(5)
    masks_p = _masks([[(0, 0, 20, 0, 20), (1, 30, 60, 30, 60), (2, 40, 41, 5, 6)], [(0, 10, 12, 10, 13)]])
    masks_q = _masks([[(0, 4, 24, 4, 24), (1, 28, 58, 28, 58), (2, 41, 42, 6, 7)], [(0, 11, 12, 11, 12)]])
    res = object_coherence_loss(
        res4_p, res4_q, masks_p, masks_q, head, num_objects=2, roi_size=3, generator=torch.Generator().manual_seed(0)
    )
    assert res.num_matched == 3  # 2 of 3 drawn in clip 0, the single object of clip 1
    assert len(res.pairs[0]) == 2 and len(res.pairs[1]) == 1
    assert torch.isfinite(res.loss)
    res.loss.backward()
    assert res4_p.grad.abs().sum() > 0 and res4_q.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in head.parameters())
