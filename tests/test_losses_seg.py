"""L_SEG (bootstrapped CE + Dice), the loss ramps, LossConfig and compute_losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from corrvos.errors import ConfigError
from corrvos.losses.config import LossConfig
from corrvos.losses.objective import LossOutput, compute_losses, linear_ramp
from corrvos.losses.segmentation import bootstrap_fraction, segmentation_loss
from corrvos.models.heads import ProjectionHead
from corrvos.types import ClipBatch, ClipOutputs


def test_bootstrap_fraction_schedule():
    kw = {"start": 20_000, "end": 70_000, "top_p": 0.15}
    assert bootstrap_fraction(0, **kw) == 1.0
    assert bootstrap_fraction(19_999, **kw) == 1.0
    assert bootstrap_fraction(20_000, **kw) == pytest.approx(1.0)
    assert bootstrap_fraction(45_000, **kw) == pytest.approx(0.15 + 0.85 * 0.5)
    assert bootstrap_fraction(70_000, **kw) == pytest.approx(0.15)
    assert bootstrap_fraction(200_000, **kw) == 0.15


def test_linear_ramp():
    assert linear_ramp(0, start=30_000, end=90_000) == 0.0
    assert linear_ramp(29_999, start=30_000, end=90_000) == 0.0
    assert linear_ramp(30_000, start=30_000, end=90_000) == 0.0
    assert linear_ramp(60_000, start=30_000, end=90_000) == pytest.approx(0.5)
    assert linear_ramp(90_000, start=30_000, end=90_000) == 1.0
    assert linear_ramp(10**6, start=30_000, end=90_000) == 1.0
    assert linear_ramp(5, start=5, end=5) == 1.0 and linear_ramp(4, start=5, end=5) == 0.0


def _release_style_loss(logits, labels, selector, step, dice_weight):
    """Per-clip loop of the released LossComputer, generalised to any set of present slots."""
    b, tp = logits.shape[:2]
    total = torch.zeros((), dtype=torch.float64)
    p = bootstrap_fraction(step, start=20_000, end=70_000, top_p=0.15)
    for i in range(tp):
        for j in range(b):
            keep = [0] + [k + 1 for k in range(selector.shape[1]) if selector[j, k] > 0.5]
            lg = logits[j, i, keep].double()[None]  # [1, C', H, W]
            remap = torch.full((logits.shape[2],), -1, dtype=torch.long)
            remap[keep] = torch.arange(len(keep))
            lb = remap[labels[j, i]][None]  # [1, H, W]
            if step < 20_000:
                loss = F.cross_entropy(lg, lb)
            else:
                raw = F.cross_entropy(lg, lb, reduction="none").view(-1)
                loss = torch.topk(raw, int(raw.numel() * p)).values.mean()
            if dice_weight:
                prob = lg.softmax(1)[0]
                dice = 0.0
                for c in range(len(keep)):
                    y = (lb[0] == c).double()
                    dice += 1 - (2 * (prob[c] * y).sum() + 1) / (prob[c].sum() + y.sum() + 1 + 1e-8)
                loss = loss + dice_weight * dice / len(keep)
            total = total + loss / b
    return total


@pytest.mark.parametrize("step", [100, 20_000, 45_000, 90_000])
@pytest.mark.parametrize("dice_weight", [0.0, 0.4])
def test_segmentation_matches_release_loop(step, dice_weight):
    g = torch.Generator().manual_seed(step)
    b, tp, n, h, w = 3, 2, 3, 6, 5
    selector = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    logits = torch.randn(b, tp, n + 1, h, w, generator=g)
    labels = torch.randint(0, n + 1, (b, tp, h, w), generator=g)
    present = torch.cat([torch.ones(b, 1), selector], dim=1) > 0  # [B, N+1]
    ok = present[torch.arange(b)[:, None, None, None], labels]  # [B, T', H, W]
    labels = torch.where(ok, labels, torch.zeros_like(labels))  # labels only point to present slots
    got, frac = segmentation_loss(logits, labels, step=step, selector=selector, dice_weight=dice_weight)
    want = _release_style_loss(logits, labels, selector, step, dice_weight)
    assert frac == bootstrap_fraction(step, start=20_000, end=70_000, top_p=0.15)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_absent_slots_get_no_gradient():
    logits = torch.randn(2, 1, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 2, (2, 1, 4, 4))
    selector = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss, _ = segmentation_loss(logits, labels, step=0, selector=selector, dice_weight=0.4)
    loss.backward()
    assert torch.all(logits.grad[:, :, 2] == 0)
    assert logits.grad[:, :, :2].abs().sum() > 0


def test_labels_of_unselected_slots_stay_in_the_softmax():
    logits = torch.randn(1, 1, 3, 4, 4)
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[..., 0, 0] = 1  # slot 1 is labelled although its selector is 0; slot 2 is absent
    loss, _ = segmentation_loss(logits, labels, step=0, selector=torch.tensor([[0.0, 0.0]]))
    want = F.cross_entropy(logits[0, :, :2], labels[0])
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_segmentation_shape_error():
    with pytest.raises(ValueError, match="logits"):
        segmentation_loss(torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long), step=0)


# --- LossConfig -------------------------------------------------------------------------------------------------


def test_config_validation_and_presets():
    with pytest.raises(ConfigError, match="mode"):
        LossConfig(mode="both")
    with pytest.raises(ConfigError, match="pcl_temperature"):
        LossConfig(pcl_temperature=0)
    with pytest.raises(ConfigError, match="official_ramp_end"):
        LossConfig(official_ramp_start=10, official_ramp_end=5)
    with pytest.raises(ConfigError, match="bootstrap_top_p"):
        LossConfig(bootstrap_top_p=1.5)
    with pytest.raises(ConfigError, match=r"unknown option.*alpha"):
        LossConfig.from_dict({"alpha": 1.0})
    off = LossConfig.official()
    assert (off.mode, off.temp_weight, off.cross_key_weight, off.dice_weight) == ("official", 0.2, 0.04, 0.4)
    assert (off.official_ramp_start, off.official_ramp_end, off.temp_grid, off.cross_key_grid) == (30_000, 90_000, 8, 4)
    assert LossConfig.from_dict(off.to_dict()) == off
    assert LossConfig.paper().uses_projection_head and not off.uses_projection_head


def test_config_rejects_wrong_types_with_a_config_error():
    # from_dict promises a ConfigError for bad values; a string weight used to escape as a TypeError from `<`
    with pytest.raises(ConfigError, match=r"loss\.pcl_weight: must be float"):
        LossConfig.from_dict({"pcl_weight": "0.2"})
    with pytest.raises(ConfigError, match=r"loss\.temp_grid: must be int"):
        LossConfig.from_dict({"temp_grid": 8.5})
    with pytest.raises(ConfigError, match=r"loss\.pcl_label_within_clip: must be bool"):
        LossConfig.from_dict({"pcl_label_within_clip": "yes"})
    with pytest.raises(ConfigError, match=r"loss\.ocl_num_objects: must be int"):
        LossConfig(ocl_num_objects=True)
    assert LossConfig.from_dict({"pcl_weight": 1}).pcl_weight == 1  # an int is a valid float


# --- compute_losses ---------------------------------------------------------------------------------------------


class _TinyKeyEncoder(torch.nn.Module):
    """Stride-16 conv standing in for the key encoder: [B*T, 3, H, W] -> keys / res4."""

    def __init__(self, ck: int = 8, c4: int = 12) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, c4, kernel_size=16, stride=16)
        self.proj = torch.nn.Conv2d(c4, ck, kernel_size=1)

    def forward(self, x):
        res4 = self.conv(x)
        return self.proj(res4), res4


def _clip(seed: int = 0, b: int = 2, t: int = 3, n: int = 2, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, t, 3, size, size, generator=g)
    labels = torch.zeros(b, t, size, size, dtype=torch.long)
    labels[:, :, 4:30, 6:40] = 1
    labels[0, :, 36:60, 20:50] = 2
    masks = torch.stack([(labels == k + 1).float() for k in range(n)], dim=2)  # [B, T, N, H, W]
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    return ClipBatch(frames=frames, masks=masks, labels=labels, selector=selector)


def _outputs(batch: ClipBatch, enc: _TinyKeyEncoder, *, official: bool = False) -> ClipOutputs:
    b, t = batch.frames.shape[:2]
    keys, res4 = enc(batch.frames.flatten(0, 1))
    keys = keys.view(b, t, *keys.shape[1:])  # [B, T, CK, h, w]
    res4 = res4.view(b, t, *res4.shape[1:])  # [B, T, C4, h, w]
    logits = torch.randn(b, t - 1, batch.num_objects + 1, *batch.frames.shape[-2:], requires_grad=True)
    out = ClipOutputs(logits=logits, keys=keys, res4=res4)
    if official:
        from corrvos.losses.views import make_second_view

        frames2, theta = make_second_view(batch.frames, generator=torch.Generator().manual_seed(5))
        k2, _ = enc(frames2.flatten(0, 1))
        out.keys2 = keys
        out.view2_keys2 = k2.view(b, t, *k2.shape[1:])
        out.view2_theta = theta
    return out


def test_compute_losses_paper_terms_weights_and_gradients():
    torch.manual_seed(0)
    batch, enc = _clip(), _TinyKeyEncoder()
    head = ProjectionHead(in_dim=12, hidden_dim=16, out_dim=8)
    cfg = LossConfig(
        mode="paper",
        pcl_grid_stride=2,
        pcl_ramp_start=0,
        pcl_ramp_end=100,
        ocl_ramp_start=50,
        ocl_ramp_end=150,
        ocl_roi_size=3,
    )
    out = compute_losses(
        _outputs(batch, enc), batch, cfg=cfg, step=100, proj_head=head, generator=torch.Generator().manual_seed(0)
    )
    assert isinstance(out, LossOutput)
    assert set(out.terms) == {"seg", "pcl", "ocl"}
    assert out.weights == pytest.approx({"seg": 1.0, "pcl": 0.2, "ocl": 0.1 * 0.5})
    want = sum(out.weights[k] * out.terms[k] for k in out.terms)
    assert out.total.item() == pytest.approx(want.item(), rel=1e-6)
    assert out.stats["ocl_matched"] == 3.0  # clip 0: 2 objects in p and q, clip 1: 1
    out.total.backward()
    assert enc.proj.weight.grad.abs().sum() > 0  # L_PCL reaches the key projection
    assert enc.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_compute_losses_same_seed_same_result_and_modes():
    torch.manual_seed(0)
    batch, enc = _clip(), _TinyKeyEncoder()
    head = ProjectionHead(in_dim=12, hidden_dim=16, out_dim=8)
    outputs = _outputs(batch, enc, official=True)
    for mode, names in (
        ("none", {"seg"}),
        ("paper", {"seg", "pcl", "ocl"}),
        ("official", {"seg", "temp", "cross_key"}),
    ):
        cfg = LossConfig(mode=mode, pcl_grid_stride=2)
        runs = [
            compute_losses(
                outputs, batch, cfg=cfg, step=60_000, proj_head=head, generator=torch.Generator().manual_seed(3)
            )
            for _ in range(2)
        ]
        assert set(runs[0].terms) == names
        assert runs[0].total.item() == runs[1].total.item()
    off = compute_losses(
        outputs, batch, cfg=LossConfig.official(), step=60_000, generator=torch.Generator().manual_seed(3)
    )
    assert off.weights == pytest.approx({"seg": 1.0, "temp": 0.1, "cross_key": 0.02})


def test_compute_losses_missing_inputs():
    batch, enc = _clip(), _TinyKeyEncoder()
    outputs = _outputs(batch, enc)
    with pytest.raises(ValueError, match="proj_head"):
        compute_losses(outputs, batch, cfg=LossConfig(mode="paper"), step=0)
    with pytest.raises(ValueError, match="view2_keys2"):
        compute_losses(outputs, batch, cfg=LossConfig(mode="official"), step=0)
    with pytest.raises(ValueError, match="pcl_remote_frame"):
        compute_losses(outputs, batch, cfg=LossConfig(mode="paper", pcl_remote_frame=5, ocl_weight=0), step=0)
