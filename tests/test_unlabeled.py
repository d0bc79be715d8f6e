"""Training with unlabeled videos (issue #13 part 2): unlabeled clips feed only the label-free losses.

- the losses: an unlabeled clip adds nothing to L_SEG or L_OCL (they equal the labeled-only batch's) and gets a
  finite, non-zero L_PCL; official mode's temp / cross_key use every clip;
- the model: gradients of the unlabeled clip reach the key encoder in paper mode and do not in mode none;
- the sampler: each batch holds round(share x B) unlabeled clips, the same number on every process, each pool
  permuted per epoch;
- the data: folders of mp4 files and frame folders read as unlabeled clips; the generator's unlabeled layout;
- the trainer: a mixed run resumes bit-identically; the config checks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from corrvos.config import config_from_dict
from corrvos.data.clips import collate_clips
from corrvos.data.synthetic import generate_dataset
from corrvos.errors import ConfigError
from corrvos.losses.config import LossConfig
from corrvos.losses.objective import compute_losses
from corrvos.models.heads import ProjectionHead
from corrvos.training.data import StepBatchSampler
from corrvos.types import ClipBatch
from test_resume import resume_config, run_cut_and_resume
from test_wiring import C4, _batch, _grad, _nonzero, _outputs

PAPER = {
    "mode": "paper",
    "pcl_ramp_start": 0,
    "pcl_ramp_end": 0,
    "ocl_ramp_start": 0,
    "ocl_ramp_end": 0,
    "ocl_num_objects": 2,
}


def _mixed(batch: ClipBatch, unlabeled: int = 1) -> ClipBatch:
    """``batch`` with its first ``unlabeled`` clips turned into unlabeled clips (no objects, labeled False)."""
    labeled = torch.ones(batch.batch_size, dtype=torch.bool)
    labeled[:unlabeled] = False
    labels, masks, selector = batch.labels.clone(), batch.masks.clone(), batch.selector.clone()
    labels[:unlabeled], masks[:unlabeled], selector[:unlabeled] = 0, 0.0, 0.0
    return replace(batch, labels=labels, masks=masks, selector=selector, labeled=labeled)


def _subset(x, index):
    return None if x is None else x[index]


def test_unlabeled_clip_adds_nothing_to_seg_and_ocl_and_trains_pcl() -> None:
    torch.manual_seed(0)
    batch = _mixed(_batch(b=3))  # clip 0 unlabeled
    outputs = _outputs(batch, seed=1)
    cfg = LossConfig(**PAPER)
    head = ProjectionHead(C4, 32, 16)
    # L_SEG and L_OCL (L_PCL off: its grid draws would shift L_OCL's random object subsets) equal the labeled
    # clips' alone, exactly
    no_pcl = LossConfig(**PAPER, pcl_weight=0.0)
    mixed = compute_losses(
        outputs, batch, cfg=no_pcl, step=0, proj_head=head, generator=torch.Generator().manual_seed(5)
    )
    labeled_only = replace(batch, frames=batch.frames[1:], masks=batch.masks[1:], labels=batch.labels[1:],
                           selector=batch.selector[1:], labeled=None)  # fmt: skip
    out_l = replace(outputs, logits=outputs.logits[1:], keys=outputs.keys[1:], res4=outputs.res4[1:])
    alone = compute_losses(
        out_l, labeled_only, cfg=no_pcl, step=0, proj_head=head, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(mixed.terms["seg"], alone.terms["seg"], rtol=0, atol=0)
    torch.testing.assert_close(mixed.terms["ocl"], alone.terms["ocl"], rtol=0, atol=0)
    # no gradient from L_SEG / L_OCL into the unlabeled clip's logits or features ...
    g_logits, g_res4 = _grad(
        mixed.weights["seg"] * mixed.terms["seg"] + mixed.terms["ocl"], [outputs.logits, outputs.res4]
    )
    assert not _nonzero(g_logits[0]) and not _nonzero(g_res4[0]) and _nonzero(g_logits[1])
    # ... while L_PCL is finite, non-zero and trains the unlabeled clip's keys
    full = compute_losses(outputs, batch, cfg=cfg, step=0, proj_head=head, generator=torch.Generator().manual_seed(5))
    pcl = full.terms["pcl"]
    assert torch.isfinite(pcl) and float(pcl.detach()) > 0
    (g_keys,) = _grad(pcl, [outputs.keys])
    assert _nonzero(g_keys[0])
    # a batch of unlabeled clips only is refused (L_SEG needs a labeled clip)
    with pytest.raises(ValueError, match="at least one labeled clip"):
        compute_losses(outputs, _mixed(batch, 3), cfg=cfg, step=0, proj_head=head)


def test_official_losses_use_unlabeled_clips() -> None:
    batch = _mixed(_batch(b=2))
    outputs = _outputs(batch, seed=2, official=True)
    cfg = LossConfig(mode="official", official_ramp_start=0, official_ramp_end=0)
    out = compute_losses(outputs, batch, cfg=cfg, step=0, generator=torch.Generator().manual_seed(1))
    g_temp, g_ck = _grad(out.terms["temp"], [outputs.keys2]), _grad(out.terms["cross_key"], [outputs.keys2])
    assert _nonzero(g_temp[0][0]) and _nonzero(g_ck[0][0])  # clip 0, the unlabeled one


@pytest.mark.parametrize("mode", ["paper", "none"])
def test_unlabeled_gradients_reach_the_key_encoder_only_through_the_label_free_losses(mode: str) -> None:
    """Two batches that differ only in the unlabeled clip's frames: in paper mode the key encoder's gradients
    differ (L_PCL reads it); with L_SEG only they are identical (the clip is not used)."""
    from corrvos.models import build_model
    from corrvos.training.task import CorrespondenceTask
    from corrvos.training.unroll import UnrollPolicy, build_unroller

    torch.manual_seed(0)
    model = build_model("stcn").eval()
    cfg = LossConfig(**PAPER) if mode == "paper" else LossConfig(mode="none")
    head = ProjectionHead(1024, 32, 16) if mode == "paper" else None
    task = CorrespondenceTask(build_unroller(model, policy=UnrollPolicy()), cfg, proj_head=head)
    base = _mixed(_batch(b=2, t=3, n=2, size=32))
    other_frames = base.frames.clone()
    other_frames[0] = torch.randn(other_frames[0].shape, generator=torch.Generator().manual_seed(3))
    grads = []
    for frames in (base.frames, other_frames):
        model.zero_grad()
        task.step(replace(base, frames=frames), step=0, seed=7)["loss"].backward()
        grads.append(model.key_encoder.conv1.weight.grad.clone())
    assert torch.equal(grads[0], grads[1]) == (mode == "none")


def test_the_batch_share_follows_the_config_on_every_process() -> None:
    kw = dict(length=10, global_batch=8, seed=3, iterations=6, max_skip_values=[5], max_skip_fractions=[])
    samplers = [StepBatchSampler(rank=r, world_size=2, num_labeled=4, unlabeled_share=0.25, **kw) for r in (0, 1)]
    seen_unlabeled: list[int] = []
    for step in range(6):
        keys = [s.keys_for_step(step) for s in samplers]
        for rank_keys in keys:
            indices = [k[0] for k in rank_keys]
            assert len(indices) == 4 and sum(i >= 4 for i in indices) == 1  # 2 of 8 unlabeled: 1 per process
        seen_unlabeled += [k[0] for rk in keys for k in rk if k[0] >= 4]
    # the 6 unlabeled items are permuted per epoch of their own pool: steps 0-2 draw each exactly once
    assert sorted(seen_unlabeled[:6]) == [4, 5, 6, 7, 8, 9]
    # without unlabeled items the keys are those of the plain sampler (bit-identical old runs)
    plain = StepBatchSampler(rank=0, world_size=1, **kw)
    same = StepBatchSampler(rank=0, world_size=1, num_labeled=10, unlabeled_share=0.0, **kw)
    assert [plain.keys_for_step(s) for s in range(6)] == [same.keys_for_step(s) for s in range(6)]
    with pytest.raises(ConfigError, match="divisible by the 2 processes"):
        StepBatchSampler(rank=0, world_size=2, num_labeled=4, unlabeled_share=0.125, **kw)


def _write_mp4(path: Path, frames: int, seed: int) -> None:
    from corrvos.visualize.overlay import VideoWriter

    rng = np.random.default_rng(seed)
    with VideoWriter(path, fps=10, fourcc="mp4v") as video:
        for _ in range(frames):
            video.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_a_folder_of_mp4_files_and_frame_folders_reads_as_unlabeled_clips(tmp_path: Path) -> None:
    from corrvos.data.transforms import ClipAugmentConfig
    from corrvos.data.unlabeled import UnlabeledClipDataset

    folder = tmp_path / "videos"
    folder.mkdir()
    _write_mp4(folder / "a.mp4", 6, 0)
    _write_mp4(folder / "b.mp4", 5, 1)
    generate_dataset(tmp_path / "gen", sequences=2, frames=4, size=(48, 64), seed=0, layout="unlabeled")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["corrvos_synthetic.json", "synth000", "synth001"]
    assert not list((tmp_path / "gen").rglob("*.png"))  # frames only, no masks
    for root, names in ((folder, ["a.mp4", "b.mp4"]), (tmp_path / "gen", ["synth000", "synth001"])):
        ds = UnlabeledClipDataset(root, num_frames=3, max_objects=2, augment=ClipAugmentConfig.video(32), seed=1)
        items = [ds[i] for i in range(len(ds))]
        assert [i.name for i in items] == names
        for item in items:
            assert item.frames.shape == (3, 3, 32, 32) and not item.labels.any() and item.num_objects == 0
            assert not item.labeled and torch.isfinite(item.frames).all()
        ds.set_epoch(1)
        assert not torch.equal(ds[0].frames, items[0].frames)  # epochs draw other clips
    batch = collate_clips([*items, *items])
    assert batch.labeled is not None and not batch.labeled.any() and batch.selector.sum() == 0


def test_config_checks_of_unlabeled_sources() -> None:
    def cfg(share: float, kinds: tuple[str, ...], batch: int = 4) -> dict:
        datasets = [{"kind": k, "root": "/x"} for k in kinds]
        stage = {"name": "main", "iterations": 4, "batch_size": batch, "lr": 1e-4, "data": {"crop_size": 64,
                 "unlabeled_share": share, "datasets": datasets}}  # fmt: skip
        return {"stages": [stage]}

    config_from_dict(cfg(0.5, ("davis", "unlabeled")))
    for bad, message in (
        (cfg(0.5, ("davis",)), "no dataset is unlabeled"),
        (cfg(0.0, ("davis", "unlabeled")), "between 1 and batch_size - 1"),
        (cfg(0.1, ("davis", "unlabeled")), "between 1 and batch_size - 1"),  # round(0.4) = 0 clips
        (cfg(0.5, ("unlabeled",)), "every dataset is unlabeled"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(bad)


def test_a_mixed_run_resumes_bit_identically(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    videos = generate_dataset(tmp_path / "unl", sequences=3, frames=6, size=(64, 64), seed=12, layout="unlabeled")

    def make(out: Path, workers: int) -> dict:
        cfg = resume_config(root, out, workers)
        data = cfg["stages"][0]["data"]
        data["datasets"].append({"kind": "unlabeled", "root": str(videos)})
        data["unlabeled_share"] = 0.5
        cfg["stages"][0].update(iterations=4, lr_milestones=[3])  # 2 steps, resume, 2 steps across the milestone
        return cfg

    ref, _ = run_cut_and_resume(tmp_path, make, total=4, cut=2, workers=1)
    assert ref["global_step"] == 4
