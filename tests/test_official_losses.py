"""The released code's temp / cross_key losses and the second view, against explicit per-pixel computations."""

from __future__ import annotations

import math

import pytest
import torch

from corrvos.losses.official import cross_key_loss, neg_sq_l2_affinity, official_grid_index, temp_loss
from corrvos.losses.views import align_to_view2, make_second_view, sample_view_theta


def _nearest_source(theta_b, i, j, h, w):
    """View-1 pixel read by grid_sample(nearest, align_corners=False) for view-2 pixel (i, j); None if outside."""
    ux, uy = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
    x1 = theta_b[0][0] * ux + theta_b[0][1] * uy + theta_b[0][2]
    y1 = theta_b[1][0] * ux + theta_b[1][1] * uy + theta_b[1][2]
    px, py = round(((x1 + 1) * w - 1) / 2), round(((y1 + 1) * h - 1) / 2)
    return (py, px) if 0 <= px < w and 0 <= py < h else None


def _aff(u, v):
    return -((u - v) ** 2).sum() / math.sqrt(u.numel())


def _explicit_temp(k1, k2, theta, index, eps):
    b, t, _, h, w = k1.shape
    anchors = [(bb, k1[bb, 0, :, idx // w, idx % w].double()) for bb in range(b) for idx in index[bb].tolist()]
    n = index.shape[1]
    errs = []
    for bb in range(b):
        for tt in range(1, t):
            for i in range(h):
                for j in range(w):
                    src = _nearest_source(theta[bb].tolist(), i, j, h, w)
                    if src is None:
                        student = torch.zeros(len(anchors), dtype=torch.float64)
                    else:
                        q = k1[bb, tt, :, src[0], src[1]].double()
                        student = torch.stack([_aff(q, a) for _, a in anchors])
                    q2 = k2[bb, tt, :, i, j].double()
                    own = torch.stack([_aff(q2, a) for _, a in anchors[bb * n : (bb + 1) * n]])
                    label = bb * n + int(own.argmax())
                    errs.append(-torch.log(student.softmax(0)[label] + eps))
    return torch.stack(errs).mean()


def _keys(seed, b=2, t=3, c=4, h=6, w=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, h, w, generator=g), torch.randn(b, t, c, h, w, generator=g)


def test_neg_sq_l2_affinity():
    a, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    want = -(torch.cdist(a.t(), b.t()) ** 2) / math.sqrt(5)
    torch.testing.assert_close(neg_sq_l2_affinity(a, b), want)


@pytest.mark.parametrize("theta_kind", ["identity", "flip", "random"])
def test_temp_matches_explicit_computation(theta_kind):
    k1, k2 = _keys(0)
    if theta_kind == "identity":
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    elif theta_kind == "flip":
        theta = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    else:
        theta = sample_view_theta(2, generator=torch.Generator().manual_seed(3))
    index = official_grid_index(6, 6, grid=3, batch=2, generator=torch.Generator().manual_seed(1))
    got = temp_loss(k1, k2, theta, anchor_index=index, eps=1e-8)
    want = _explicit_temp(k1, k2, theta, index, 1e-8)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_temp_teacher_gets_no_gradient():
    k1, k2 = _keys(1)
    k1.requires_grad_(True)
    k2.requires_grad_(True)
    theta = sample_view_theta(2, generator=torch.Generator().manual_seed(0))
    temp_loss(k1, k2, theta, grid=3, generator=torch.Generator().manual_seed(0)).backward()
    assert k1.grad.abs().sum() > 0
    assert k2.grad is None or torch.all(k2.grad == 0)


@pytest.mark.parametrize("theta_kind", ["flip", "random"])
def test_cross_key_matches_explicit_computation(theta_kind):
    k1, k2 = _keys(2, t=1, h=8, w=8)
    k1, k2 = k1[:, 0], k2[:, 0]
    if theta_kind == "flip":
        theta = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    else:
        theta = sample_view_theta(2, generator=torch.Generator().manual_seed(4))
    index = official_grid_index(8, 8, grid=4, batch=2, generator=torch.Generator().manual_seed(5))
    got = cross_key_loss(k1, k2, theta, index=index)
    xs, ys = [], []
    for b in range(2):
        for idx in index[b].tolist():
            i, j = divmod(idx, 8)
            src = _nearest_source(theta[b].tolist(), i, j, 8, 8)
            xs.append(k1[b, :, src[0], src[1]].double())
            ys.append(k2[b, :, i, j].double())
    logits = torch.stack([torch.stack([_aff(x, y) for y in ys]) for x in xs])  # [K, K]
    want = -torch.log(logits.softmax(1).diagonal() + 1e-8).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    k1.requires_grad_(True)
    k2.requires_grad_(True)
    cross_key_loss(k1, k2, theta, index=index).backward()
    assert k1.grad.abs().sum() > 0 and k2.grad.abs().sum() > 0  # both views are trained


def test_official_grid_index():
    idx = official_grid_index(24, 24, grid=8, batch=3, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (3, 64)
    ys, xs = idx // 24, idx % 24
    assert torch.all(torch.diff(xs.view(3, 8, 8), dim=2) == 3) and torch.all(xs[:, 0] < 3)
    assert torch.all(torch.diff(ys.view(3, 8, 8), dim=1) == 3) and torch.all(ys[:, 0] < 3)
    assert official_grid_index(3, 5, grid=4, batch=1).shape == (1, 12)  # small maps: one point per cell


def test_sample_view_theta_ranges_and_reproducible():
    theta = sample_view_theta(400, generator=torch.Generator().manual_seed(0))
    s = theta[:, 1, 1]
    flip = torch.sign(theta[:, 0, 0])
    assert torch.all((s >= 0.5) & (s <= 1.0))
    torch.testing.assert_close(theta[:, 0, 0].abs(), s)
    assert torch.all(theta[:, 0, 1] == 0) and torch.all(theta[:, 1, 0] == 0)
    assert torch.all((theta[:, 0, 2] * flip).abs() <= 1 - s + 1e-6) and torch.all(theta[:, 1, 2].abs() <= 1 - s + 1e-6)
    assert 150 < int((flip < 0).sum()) < 250
    again = sample_view_theta(400, generator=torch.Generator().manual_seed(0))
    assert torch.equal(theta, again)


def test_make_second_view_geometry_on_linear_image():
    h, w = 8, 10
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    img = 3.0 * xs - 2.0 * ys + 1.0  # bilinear sampling is exact on a linear image
    frames = img.expand(2, 2, 3, h, w).clone()  # [B, T, 3, H, W]
    frames2, theta = make_second_view(frames, generator=torch.Generator().manual_seed(6))
    assert frames2.shape == frames.shape and theta.shape == (2, 2, 3)
    for b in range(2):
        th = theta[b].double()
        ux = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
        uy = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
        x1 = th[0, 0] * ux + th[0, 2]  # [W]
        y1 = th[1, 1] * uy + th[1, 2]  # [H]
        px = (((x1 + 1) * w - 1) / 2).clamp(0, w - 1)
        py = (((y1 + 1) * h - 1) / 2).clamp(0, h - 1)
        want = 3.0 * px[None, :] - 2.0 * py[:, None] + 1.0
        for t in range(2):
            torch.testing.assert_close(frames2[b, t, 0], want, rtol=1e-6, atol=1e-6)


def test_second_view_replays_the_release_flip_then_crop():
    """An exact replay of the draws (per clip: flip if u0 < 0.5, s = 0.5 + 0.5 u1, window centre (1 - s)(2 u2 - 1),
    (1 - s)(2 u3 - 1)): the release flips the frame first and then crops the *flipped* frame around that centre.
    Computed here without theta, on a linear image where bilinear sampling is exact. Cropping the unflipped frame
    at the centre and flipping after (the crop's x translation with the wrong sign for flipped clips) gives the same
    distribution of views, but other views for these draws."""
    h, w, b = 8, 10, 6
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    img = 3.0 * xs - 2.0 * ys + 1.0  # [H, W], linear in the pixel coordinates
    frames = img.expand(b, 2, 3, h, w).clone()  # [B, T, 3, H, W]
    frames2, _ = make_second_view(frames, generator=torch.Generator().manual_seed(4))
    u = torch.rand(b, 4, generator=torch.Generator().manual_seed(4)).double()  # the same draws, replayed
    flipped = u[:, 0] < 0.5
    s = 0.5 + 0.5 * u[:, 1]
    cx, cy = (1 - s) * (2 * u[:, 2] - 1), (1 - s) * (2 * u[:, 3] - 1)
    assert 0 < int(flipped.sum()) < b and torch.all(cx[flipped].abs() > 0.02)  # the seed tests both kinds of clip
    ux = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1  # [W] view-2 pixel centres, normalised
    uy = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1  # [H]
    for bi in range(b):
        src = img.flip(-1) if flipped[bi] else img  # the frame the window is cut from
        px = (((s[bi] * ux + cx[bi] + 1) * w - 1) / 2).clamp(0, w - 1)  # [W] window columns in src
        py = (((s[bi] * uy + cy[bi] + 1) * h - 1) / 2).clamp(0, h - 1)  # [H]
        # src is linear too: its value at (py, px) from its corner and its steps
        want = src[0, 0] + (src[0, 1] - src[0, 0]) * px[None, :] + (src[1, 0] - src[0, 0]) * py[:, None]  # [H, W]
        for t in range(2):
            torch.testing.assert_close(frames2[bi, t, 0], want, rtol=1e-6, atol=1e-6)


def test_align_pure_flip_and_shapes():
    x = torch.randn(2, 3, 4, 5, 6)
    theta = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    torch.testing.assert_close(align_to_view2(x, theta), x.flip(-1))
    torch.testing.assert_close(align_to_view2(x[:, 0], theta), x[:, 0].flip(-1))
    with pytest.raises(ValueError, match="align_to_view2"):
        align_to_view2(torch.zeros(2, 3), theta)
