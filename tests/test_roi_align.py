"""RoIAlign (corrvos.models.roi_align) against a scalar re-statement of torchvision's kernel and hand values."""

from __future__ import annotations

import math

import pytest
import torch

from corrvos.models.roi_align import roi_align


def _bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate for one point of a [C, H, W] map (scalar code, no vectorisation)."""
    h, w = fmap.shape[1:]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0], dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[:, y_low, x_low]
        + hy * lx * fmap[:, y_low, x_high]
        + ly * hx * fmap[:, y_high, x_low]
        + ly * lx * fmap[:, y_high, x_high]
    )


def _reference(features, boxes, out_hw, scale, sampling_ratio, aligned):
    ph, pw = out_hw
    out = torch.zeros(boxes.shape[0], features.shape[1], ph, pw, dtype=features.dtype)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sw, sh = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sw, y2 * scale - off - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for py in range(ph):
            for px in range(pw):
                acc = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(gh):
                    yy = sh + py * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = sw + px * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear(features[int(b)], yy, xx)
                out[k, :, py, px] = acc / count
    return out


BOXES = torch.tensor(
    [
        [0, 0.0, 0.0, 9.0, 7.0],  # whole map
        [1, 2.3, 1.7, 6.1, 5.4],  # interior
        [0, -3.0, -2.0, 4.0, 3.0],  # partly outside top-left
        [1, 7.5, 5.5, 12.0, 9.0],  # partly outside bottom-right
        [0, 4.2, 3.3, 4.4, 3.5],  # tiny (below one cell)
        [1, 8.6, 6.6, 8.9, 6.9],  # tiny at the far edge
        [0, 3.0, 2.0, 3.0, 2.0],  # degenerate (zero size)
    ],
    dtype=torch.float64,
)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("out_hw", [(2, 3), (1, 1)])
def test_matches_scalar_reference(aligned, sampling_ratio, out_hw):
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    got = roi_align(feats, BOXES, out_hw, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)
    want = _reference(feats, BOXES, out_hw, 1.0, sampling_ratio, aligned)
    assert got.shape == (BOXES.shape[0], 3, *out_hw)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_spatial_scale_stride16():
    torch.manual_seed(1)
    feats = torch.randn(1, 4, 6, 5, dtype=torch.float64)
    boxes = torch.tensor([[0, 10.0, 20.0, 60.0, 90.0], [0, 0.0, 0.0, 80.0, 96.0]], dtype=torch.float64)
    got = roi_align(feats, boxes, 3, spatial_scale=1 / 16, sampling_ratio=-1, aligned=True)
    torch.testing.assert_close(got, _reference(feats, boxes, (3, 3), 1 / 16, -1, True))


def test_hand_values_on_linear_map():
    # bilinear interpolation reproduces a linear function exactly: f(y, x) = 10 y + x
    h, w = 6, 8
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    feats = (10 * ys + xs)[None, None]  # [1, 1, H, W]
    box = torch.tensor([[0, 1.0, 2.0, 5.0, 4.0]], dtype=torch.float64)
    out = roi_align(feats, box, 1, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    # aligned: box shifted by -0.5, single bin: samples average to the box centre (3 - 0.5, 3 - 0.5)
    assert out.item() == pytest.approx(10 * 2.5 + 2.5)
    out = roi_align(feats, box, (2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)
    # not aligned, 2x2 bins of size (1, 2): one sample at each bin centre
    want = torch.tensor([[10 * 2.5 + 2.0, 10 * 2.5 + 4.0], [10 * 3.5 + 2.0, 10 * 3.5 + 4.0]], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], want)
    # a sample below 0 is clamped to row 0: box rows [-0.9, 0.1] -> one sample at y = -0.4 -> row 0
    box = torch.tensor([[0, 3.0, -0.9, 4.0, 0.1]], dtype=torch.float64)
    out = roi_align(feats, box, 1, spatial_scale=1.0, sampling_ratio=1, aligned=False)
    assert out.item() == pytest.approx(10 * 0.0 + 3.5)


def test_batch_index_selects_image():
    feats = torch.stack([torch.zeros(2, 4, 4), torch.ones(2, 4, 4)])  # [2, 2, 4, 4]
    boxes = torch.tensor([[1, 0.0, 0.0, 4.0, 4.0], [0, 0.0, 0.0, 4.0, 4.0]])
    out = roi_align(feats, boxes, 2)
    assert torch.all(out[0] == 1) and torch.all(out[1] == 0)


def test_empty_boxes_and_bad_shapes():
    feats = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = roi_align(feats, torch.zeros(0, 5), (2, 2))
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert feats.grad is not None and torch.all(feats.grad == 0)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(feats, torch.zeros(2, 4), 2)
    with pytest.raises(ValueError, match="features"):
        roi_align(torch.zeros(3, 4, 4), torch.zeros(1, 5), 2)


def test_gradcheck_features():
    torch.manual_seed(2)
    feats = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 0.5, 0.5, 4.5, 3.5], [1, 1.2, 0.3, 5.9, 4.8]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, (2, 2), sampling_ratio=-1), (feats,))
