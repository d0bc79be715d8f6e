"""Kill-and-resume: 6 uninterrupted steps equal 3 steps + resume + 3 steps, bit for bit (CPU).

The interrupted run goes through the CLI (``--max-steps 3``, then ``--resume RUN``), uses a DataLoader worker
while the reference run loads in the main process, and crosses an lr milestone and a max-skip switch after the
restart, so the data order, augmentation, loss randomness, optimiser, scheduler and projection-head states must
all be restored exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from corrvos.cli import main as cli_main
from corrvos.config import config_from_dict
from corrvos.data.synthetic import generate_dataset
from corrvos.errors import CheckpointError
from corrvos.training.checkpoint import find_latest_checkpoint, load_checkpoint
from corrvos.training.trainer import Trainer


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path):
    """Checkpoints are ~0.9 GB each (STCN + AdamW state); do not leave them in pytest's kept temp folders."""
    yield
    for path in [*tmp_path.rglob("*.pth"), *tmp_path.rglob("*.pt")]:
        path.unlink(missing_ok=True)


def resume_config(root: Path, out: Path, workers: int) -> dict:
    return {
        "model": {"arch": "stcn"},
        "loss": {
            "mode": "paper",
            "pcl_ramp_start": 0,
            "pcl_ramp_end": 1,
            "ocl_ramp_start": 0,
            "ocl_ramp_end": 1,
            "bootstrap_start": 0,
            "bootstrap_end": 4,
        },
        "optim": {"optimizer": "adamw", "grad_clip": 1.0},
        "stages": [
            {
                "name": "main",
                "iterations": 6,
                "batch_size": 2,
                "lr": 1e-4,
                "lr_milestones": [4],
                "data": {
                    "crop_size": 64,
                    "datasets": [{"kind": "davis", "root": str(root)}],
                    "max_skip_values": [1, 3],
                    "max_skip_fractions": [0.5],
                },
            }
        ],
        "num_workers": workers,
        "log_interval": 1,
        "image_interval": 0,
        "save_interval": 3,
        "device": "cpu",
        "amp": "off",
        "out_dir": str(out),
    }


def xmem_resume_config(root: Path, out: Path, workers: int) -> dict:
    """XMem, paper mode, 4 steps: 5-frame clips with 2 memory frames (reference frames drawn for t = 3, 4), deep
    updates with p = 0.5, the fine-tune phase on the last step and an lr milestone at step 3."""
    cfg = resume_config(root, out, workers)
    cfg["model"] = {"arch": "xmem", "deep_update_prob": 0.5}
    cfg["loss"].update(dice_weight=1.0, dice_mode="objects", bootstrap_end=3)
    stage = cfg["stages"][0]
    stage.update(iterations=4, lr_milestones=[3])
    stage["data"].update(
        crop_size=32,
        num_frames=5,
        num_ref_frames=2,
        max_objects=3,
        augment="xmem",
        sampling="window",
        finetune_iterations=1,
        max_skip_values=[1, 2],
        max_skip_fractions=[0.5],
    )
    cfg["save_interval"] = 2
    return cfg


def assert_same_state(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def run_cut_and_resume(tmp_path: Path, make_config, *, total: int, cut: int, workers: int) -> tuple[dict, dict]:
    """``total`` steps in one go (data read in the main process) and ``cut`` steps through the CLI, then
    ``--resume`` of that run folder; returns the two final step checkpoints (reference, resumed)."""
    ref_cfg = config_from_dict({**make_config(tmp_path / "ref", 0), "save_interval": 100})
    assert Trainer(ref_cfg, progress=False).run().finished
    config_file = tmp_path / "resume.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path / "cut", workers)), encoding="utf-8")
    assert cli_main(["train", "--config", str(config_file), "--max-steps", str(cut), "--no-progress"]) == 0
    assert find_latest_checkpoint(tmp_path / "cut").name == f"step_{cut:07d}.pth"
    assert cli_main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / f"step_{total:07d}.pth")
    resumed = load_checkpoint(tmp_path / "cut" / "checkpoints" / f"step_{total:07d}.pth")
    assert ref["global_step"] == resumed["global_step"] == total
    assert_same_state(ref["model"], resumed["model"], "model")
    assert_same_state(ref["extra"], resumed["extra"], "extra")  # the L_OCL projection head
    assert_same_state(ref["optimizer"], resumed["optimizer"], "optimizer")
    mid = load_checkpoint(tmp_path / "cut" / "checkpoints" / f"step_{cut:07d}.pth")
    assert any(not torch.equal(mid["model"][k], ref["model"][k]) for k in ref["model"])  # the later steps trained
    return ref, resumed


def test_kill_and_resume_is_bit_identical(tmp_path: Path):
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    # the interrupted run reads its data with one DataLoader worker, the reference in the main process
    ref, cut = run_cut_and_resume(
        tmp_path, lambda out, workers: resume_config(root, out, workers), total=6, cut=3, workers=1
    )
    assert ref["scheduler"]["_last_lr"] == cut["scheduler"]["_last_lr"] == pytest.approx([1e-5] * 3)


def test_resume_errors(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no step_"):
        find_latest_checkpoint(tmp_path)
    bad = tmp_path / "weights.pth"
    torch.save({"a": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a corrvos training checkpoint"):
        load_checkpoint(bad)


def test_rng_and_scheduler_states_round_trip_under_weights_only(tmp_path: Path):
    import random

    import numpy as np

    from corrvos.training.checkpoint import (
        capture_rng_state,
        load_scheduler_state,
        restore_rng_state,
        save_checkpoint,
        scheduler_state,
    )

    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4], 0.5)
    for _ in range(3):
        opt.step()
        sched.step()
    random.random(), np.random.rand(), torch.rand(1)  # noqa: NPY002 - the global RNGs are what is saved
    save_checkpoint(tmp_path / "c.pth", {"model": {}, "rng": capture_rng_state(), "sched": scheduler_state(sched)})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))  # noqa: NPY002
    loaded = torch.load(tmp_path / "c.pth", weights_only=True)
    assert loaded["format_version"] == 1
    restore_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected  # noqa: NPY002
    fresh = torch.optim.lr_scheduler.MultiStepLR(
        torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0), [2, 4], 0.5
    )
    load_scheduler_state(fresh, loaded["sched"])
    assert fresh.state_dict() == sched.state_dict()


def test_xmem_kill_and_resume_is_bit_identical(tmp_path: Path):
    """XMem: 4 uninterrupted steps equal 2 steps + resume + 2 steps (reference-frame and deep-update draws, the
    hidden state, the fine-tune switch at step 3 and the lr milestone all restored)."""
    root = generate_dataset(tmp_path / "davis", sequences=3, frames=7, size=(48, 48), seed=12)
    ref, cut = run_cut_and_resume(
        tmp_path, lambda out, workers: xmem_resume_config(root, out, workers), total=4, cut=2, workers=0
    )
    assert ref["arch"] == cut["arch"] == "xmem"


def test_cutie_kill_and_resume_is_bit_identical(tmp_path: Path):
    """Cutie (its own unroller and point-sampled L_SEG): memory frames drawn for t = 3, 4, deep updates with p = 0.5,
    point draws, the no-decay group and an lr milestone after the restart; 4 steps = 2 + resume + 2, bit for bit."""
    root = generate_dataset(tmp_path / "davis", sequences=3, frames=7, size=(48, 48), seed=5)

    def make(out: Path, workers: int) -> dict:
        cfg = xmem_resume_config(root, out, workers)
        cfg["model"] = {"arch": "cutie", "key_encoder": "resnet18", "deep_update_prob": 0.5}
        cfg["loss"] = {"mode": "none", "seg_points": 64}
        cfg["optim"] = {"optimizer": "adamw", "weight_decay": 1e-3, "grad_clip": 3.0, "encoder_lr_scale": 0.1}
        cfg["stages"][0]["data"].update(augment="auto", finetune_iterations=0)
        return cfg

    ref, cut = run_cut_and_resume(tmp_path, make, total=4, cut=2, workers=0)
    assert ref["arch"] == cut["arch"] == "cutie"


def test_sigterm_at_a_random_step_checkpoints_and_resumes_bit_identically(tmp_path: Path):
    """SIGTERM (what schedulers send) mid-stage: the step in progress finishes, its checkpoint is written, the run
    reports the signal; ``--resume`` then ends bit-identical to an uninterrupted run."""
    import os
    import random
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    stop_at = random.Random(20261202).randint(1, 5)  # not a save_interval step of the config (3) unless drawn
    ref = Trainer(config_from_dict({**resume_config(root, tmp_path / "ref", 0), "save_interval": 100}), progress=False)
    assert ref.run().finished
    cfg = config_from_dict({**resume_config(root, tmp_path / "cut", 0), "save_interval": 100})
    trainer = Trainer(cfg, progress=False)
    after_step = trainer.hooks.after_step

    def send_sigterm(record):
        after_step(record)
        if record.global_step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    trainer.hooks.after_step = send_sigterm
    result = trainer.run()
    assert not result.finished and result.stopped_by == "SIGTERM" and result.global_step == stop_at
    assert result.checkpoint == tmp_path / "cut" / "checkpoints" / f"step_{stop_at:07d}.pth"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back
    assert cli_main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    a = load_checkpoint(tmp_path / "ref" / "checkpoints" / "step_0000006.pth")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "step_0000006.pth")
    assert_same_state(a["model"], b["model"], "model")
    assert_same_state(a["optimizer"], b["optimizer"], "optimizer")


def test_max_steps_writes_a_checkpoint_of_its_last_step(tmp_path: Path, capsys):
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    config_file = tmp_path / "run.yaml"
    cfg = {**resume_config(root, tmp_path / "run", 0), "save_interval": 100}
    config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert cli_main(["train", "--config", str(config_file), "--max-steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stopped (--max-steps) at stage 'main' step 2" in out and f"--resume {tmp_path / 'run'}" in out
    assert find_latest_checkpoint(tmp_path / "run").name == "step_0000002.pth"


@pytest.mark.slow
def test_ctrl_c_through_the_cli_exits_130_with_a_checkpoint(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    cfg = resume_config(root, tmp_path / "run", 0)
    cfg["stages"][0].update(iterations=500, lr_milestones=[400])
    cfg["save_interval"] = 1000
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    script = Path(sys.executable).parent / "corrvos"
    if not script.is_file():
        pytest.skip("the corrvos console script is not installed next to the interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(script), "train", "--config", str(config_file), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "tb").is_dir() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # a few steps in
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted by SIGINT" in out and "--resume" in out
    step = find_latest_checkpoint(tmp_path / "run")
    assert step.name.startswith("step_") and load_checkpoint(step)["global_step"] >= 1


def test_a_new_run_refuses_a_folder_with_an_earlier_run(tmp_path: Path, capsys):
    """One line naming --resume, a fresh folder and --overwrite; --overwrite deletes only what a run writes."""
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    out = tmp_path / "run"
    cfg = {**resume_config(root, out, 0), "save_interval": 100}
    cfg["stages"][0].update(iterations=1, lr_milestones=[])
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    args = ["train", "--config", str(config_file), "--no-progress"]
    assert cli_main(args) == 0
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    first = load_checkpoint(out / "checkpoints" / "step_0000001.pth")
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--resume {out}" in err[0] and "--out" in err[0] and "--overwrite" in err[0]
    assert "checkpoints" in err[0] and "config.yaml" in err[0]
    assert cli_main([*args, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"  # not written by corrvos: kept
    second = load_checkpoint(out / "checkpoints" / "step_0000001.pth")
    assert_same_state(first["model"], second["model"], "model")  # same seed, a clean second run


def test_resumed_run_appends_cleanly_to_tensorboard(tmp_path: Path):
    """Steps logged by the stopped run after its checkpoint are dropped: every step appears once in the curves."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = generate_dataset(tmp_path / "davis", sequences=4, frames=6, size=(64, 64), seed=11)
    out = tmp_path / "run"
    cfg = config_from_dict({**resume_config(root, out, 0), "save_interval": 2})
    assert not Trainer(cfg, progress=False).run(max_steps=3).finished  # checkpoints at 2 and 3 (the stop)
    (out / "checkpoints" / "step_0000003.pth").unlink()  # as if killed before step 3's checkpoint was written
    assert Trainer(cfg, resume=out, progress=False).run().finished  # resumes from step 2, re-runs step 3
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]
