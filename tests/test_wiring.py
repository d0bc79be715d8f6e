"""Loss wiring of the STCN training path: which frames / views / tensors feed each loss, with which randomness,
gradients and schedules, and the clip unroller's recurrence.

The loss functions themselves are checked against explicit computations in test_pcl.py, test_ocl.py,
test_official_losses.py and test_losses_seg.py; here every input is made different per frame (and per view), so a
wiring that picks another frame, view, tensor, step or random stream gives another value and fails:

- ``compute_losses`` equals the loss functions called directly on exactly the configured frames / views, and
  differs from every other assignment of frames / views;
- grid offsets (L_PCL, temp, cross_key), object subsets and second views are drawn per clip, from the generator;
- gradients reach exactly the tensors the losses document (t2 and r of L_PCL, not t1; p and q of L_OCL and PROJ;
  both views' frame 0 in cross_key, only view 1 in temp), and through the unroller the key encoder / projections;
- the bootstrap, ramp, max-skip and lr schedules switch at the exact step;
- the unroller segments frame t from the memory of frames 0..t-1, frame 0's value from the ground truth and later
  values from the predicted soft masks with gradient.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

import corrvos.losses.official as official_mod
import corrvos.losses.pixel_consistency as pcl_mod
from corrvos.data.sampling import SkipCurriculum
from corrvos.losses.config import LossConfig
from corrvos.losses.object_coherence import object_coherence_loss, random_subset
from corrvos.losses.objective import compute_losses
from corrvos.losses.official import cross_key_loss, official_grid_index, temp_loss
from corrvos.losses.pixel_consistency import pixel_consistency_loss, sample_grid_index
from corrvos.losses.views import make_second_view, sample_view_theta
from corrvos.models.heads import ProjectionHead
from corrvos.training.data import StepBatchSampler
from corrvos.training.task import CorrespondenceTask
from corrvos.training.unroll import ClipUnroller
from corrvos.types import ClipBatch, ClipOutputs

SIZE = 64  # image side of the synthetic loss inputs (feature side 4)
CK, C4 = 4, 6  # key / res4 channels of the synthetic loss inputs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: one intra-op thread is faster, and far faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 2, t: int = 4, n: int = 3, size: int = SIZE, *, copies: bool = False) -> ClipBatch:
    """Objects move from frame to frame and differ between clips (boxes differ per frame); clip 1 has n - 1.

    ``copies``: every clip is a copy of clip 0 (all slots selected).
    """
    labels = torch.zeros(b, t, size, size, dtype=torch.long)
    for bi in range(b):
        for ti in range(t):
            s = 3 * ti + (0 if copies else 5 * bi)

            def box(y1: int, y2: int, x1: int, x2: int) -> tuple[slice, slice]:  # a 64 x 64 layout, scaled
                return slice(y1 * size // 64, y2 * size // 64), slice(x1 * size // 64, x2 * size // 64)

            if n >= 3:
                labels[bi, ti][box(30, 40 + s, 2, 12 + s)] = 3
            labels[bi, ti][box(2 + s, 22 + s, 4 + 2 * s, 28 + s)] = 1
            labels[bi, ti][box(48 - s // 2, 62 - s // 3, 30 + s // 2, 60)] = 2
    selector = torch.ones(b, n)
    if not copies:  # clip 1 lacks the last object: a padding slot
        labels[1][labels[1] == n] = 0
        selector[1, n - 1] = 0.0
    masks = torch.stack([(labels == k + 1).float() for k in range(n)], dim=2)  # [B, T, N, H, W]
    frames = torch.randn(b, t, 3, size, size, generator=_gen(11))
    if copies:
        frames = frames[:1].expand_as(frames).clone()
    return ClipBatch(frames=frames, masks=masks, labels=labels, selector=selector)


def _outputs(batch: ClipBatch, seed: int = 0, *, official: bool = False, xmem: bool = False) -> ClipOutputs:
    """Random per-frame (and per-view) features as leaves requiring grad; ``batch`` gives the shapes."""
    b, t, n = batch.frames.shape[0], batch.frames.shape[1], batch.num_objects
    h, w = (s // 16 for s in batch.frames.shape[-2:])
    g = _gen(seed)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).requires_grad_(True)

    out = ClipOutputs(
        logits=leaf(b, t - 1, n + 1, *batch.frames.shape[-2:]), keys=leaf(b, t, CK, h, w), res4=leaf(b, t, C4, h, w)
    )
    if xmem:
        out.shrinkage = (1 + torch.rand(b, t, 1, h, w, generator=g) * 2).requires_grad_(True)
        out.selection = torch.rand(b, t, CK, h, w, generator=g).requires_grad_(True)
    if official:
        out.keys2 = leaf(b, t, CK, h, w)
        out.view2_keys2 = leaf(b, t, CK, h, w)
        out.view2_theta = sample_view_theta(b, generator=_gen(seed + 100))
    return out


def _copies(outputs: ClipOutputs) -> ClipOutputs:
    """Every clip of ``outputs`` replaced by clip 0."""
    changes = {}
    for name in ("logits", "keys", "res4", "keys2", "view2_keys2", "view2_theta"):
        x = getattr(outputs, name)
        if x is not None:
            changes[name] = x.detach()[:1].expand_as(x).clone()
    return replace(outputs, **changes)


def _differs(a: torch.Tensor | float, b: torch.Tensor | float, rel: float = 1e-4) -> bool:
    a, b = float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach())
    return abs(a - b) > rel * max(abs(a), abs(b), 1e-6)


def _grad(y: torch.Tensor, xs):
    """d y / d xs with None (no path) as zeros."""
    xs = list(xs)
    grads = torch.autograd.grad(y, xs, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(x) if gr is None else gr for x, gr in zip(xs, grads, strict=True)]


def _nonzero(g: torch.Tensor) -> bool:
    return bool(g.abs().sum() > 0)


# --- (a) which frames play t1, t2, r of L_PCL and p, q of L_OCL ---------------------------------------------------

PCL_CFG = {"pcl_grid_stride": 2, "pcl_temperature": 0.7, "pcl_label_within_clip": True, "ocl_weight": 0.0}


@pytest.mark.parametrize(("t1", "t2", "r"), [(-2, -1, 0), (1, 3, 0), (3, 0, 2), (0, 2, -1)])
def test_pcl_uses_exactly_the_configured_frames(t1, t2, r):
    batch = _batch(t=4)
    outputs = _outputs(batch, seed=1)
    cfg = LossConfig(mode="paper", pcl_frame_t1=t1, pcl_frame_t2=t2, pcl_remote_frame=r, **PCL_CFG)
    got = compute_losses(outputs, batch, cfg=cfg, step=0, generator=_gen(7)).terms["pcl"]
    keys = outputs.keys

    def direct(a: int, b: int, c: int) -> torch.Tensor:
        return pixel_consistency_loss(
            keys[:, a], keys[:, b], keys[:, c], stride=2, temperature=0.7, label_within_clip=True, generator=_gen(7)
        )

    torch.testing.assert_close(got, direct(t1, t2, r))
    want = (t1 % 4, t2 % 4, r % 4)
    for other in itertools.permutations(range(4), 3):  # every other assignment of frames to (t1, t2, r)
        if other != want:
            assert _differs(got, direct(*other)), f"L_PCL with frames {other} equals the configured {want}"


def test_pcl_xmem_terms_come_from_the_configured_frames():
    """The grid side (shrinkage) is frame r's, the query side (selection) t1's for the label and t2's for the loss."""
    batch = _batch(t=4)
    outputs = _outputs(batch, seed=2, xmem=True)
    t1, t2, r = 1, 3, 0
    cfg = LossConfig(mode="paper", pcl_frame_t1=t1, pcl_frame_t2=t2, pcl_remote_frame=r, **PCL_CFG)
    got = compute_losses(outputs, batch, cfg=cfg, step=0, generator=_gen(7)).terms["pcl"]
    k, s, e = outputs.keys, outputs.shrinkage, outputs.selection

    def direct(sr: int, e1: int, e2: int) -> torch.Tensor:
        return pixel_consistency_loss(
            k[:, t1],
            k[:, t2],
            k[:, r],
            stride=2,
            temperature=0.7,
            label_within_clip=True,
            generator=_gen(7),
            shrinkage_r=s[:, sr],
            selection_t1=e[:, e1],
            selection_t2=e[:, e2],
        )

    torch.testing.assert_close(got, direct(r, t1, t2))
    for other in itertools.product(range(4), repeat=3):
        if other != (r, t1, t2):
            assert _differs(got, direct(*other)), f"(shrinkage, selection t1, selection t2) frames {other}"


OCL_CFG = {
    "pcl_weight": 0.0,
    "ocl_num_objects": 2,
    "ocl_roi_size": 3,
    "ocl_sampling_ratio": 1,
    "ocl_similarity": "dot",
    "ocl_temperature": 0.5,
}


OCL_DIRECT = {"num_objects": 2, "roi_size": 3, "sampling_ratio": 1, "similarity": "dot", "temperature": 0.5}


def _head(in_dim: int = C4) -> ProjectionHead:
    torch.manual_seed(0)
    return ProjectionHead(in_dim=in_dim, hidden_dim=12, out_dim=5)


@pytest.mark.parametrize(("p", "q"), [(0, -1), (2, 1), (-1, 1)])
def test_ocl_uses_exactly_the_configured_frames(p, q):
    batch, head = _batch(t=4), _head()
    outputs = _outputs(batch, seed=3)
    cfg = LossConfig(mode="paper", ocl_frame_p=p, ocl_frame_q=q, **OCL_CFG)
    out = compute_losses(outputs, batch, cfg=cfg, step=0, proj_head=head, generator=_gen(5))
    res4, masks = outputs.res4, batch.masks

    def direct(a: int, b: int, ma: int, mb: int):
        return object_coherence_loss(
            res4[:, a],
            res4[:, b],
            masks[:, ma],
            masks[:, mb],
            head,
            selector=batch.selector,
            **OCL_DIRECT,
            generator=_gen(5),
        )

    want = direct(p, q, p, q)
    torch.testing.assert_close(out.terms["ocl"], want.loss)
    assert out.stats["ocl_matched"] == want.num_matched == 4  # 2 drawn of 3 in clip 0, both of clip 1
    pq = (p % 4, q % 4)
    for a, b in itertools.permutations(range(4), 2):  # other frames for both features and masks
        if (a, b) != pq:
            assert _differs(out.terms["ocl"], direct(a, b, a, b).loss), f"L_OCL with frames {(a, b)}"
    for ma, mb in itertools.product(range(4), repeat=2):  # the right features with another frame's boxes
        if (ma, mb) != pq:
            assert _differs(out.terms["ocl"], direct(*pq, ma, mb).loss), f"L_OCL with the masks of {(ma, mb)}"
    # a padding slot (selector 0) whose mask is not empty stays out of L_OCL
    masks = batch.masks.clone()
    masks[1, :, 2] = masks[0, :, 2]
    padded = replace(batch, masks=masks)
    got = compute_losses(outputs, padded, cfg=cfg, step=0, proj_head=head, generator=_gen(5)).terms["ocl"]
    want = object_coherence_loss(
        res4[:, p], res4[:, q], masks[:, p], masks[:, q], head, selector=batch.selector, **OCL_DIRECT, generator=_gen(5)
    )
    unselected = object_coherence_loss(
        res4[:, p], res4[:, q], masks[:, p], masks[:, q], head, selector=None, **OCL_DIRECT, generator=_gen(5)
    )
    torch.testing.assert_close(got, want.loss)
    assert _differs(got, unselected.loss)


# --- (b) which view feeds which official loss ------------------------------------------------------------------

OFF_CFG = {"temp_grid": 4, "cross_key_grid": 4, "official_log_eps": 1e-3}


def _official_direct(outputs: ClipOutputs, temp_views, ck_views, seed: int = 9):
    """temp then cross_key from one generator, as the objective draws them."""
    g = _gen(seed)
    theta = outputs.view2_theta
    temp = temp_loss(*temp_views, theta, grid=4, eps=1e-3, generator=g)
    ck = cross_key_loss(*ck_views, theta, grid=4, eps=1e-3, generator=g)
    return temp, ck


def test_official_losses_take_the_right_views_and_frames():
    batch = _batch(t=3, size=128)  # feature side 8
    outputs = _outputs(batch, seed=4, official=True)
    out = compute_losses(outputs, batch, cfg=LossConfig.official(**OFF_CFG), step=0, generator=_gen(9))
    k, k2, v2 = outputs.keys, outputs.keys2, outputs.view2_keys2
    temp, ck = _official_direct(outputs, (k2, v2), (k2[:, 0], v2[:, 0]))
    torch.testing.assert_close(out.terms["temp"], temp)
    torch.testing.assert_close(out.terms["cross_key"], ck)
    wrong_temp = {
        "view-1 key_proj keys": (k, v2),
        "views swapped": (v2, k2),
        "view 1 as its own teacher": (k2, k2),
        "frames reversed": (k2.flip(1), v2.flip(1)),
        "teacher frames reversed": (k2, v2.flip(1)),
    }
    for name, views in wrong_temp.items():
        assert _differs(out.terms["temp"], _official_direct(outputs, views, (k2[:, 0], v2[:, 0]))[0]), name
    wrong_ck = {
        "view-1 key_proj keys": (k[:, 0], v2[:, 0]),
        "views swapped": (v2[:, 0], k2[:, 0]),
        "frame 1": (k2[:, 1], v2[:, 1]),
        "last frame": (k2[:, -1], v2[:, -1]),
        "view-2 frame 1": (k2[:, 0], v2[:, 1]),
        "view-1 frame 1": (k2[:, 1], v2[:, 0]),
    }
    for name, views in wrong_ck.items():
        assert _differs(out.terms["cross_key"], _official_direct(outputs, (k2, v2), views)[1]), name
    # a model without key_proj2: both losses fall back to the matching keys
    no_aux = replace(outputs, keys2=None)
    out = compute_losses(no_aux, batch, cfg=LossConfig.official(**OFF_CFG), step=0, generator=_gen(9))
    temp, ck = _official_direct(outputs, (k, v2), (k[:, 0], v2[:, 0]))
    torch.testing.assert_close(out.terms["temp"], temp)
    torch.testing.assert_close(out.terms["cross_key"], ck)


def test_official_gradients_reach_the_documented_tensors():
    batch = _batch(t=3, size=128)
    outputs = _outputs(batch, seed=5, official=True)
    out = compute_losses(outputs, batch, cfg=LossConfig.official(**OFF_CFG), step=0, generator=_gen(9))
    k, k2, v2 = outputs.keys, outputs.keys2, outputs.view2_keys2
    gk, gk2, gv2 = _grad(out.terms["temp"], [k, k2, v2])
    assert all(_nonzero(gk2[:, f]) for f in range(3))  # student: all frames (frame 0 also through the anchors)
    assert not _nonzero(gv2) and not _nonzero(gk)  # teacher view and key_proj keys: nothing
    gk, gk2, gv2 = _grad(out.terms["cross_key"], [k, k2, v2])
    assert _nonzero(gk2[:, 0]) and _nonzero(gv2[:, 0])  # both views' frame 0 are trained
    assert not _nonzero(gk2[:, 1:]) and not _nonzero(gv2[:, 1:]) and not _nonzero(gk)


@pytest.fixture(scope="module")
def corr_model():
    from corrvos.models import build_model

    torch.manual_seed(0)
    return build_model("stcn_corr").eval()  # eval: BatchNorm frozen (the trainer's freeze_bn), frames independent


@pytest.fixture(scope="module")
def stcn_model():
    from corrvos.models import build_model

    torch.manual_seed(0)
    return build_model("stcn").eval()


def _params(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def test_unroller_second_view_keys_and_gradients(corr_model):
    model = corr_model
    batch = _batch(t=3, n=2, size=32)
    unroller = ClipUnroller(model, second_view=True)
    unroller.view_generator = _gen(21)
    out = unroller(batch)
    b, t = 2, 3
    frames2, theta = make_second_view(batch.frames, generator=_gen(21))
    torch.testing.assert_close(out.view2_theta, theta)
    with torch.no_grad():
        v1 = model.encode_key(batch.frames.flatten(0, 1))
        v2 = model.encode_key(frames2.flatten(0, 1)).key2
    torch.testing.assert_close(out.keys, v1.key.view(b, t, *v1.key.shape[1:]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.keys2, v1.key2.view(b, t, *v1.key2.shape[1:]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.view2_keys2, v2.view(b, t, *v2.shape[1:]), atol=1e-4, rtol=1e-4)
    assert _differs(out.keys2.abs().sum(), out.keys.abs().sum())  # keys2 is key_proj2's, not key_proj's
    assert _differs(out.view2_keys2.abs().sum(), out.keys2.abs().sum())  # view 2 is another view

    proj2, enc = _params(model.key_proj2), _params(model.key_encoder)
    g_first = _grad(out.view2_keys2[:, 0].sum(), proj2 + enc)
    assert all(_nonzero(g) for g in g_first[: len(proj2)]) and any(_nonzero(g) for g in g_first[len(proj2) :])
    g_rest = _grad(out.view2_keys2[:, 1:].sum(), _params(model))  # the teacher frames carry no gradient
    assert not any(_nonzero(g) for g in g_rest)
    g_v1 = _grad(out.keys2.sum(), proj2 + enc)
    assert all(_nonzero(g) for g in g_v1[: len(proj2)]) and any(_nonzero(g) for g in g_v1[len(proj2) :])


def test_task_official_step_is_seeded_and_scheduled(corr_model):
    batch = _batch(t=3, n=2, size=32)
    # one grid point per clip on the 2 x 2 feature maps: its position is random
    cfg = LossConfig.official(official_ramp_start=10, official_ramp_end=30, temp_grid=1, cross_key_grid=1)
    task = CorrespondenceTask(ClipUnroller(corr_model, second_view=True), cfg)
    with torch.no_grad():
        a = task.step(batch, step=15, seed=3)
        again = task.step(batch, step=15, seed=3)
        other = task.step(batch, step=25, seed=4)
    assert a["weights"] == pytest.approx({"seg": 1.0, "temp": 0.2 * 0.25, "cross_key": 0.04 * 0.25})
    assert other["weights"] == pytest.approx({"seg": 1.0, "temp": 0.2 * 0.75, "cross_key": 0.04 * 0.75})
    for name in ("temp", "cross_key", "seg"):
        assert a["terms"][name].item() == again["terms"][name].item()
    assert torch.equal(a["outputs"].view2_theta, again["outputs"].view2_theta)
    assert not torch.equal(a["outputs"].view2_theta, other["outputs"].view2_theta)  # the view follows the seed
    theta = a["outputs"].view2_theta
    assert not torch.allclose(theta[0], theta[1])  # one view per clip


# --- (c) per-clip randomness -----------------------------------------------------------------------------------


def test_grid_samplers_draw_one_offset_per_clip():
    for seed in range(3):
        idx = sample_grid_index(11, 13, batch=6, num_y=2, num_x=3, stride_y=4, stride_x=4, generator=_gen(seed))
        assert len({tuple(row.tolist()) for row in idx}) > 1, "every clip got the same PCL grid"
        assert len(set((idx[:, 0] // 13).tolist())) > 1 and len(set((idx[:, 0] % 13).tolist())) > 1  # y and x
        off = official_grid_index(16, 16, grid=4, batch=6, generator=_gen(seed))
        assert len({tuple(row.tolist()) for row in off}) > 1, "every clip got the same official grid"
        assert len(set((off[:, 0] // 16).tolist())) > 1 and len(set((off[:, 0] % 16).tolist())) > 1
    # the draws come from the generator: same seed, same grid; another seed, another grid
    a = sample_grid_index(16, 16, batch=4, num_y=2, num_x=2, stride_y=8, stride_x=8, generator=_gen(1))
    b = sample_grid_index(16, 16, batch=4, num_y=2, num_x=2, stride_y=8, stride_x=8, generator=_gen(1))
    c = sample_grid_index(16, 16, batch=4, num_y=2, num_x=2, stride_y=8, stride_x=8, generator=_gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_object_subsets_and_views_are_drawn_per_clip():
    valid = torch.ones(6, 4, dtype=torch.bool)
    sub = random_subset(valid, 2, generator=_gen(0))
    assert len({tuple(row.tolist()) for row in sub}) > 1, "every clip drew the same objects"
    theta = sample_view_theta(6, generator=_gen(0))
    flat = theta.flatten(1)
    for col in (4, 2, 5):  # zoom, x centre, y centre
        assert len(set(flat[:, col].abs().tolist())) == 6, f"theta entry {col} shared by clips"
    assert len(set(torch.sign(theta[:, 0, 0]).tolist())) == 2  # some clips flipped, some not


class _Spy:
    """Wraps ``gather_grid`` of a loss module and records the grid indices it is given."""

    def __init__(self, fn):
        self.fn, self.indices = fn, []

    def __call__(self, key, index):
        self.indices.append(index.clone())
        return self.fn(key, index)


def test_loss_grids_differ_between_identical_clips(monkeypatch):
    batch = _batch(b=4, t=3, size=128, copies=True)
    outputs = _copies(_outputs(batch, seed=6, official=True))
    spy = _Spy(pcl_mod.gather_grid)
    monkeypatch.setattr(pcl_mod, "gather_grid", spy)
    cfg = LossConfig(mode="paper", pcl_grid_stride=2, ocl_weight=0.0)
    compute_losses(outputs, batch, cfg=cfg, step=0, generator=_gen(3))
    assert len(spy.indices) == 1
    grid = spy.indices[0]
    assert grid.shape == (4, 16)
    assert len({tuple(row.tolist()) for row in grid}) > 1, "L_PCL shares one grid offset across the batch"
    want = sample_grid_index(8, 8, batch=4, num_y=4, num_x=4, stride_y=2, stride_x=2, generator=_gen(3))
    assert torch.equal(grid, want)  # drawn from the step's generator

    spy = _Spy(official_mod.gather_grid)
    monkeypatch.setattr(official_mod, "gather_grid", spy)
    compute_losses(outputs, batch, cfg=LossConfig.official(**OFF_CFG), step=0, generator=_gen(3))
    assert len(spy.indices) == 3  # temp anchors, then cross_key's two views at the same points
    temp_grid, ck_grid = spy.indices[0], spy.indices[1]
    assert torch.equal(spy.indices[1], spy.indices[2])
    assert len({tuple(row.tolist()) for row in temp_grid}) > 1, "temp shares one grid offset across the batch"
    assert len({tuple(row.tolist()) for row in ck_grid}) > 1, "cross_key shares one grid offset across the batch"
    g = _gen(3)
    assert torch.equal(temp_grid, official_grid_index(8, 8, grid=4, batch=4, generator=g))
    assert torch.equal(ck_grid, official_grid_index(8, 8, grid=4, batch=4, generator=g))


# --- (d) gradient flow ----------------------------------------------------------------------------------------


def test_pcl_and_ocl_gradients_reach_exactly_their_frames():
    batch, head = _batch(t=4), _head()
    outputs = _outputs(batch, seed=7)
    cfg = LossConfig(
        mode="paper",
        pcl_frame_t1=1,
        pcl_frame_t2=3,
        pcl_remote_frame=0,
        ocl_frame_p=2,
        ocl_frame_q=0,
        pcl_grid_stride=2,
        ocl_roi_size=3,
    )
    out = compute_losses(outputs, batch, cfg=cfg, step=0, proj_head=head, generator=_gen(1))
    (gk,) = _grad(out.terms["pcl"], [outputs.keys])
    assert _nonzero(gk[:, 3]) and _nonzero(gk[:, 0])  # t2 and r are trained
    assert not _nonzero(gk[:, 1]) and not _nonzero(gk[:, 2])  # t1 only labels; frame 2 is not in L_PCL
    gr, gl, *gh = _grad(out.terms["ocl"], [outputs.res4, outputs.logits, *head.parameters()])
    assert _nonzero(gr[:, 2]) and _nonzero(gr[:, 0])  # p and q
    assert not _nonzero(gr[:, 1]) and not _nonzero(gr[:, 3]) and not _nonzero(gl)
    assert all(_nonzero(g) for g in gh)  # PROJ
    (gr,) = _grad(out.terms["pcl"], [outputs.res4])
    assert not _nonzero(gr)
    (gk,) = _grad(out.terms["ocl"], [outputs.keys])
    assert not _nonzero(gk)
    gl, gk, gr = _grad(out.terms["seg"], [outputs.logits, outputs.keys, outputs.res4])
    assert _nonzero(gl) and not _nonzero(gk) and not _nonzero(gr)


def test_paper_losses_train_the_key_encoder_through_the_unroller(stcn_model):
    model = stcn_model
    batch = _batch(t=3, n=2, size=32)
    out = ClipUnroller(model)(batch)
    head = _head(1024)
    cfg = LossConfig(mode="paper", pcl_grid_stride=1, ocl_roi_size=3)
    losses = compute_losses(out, batch, cfg=cfg, step=0, proj_head=head, generator=_gen(0))
    proj, enc = _params(model.key_proj), _params(model.key_encoder.layer3)
    others = _params(model.value_encoder) + _params(model.decoder) + _params(model.key_comp)
    g = _grad(losses.terms["pcl"], proj + enc + others)
    assert all(_nonzero(x) for x in g[: len(proj)]), "L_PCL does not reach key_proj"
    assert any(_nonzero(x) for x in g[len(proj) : len(proj) + len(enc)]), "L_PCL does not reach the key encoder"
    assert not any(_nonzero(x) for x in g[len(proj) + len(enc) :])  # only the matching path
    g = _grad(losses.terms["ocl"], proj + enc + _params(head))
    assert not any(_nonzero(x) for x in g[: len(proj)])  # L_OCL works on res4, before key_proj
    assert any(_nonzero(x) for x in g[len(proj) : len(proj) + len(enc)]), "L_OCL does not reach the key encoder"
    assert all(_nonzero(x) for x in g[len(proj) + len(enc) :]), "L_OCL does not reach PROJ"


# --- (e) schedules switch at the exact step --------------------------------------------------------------------


def _schedule_inputs(mode: str):
    batch = _batch(t=3, size=32)
    batch = replace(batch, selector=torch.ones_like(batch.selector))  # every class in the softmax: plain CE
    return batch, _outputs(batch, seed=8, official=mode == "official")


def _bootstrap_reference(logits: torch.Tensor, labels: torch.Tensor, p: float) -> float:
    raw = F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1), reduction="none")
    raw = raw.view(*logits.shape[:2], -1)  # [B, T', HW]
    k = raw.shape[2] if p >= 1.0 else int(raw.shape[2] * p)
    return float(raw.topk(k, dim=2).values.mean(dim=2).mean(dim=0).sum())


def test_bootstrap_schedule_switches_at_the_exact_steps():
    batch, outputs = _schedule_inputs("none")
    cfg = LossConfig(mode="none", bootstrap_start=10, bootstrap_end=20, bootstrap_top_p=0.25, seg_weight=0.7)
    expected = {9: 1.0, 10: 1.0, 11: 0.925, 19: 0.325, 20: 0.25, 21: 0.25, 500: 0.25}
    for step, p in expected.items():
        out = compute_losses(outputs, batch, cfg=cfg, step=step)
        assert out.stats["bootstrap_p"] == pytest.approx(p, abs=1e-12), step
        seg = _bootstrap_reference(outputs.logits.detach(), batch.labels[:, 1:], p)
        assert out.terms["seg"].item() == pytest.approx(seg, rel=1e-5), step
        assert out.weights == {"seg": 0.7}
        assert out.total.item() == pytest.approx(0.7 * seg, rel=1e-5)


def _ramp(step: int, start: int, end: int) -> float:
    return 0.0 if step < start else 1.0 if step >= end else (step - start) / (end - start)


def test_paper_ramps_switch_at_the_exact_steps():
    batch, outputs = _schedule_inputs("paper")
    head = _head()
    cfg = LossConfig(
        mode="paper",
        pcl_weight=0.5,
        pcl_ramp_start=30,
        pcl_ramp_end=40,
        ocl_weight=0.3,
        ocl_ramp_start=5,
        ocl_ramp_end=25,
        pcl_grid_stride=1,
        ocl_roi_size=3,
    )
    checked = {29: (0.0, 1.0), 30: (0.0, 1.0), 31: (0.05, 1.0), 39: (0.45, 1.0), 40: (0.5, 1.0), 41: (0.5, 1.0)}
    checked.update({4: (0.0, 0.0), 5: (0.0, 0.0), 6: (0.0, 0.05), 24: (0.0, 0.95), 25: (0.0, 1.0), 26: (0.0, 1.0)})
    for step, (pcl, ocl) in checked.items():
        out = compute_losses(outputs, batch, cfg=cfg, step=step, proj_head=head, generator=_gen(0))
        assert out.weights["pcl"] == pytest.approx(pcl, abs=1e-12), step
        assert out.weights["ocl"] == pytest.approx(0.3 * ocl, abs=1e-12), step
        assert out.weights["pcl"] == pytest.approx(0.5 * _ramp(step, 30, 40), abs=1e-12)
        want = out.terms["seg"] + out.weights["pcl"] * out.terms["pcl"] + out.weights["ocl"] * out.terms["ocl"]
        assert out.total.item() == pytest.approx(want.item(), rel=1e-6)
    # end == start: a step function at `start`
    cfg = replace(cfg, pcl_ramp_start=12, pcl_ramp_end=12)
    got = [compute_losses(outputs, batch, cfg=cfg, step=s, proj_head=head).weights["pcl"] for s in (11, 12, 13)]
    assert got == [0.0, 0.5, 0.5]


def test_official_ramp_switches_at_the_exact_steps():
    batch, outputs = _schedule_inputs("official")
    cfg = LossConfig.official(official_ramp_start=7, official_ramp_end=11, temp_grid=2, cross_key_grid=2)
    for step, f in {6: 0.0, 7: 0.0, 8: 0.25, 10: 0.75, 11: 1.0, 12: 1.0}.items():
        out = compute_losses(outputs, batch, cfg=cfg, step=step, generator=_gen(0))
        assert out.weights["temp"] == pytest.approx(0.2 * f, abs=1e-12), step
        assert out.weights["cross_key"] == pytest.approx(0.04 * f, abs=1e-12), step


@pytest.mark.parametrize(("iterations", "finetune"), [(250, 0), (1005, 0), (300, 50)])
def test_max_skip_switches_at_the_exact_step(iterations, finetune):
    """Fractions count over the steps before the fine-tune phase, which starts at step ``iterations - finetune``."""
    values, fractions = [5, 10, 15, 20, 25, 5], [0.1, 0.2, 0.3, 0.4, 0.9]
    curriculum = SkipCurriculum.from_values(values, fractions)
    span = iterations - finetune
    switches = [math.ceil(f * span) for f in fractions]  # first step with step / span >= fraction
    kwargs = {
        "length": 7,
        "global_batch": 4,
        "rank": 1,
        "world_size": 2,
        "seed": 3,
        "iterations": iterations,
        "max_skip_values": values,
        "max_skip_fractions": fractions,
    }
    if finetune:
        kwargs["finetune_iterations"] = finetune
    sampler = StepBatchSampler(**kwargs)
    for i, s in enumerate(switches):
        before, after = values[i], values[i + 1]
        assert curriculum.at_step(s - 1, span) == before, (s, "before")
        assert curriculum.at_step(s, span) == after, s
        assert curriculum.at_step(s + 1, span) == after
        assert {k[2] for k in sampler.keys_for_step(s - 1)} == {before}, (s, "before")
        assert {k[2] for k in sampler.keys_for_step(s)} == {after}, s
    assert {k[2] for k in sampler.keys_for_step(0)} == {k[2] for k in sampler.keys_for_step(iterations - 1)} == {5}
    if finetune:  # the fine-tune flag switches at its first step
        assert [sampler.keys_for_step(s)[0][3] for s in (span - 1, span, iterations - 1)] == [False, True, True]
    # iteration yields the keys of steps start_step, start_step + 1, ...
    resumed = StepBatchSampler(**kwargs, start_step=switches[0] - 2)
    got = list(itertools.islice(iter(resumed), 4))
    assert got == [sampler.keys_for_step(switches[0] - 2 + j) for j in range(4)]
    assert [k[0][2] for k in got] == [5, 5, 10, 10]


def test_trainer_lr_milestones_and_loss_steps(monkeypatch, tmp_path, stcn_model):
    """The optimiser step of stage step s runs at lr * gamma^(milestones <= s); the task sees s (0-based)."""
    from corrvos.config import config_from_dict
    from corrvos.training import trainer as trainer_mod

    cfg = config_from_dict(
        {
            "model": {"arch": "stcn"},
            "loss": {"mode": "none"},
            "optim": {"gamma": 0.5},
            "stages": [
                {
                    "name": "main",
                    "iterations": 10,
                    "batch_size": 2,
                    "lr": 1.0,
                    "lr_milestones": [3, 5],
                    "data": {
                        "crop_size": 32,
                        "datasets": [{"kind": "davis", "root": str(tmp_path)}],
                        "max_skip_values": [2],
                        "max_skip_fractions": [],
                    },
                }
            ],
            "num_workers": 0,
            "log_interval": 1000,
            "image_interval": 1000,
            "save_interval": 1000,
            "device": "cpu",
            "amp": "off",
        }
    )
    batch = _batch(t=3, n=2, size=32)
    seen: list[int] = []
    lrs: list[list[float]] = []

    class FakeTask:
        def __init__(self, unroller, loss_cfg, **kwargs):
            self.weight = model.key_proj.key_proj.weight

        def step(self, batch, *, step, seed):
            seen.append(step)
            logits = torch.zeros(2, 2, 3, 32, 32)
            loss = (self.weight**2).sum()
            return {"loss": loss, "terms": {}, "weights": {}, "stats": {}, "outputs": SimpleNamespace(logits=logits)}

    model = stcn_model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(trainer_mod, "CorrespondenceTask", FakeTask)
    monkeypatch.setattr(trainer_mod, "build_stage_dataset", lambda *a, **k: None)
    monkeypatch.setattr(trainer_mod, "build_stage_loader", lambda *a, **k: [batch] * 10)
    monkeypatch.setattr(trainer_mod, "build_unroller", lambda *a, **k: torch.nn.Module(), raising=False)
    hook = register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append([g["lr"] for g in opt.param_groups]))
    try:
        trainer = trainer_mod.Trainer(cfg, out_dir=tmp_path / "run", progress=False)
        trainer.model = model
        trainer.run(max_steps=7)
    finally:
        hook.remove()
        model.load_state_dict(state)  # the shared fixture stays as built
        model.eval()
    assert seen == list(range(7))
    factors = [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert len(lrs) == 7
    for step, (group_lrs, f) in enumerate(zip(lrs, factors, strict=True)):
        assert group_lrs == pytest.approx([lr * f for lr in lrs[0]]), step


# --- (f) the clip unroller -------------------------------------------------------------------------------------


def _manual_unroll(model, batch: ClipBatch) -> torch.Tensor:
    """The documented recurrence, frame by frame: memory = frames 0..t-1; values from GT (0) then predictions."""
    frames, t = batch.frames, batch.frames.shape[1]
    feats = [model.encode_key(frames[:, i]) for i in range(t)]
    v0, _ = model.encode_value(frames[:, 0], feats[0].f16, batch.masks[:, 0])
    values, logits = [v0], []
    for i in range(1, t):
        mem_key = torch.stack([f.key for f in feats[:i]], dim=2)  # [B, CK, i, h, w]
        readout = model.read_memory(mem_key, torch.stack(values, dim=3), feats[i].key)
        seg = model.segment(readout, feats[i], selector=batch.selector)
        logits.append(seg.logits)
        if i < t - 1:
            values.append(model.encode_value(frames[:, i], feats[i].f16, seg.prob[:, 1:])[0])
    return torch.stack(logits, dim=1)


def test_unroller_matches_the_frame_by_frame_recurrence(stcn_model):
    batch = _batch(t=4, n=3, size=32)  # clip 1 has a padding slot: the selector must reach the decoder
    with torch.no_grad():
        out = ClipUnroller(stcn_model)(batch)
        want = _manual_unroll(stcn_model, batch)
        no_selector = _manual_unroll(stcn_model, replace(batch, selector=torch.ones_like(batch.selector)))
    assert out.logits.shape == (2, 3, 4, 32, 32)
    torch.testing.assert_close(out.logits, want, atol=1e-4, rtol=1e-4)
    assert _differs(out.logits[1].abs().sum(), no_selector[1].abs().sum())
    with torch.no_grad():
        feats = stcn_model.encode_key(batch.frames.flatten(0, 1))
    torch.testing.assert_close(out.keys, feats.key.view(2, 4, *feats.key.shape[1:]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.res4, feats.f16.view(2, 4, *feats.f16.shape[1:]), atol=1e-5, rtol=1e-5)


def _perturbed(batch: ClipBatch, **changes) -> ClipBatch:
    return replace(batch, **{k: v.clone() for k, v in changes.items()})


def test_unroller_is_causal_and_reads_gt_only_for_frame_0(stcn_model):
    batch = _batch(t=3, n=2, size=32)
    unroll = ClipUnroller(stcn_model)
    with torch.no_grad():
        base = unroll(batch).logits  # [B, 2, N+1, H, W]: frames 1 and 2

        frames = batch.frames.clone()
        frames[:, 2] = torch.randn(frames[:, 2].shape, generator=_gen(1))
        new = unroll(replace(batch, frames=frames)).logits
        torch.testing.assert_close(new[:, 0], base[:, 0], atol=1e-6, rtol=0)  # frame 1 never sees frame 2
        assert _differs(new[:, 1].abs().sum(), base[:, 1].abs().sum(), rel=1e-6)

        frames = batch.frames.clone()
        frames[:, 1] = torch.randn(frames[:, 1].shape, generator=_gen(2))
        new = unroll(replace(batch, frames=frames)).logits
        assert _differs(new[:, 0].abs().sum(), base[:, 0].abs().sum(), rel=1e-6)

        masks = batch.masks.clone()
        masks[:, 0] = masks[:, 0].roll(shifts=(5, 7), dims=(-2, -1))  # frame 0's ground truth moves
        new = unroll(replace(batch, masks=masks)).logits
        assert _differs(new[:, 0].abs().sum(), base[:, 0].abs().sum(), rel=1e-6)
        assert _differs(new[:, 1].abs().sum(), base[:, 1].abs().sum(), rel=1e-6)

        masks, labels = batch.masks.clone(), batch.labels.clone()
        masks[:, 1:] = 1.0 - masks[:, 1:]  # later ground truth is only for the loss
        labels[:, 1:] = 0
        new = unroll(replace(batch, masks=masks, labels=labels)).logits
        torch.testing.assert_close(new, base, atol=1e-6, rtol=0)


def test_unroller_memory_and_values_follow_the_recurrence_with_gradient(stcn_model, monkeypatch):
    model = stcn_model
    batch = _batch(t=3, n=2, size=32)
    reads, encodes, segs = [], [], []
    read, encode, segment = model.read_memory, model.encode_value, model.segment

    def spy_read(mem_key, mem_value, query_key, **kw):
        reads.append((mem_key, mem_value, query_key))
        return read(mem_key, mem_value, query_key, **kw)

    def spy_encode(frame, f16, masks, *args, **kw):
        encodes.append((frame, masks))
        return encode(frame, f16, masks, *args, **kw)

    def spy_segment(*args, **kw):
        segs.append(segment(*args, **kw))
        return segs[-1]

    monkeypatch.setattr(model, "read_memory", spy_read)
    monkeypatch.setattr(model, "encode_value", spy_encode)
    monkeypatch.setattr(model, "segment", spy_segment)
    out = ClipUnroller(model)(batch)
    assert len(reads) == 2 and len(segs) == 2 and len(encodes) == 2  # the last frame's value is not encoded
    for ti, (mem_key, mem_value, query_key) in enumerate(reads, start=1):
        assert mem_key.shape[2] == ti and mem_value.shape[3] == ti  # memory of frames 0..t-1
        torch.testing.assert_close(mem_key, out.keys[:, :ti].transpose(1, 2))
        torch.testing.assert_close(query_key, out.keys[:, ti])
    torch.testing.assert_close(encodes[0][0], batch.frames[:, 0])
    torch.testing.assert_close(encodes[0][1], batch.masks[:, 0])  # frame 0: ground truth
    torch.testing.assert_close(encodes[1][0], batch.frames[:, 1])
    torch.testing.assert_close(encodes[1][1], segs[0].prob[:, 1:])  # frame 1: its predicted soft masks
    assert encodes[1][1].requires_grad, "frame 1's predicted masks are encoded without gradient"
    torch.testing.assert_close(out.logits[:, 0], segs[0].logits)
    torch.testing.assert_close(out.logits[:, 1], segs[1].logits)
    (g,) = torch.autograd.grad(out.logits[:, 1].sum(), segs[0].prob, allow_unused=True)
    assert g is not None and _nonzero(g[:, 1:]), "frame 2 is not trained through frame 1's prediction"
