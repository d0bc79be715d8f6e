"""L_PCL (Algorithm S1) against an explicit per-pixel computation, its grid sampling and its gradients."""

from __future__ import annotations

import math

import pytest
import torch

from corrvos.losses.pixel_consistency import pixel_consistency_loss, sample_grid_index


def _explicit_affinities(k_t, k_r, grid_index, temperature):
    """A(i, j) for every pixel i of the batch and grid point j of the batch, by explicit sums (float64)."""
    b, c, h, w = k_t.shape
    pts = []  # grid keys, clip-major
    for bi in range(b):
        for idx in grid_index[bi].tolist():
            pts.append(k_r[bi, :, idx // w, idx % w].double())
    rows = []
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                q = k_t[bi, :, y, x].double()
                s = [(2 * (p * q).sum() - (p * p).sum()) / math.sqrt(c) / temperature for p in pts]
                rows.append(torch.stack(s).softmax(0))
    return torch.stack(rows)  # [B*h*w, B*n]


def _keys(seed, b=2, c=4, h=5, w=6):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, h, w, generator=g) for _ in range(3)]


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_identical_frames_give_mean_neg_log_max(temperature):
    k_t, _, k_r = _keys(0)
    index = torch.tensor([[0, 2, 13, 29], [5, 7, 20, 22]])
    loss = pixel_consistency_loss(k_t, k_t.clone(), k_r, temperature=temperature, grid_index=index)
    a = _explicit_affinities(k_t, k_r, index, temperature)
    want = -a.max(dim=1).values.log().mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("within_clip", [False, True])
def test_matches_explicit_computation(within_clip):
    k_t1, k_t2, k_r = _keys(1)
    index = torch.tensor([[1, 8, 15, 28], [0, 3, 12, 27]])
    a1 = _explicit_affinities(k_t1, k_r, index, 1.0)
    a2 = _explicit_affinities(k_t2, k_r, index, 1.0)
    hw, n = 30, 4
    if within_clip:  # argmax among the clip's own grid points only
        labels = torch.stack(
            [a1[i, (i // hw) * n : (i // hw + 1) * n].argmax() + (i // hw) * n for i in range(a1.shape[0])]
        )
    else:
        labels = a1.argmax(dim=1)
    want = -a2[torch.arange(a2.shape[0]), labels].log().mean()
    loss = pixel_consistency_loss(k_t1, k_t2, k_r, grid_index=index, label_within_clip=within_clip)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_other_clips_are_negatives():
    k_t1, k_t2, k_r = _keys(2)
    index = torch.tensor([[0, 7], [3, 9]])
    both = pixel_consistency_loss(k_t1, k_t2, k_r, grid_index=index)
    alone = [
        pixel_consistency_loss(k_t1[i : i + 1], k_t2[i : i + 1], k_r[i : i + 1], grid_index=index[i : i + 1])
        for i in range(2)
    ]
    # without cross-clip negatives the batch loss would be the mean of the per-clip losses
    assert both.item() != pytest.approx((alone[0].item() + alone[1].item()) / 2, rel=1e-4)


def test_grid_sampling_reproducible_and_inside():
    h, w, stride = 11, 13, 4
    a = sample_grid_index(
        h,
        w,
        batch=6,
        num_y=h // stride,
        num_x=w // stride,
        stride_y=stride,
        stride_x=stride,
        generator=torch.Generator().manual_seed(7),
    )
    b = sample_grid_index(
        h,
        w,
        batch=6,
        num_y=h // stride,
        num_x=w // stride,
        stride_y=stride,
        stride_x=stride,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.equal(a, b)
    assert a.shape == (6, (h // stride) * (w // stride))
    assert a.min() >= 0 and a.max() < h * w
    ys, xs = a // w, a % w
    # a regular grid: constant spacing `stride`, one offset per clip in [0, stride)
    assert torch.all(torch.diff(xs.view(6, 2, 3), dim=2) == stride)
    assert torch.all(torch.diff(ys.view(6, 2, 3), dim=1) == stride)
    assert torch.all(xs[:, 0] < stride) and torch.all(ys[:, 0] < stride)
    seeds = {
        tuple(
            sample_grid_index(
                h,
                w,
                batch=1,
                num_y=2,
                num_x=3,
                stride_y=stride,
                stride_x=stride,
                generator=torch.Generator().manual_seed(s),
            )[0].tolist()
        )
        for s in range(20)
    }
    assert len(seeds) > 1
    with pytest.raises(ValueError, match="does not fit"):
        sample_grid_index(4, 4, batch=1, num_y=3, num_x=1, stride_y=2, stride_x=1)


def _alg_s1_grid(seed, batch, h, w, stride):
    """Alg. S1's grid: x offsets, then y offsets, each ``randint(0, R, (B,))``; floor(h / R) x floor(w / R) points."""
    g = torch.Generator().manual_seed(seed)
    off_x = torch.randint(0, stride, (batch,), generator=g)
    off_y = torch.randint(0, stride, (batch,), generator=g)
    rows = [
        [(oy + stride * i) * w + ox + stride * j for i in range(h // stride) for j in range(w // stride)]
        for oy, ox in zip(off_y.tolist(), off_x.tolist(), strict=True)
    ]
    return torch.tensor(rows), off_x, off_y


def test_grid_offsets_replay_alg_s1_draws_and_reach_the_last_cell():
    """Alg. S1 draws one x offset, then one y offset per clip, uniformly in [0, R - 1]: replaying those draws from the
    same generator gives exactly the sampled grid (and the loss's own grid), and over 64 clips every offset
    0 .. R - 1 occurs on both axes (a draw in [0, R - 2] never reaches the stride's last cell)."""
    h, w, stride, batch = 16, 24, 4, 64
    index = sample_grid_index(
        h,
        w,
        batch=batch,
        num_y=4,
        num_x=6,
        stride_y=stride,
        stride_x=stride,
        generator=torch.Generator().manual_seed(3),
    )
    want, off_x, off_y = _alg_s1_grid(3, batch, h, w, stride)
    assert torch.equal(index, want)
    assert set(off_x.tolist()) == set(off_y.tolist()) == set(range(stride))
    assert set((index[:, 0] % w).tolist()) == set((index[:, 0] // w).tolist()) == {0, 1, 2, 3}
    # a map smaller than the stride: one point per clip, anywhere in the map
    small = sample_grid_index(
        3, 3, batch=batch, num_y=1, num_x=1, stride_y=8, stride_x=8, generator=torch.Generator().manual_seed(3)
    )
    assert set((small[:, 0] % 3).tolist()) == set((small[:, 0] // 3).tolist()) == {0, 1, 2}
    # the loss draws its grid the same way (stride 4 on a 16 x 24 map: 4 x 6 points per clip)
    k_t1, k_t2, k_r = _keys(6, b=3, h=h, w=w)
    drawn = pixel_consistency_loss(k_t1, k_t2, k_r, stride=stride, generator=torch.Generator().manual_seed(5))
    explicit = pixel_consistency_loss(k_t1, k_t2, k_r, grid_index=_alg_s1_grid(5, 3, h, w, stride)[0])
    assert drawn.item() == explicit.item()


def test_small_maps_and_generator_path():
    k_t1, k_t2, k_r = _keys(3, h=3, w=3)
    loss = pixel_consistency_loss(k_t1, k_t2, k_r, stride=8, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)  # stride larger than the map: one point per clip
    one = pixel_consistency_loss(k_t1, k_t2, k_r, stride=8, generator=torch.Generator().manual_seed(0))
    assert loss.item() == one.item()
    with pytest.raises(ValueError, match="keys"):
        pixel_consistency_loss(k_t1, k_t2[:, :2], k_r)


def test_gradients_reach_key_encoder_not_pseudo_labels():
    torch.manual_seed(4)
    enc = torch.nn.Conv2d(3, 4, kernel_size=4, stride=4)  # a stand-in key encoder
    frames = torch.randn(2, 3, 3, 20, 24)  # [B, T, 3, H, W]
    keys = enc(frames.flatten(0, 1)).view(2, 3, 4, 5, 6)  # [B, T, CK, h, w]
    keys.retain_grad()
    loss = pixel_consistency_loss(
        keys[:, 1], keys[:, 2], keys[:, 0], stride=2, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
    assert torch.all(keys.grad[:, 1] == 0)  # t1 only produces the pseudo-labels
    assert keys.grad[:, 2].abs().sum() > 0 and keys.grad[:, 0].abs().sum() > 0


def _explicit_xmem_affinities(k_t, k_r, grid_index, shrink_r, sel_t):
    """XMem's anisotropic L2 A(i, j) = softmax_j(-s_j sum_c e_ic (k_jc - q_ic)^2 / sqrt(C)), explicit (float64)."""
    b, c, h, w = k_t.shape
    pts = []  # (grid key, its shrinkage), clip-major
    for bi in range(b):
        for idx in grid_index[bi].tolist():
            pts.append((k_r[bi, :, idx // w, idx % w].double(), shrink_r[bi, 0, idx // w, idx % w].double()))
    rows = []
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                q, e = k_t[bi, :, y, x].double(), sel_t[bi, :, y, x].double()
                s = [-sp * (e * (p - q) ** 2).sum() / math.sqrt(c) for p, sp in pts]
                rows.append(torch.stack(s).softmax(0))
    return torch.stack(rows)  # [B*h*w, B*n]


def test_xmem_similarity_matches_explicit_and_trains_the_right_heads():
    """With XMem's terms the grid points (frame r) carry the shrinkage and the query pixels (t1, t2) the selection;
    a wiring that swapped them, or used t2's selection for the pseudo-labels, gives another loss."""
    k_t1, k_t2, k_r = _keys(4)
    g = torch.Generator().manual_seed(9)
    shrink = [torch.rand(2, 1, 5, 6, generator=g) * 2 + 1 for _ in range(3)]  # s >= 1 of t1, t2, r
    sel = [torch.rand(2, 4, 5, 6, generator=g) for _ in range(3)]  # e in [0, 1] of t1, t2, r
    index = torch.tensor([[1, 8, 15, 28], [0, 3, 12, 27]])
    a1 = _explicit_xmem_affinities(k_t1, k_r, index, shrink[2], sel[0])
    a2 = _explicit_xmem_affinities(k_t2, k_r, index, shrink[2], sel[1])
    want = -a2[torch.arange(a2.shape[0]), a1.argmax(dim=1)].log().mean()
    leaves = [t.clone().requires_grad_(True) for t in (k_t1, k_t2, k_r, shrink[2], sel[0], sel[1])]
    loss = pixel_consistency_loss(
        *leaves[:3], grid_index=index, shrinkage_r=leaves[3], selection_t1=leaves[4], selection_t2=leaves[5]
    )
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert loss.item() != pytest.approx(pixel_consistency_loss(k_t1, k_t2, k_r, grid_index=index).item(), rel=1e-3)
    swapped = pixel_consistency_loss(
        k_t1, k_t2, k_r, grid_index=index, shrinkage_r=shrink[2], selection_t1=sel[1], selection_t2=sel[0]
    )
    assert swapped.item() != pytest.approx(want.item(), rel=1e-4)
    loss.backward()
    k1, k2, kr, sr, e1, e2 = (t.grad for t in leaves)
    assert k1 is None and e1 is None  # the pseudo-label side receives no gradient
    assert all(t is not None and t.abs().sum() > 0 for t in (k2, kr, sr, e2))
