"""Two-process gloo DDP on CPU: ranks read different clips yet keep identical parameters; torchrun + the CLI work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from corrvos.data.synthetic import generate_dataset
from corrvos.training.data import StepBatchSampler

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path):
    """Checkpoints are ~0.9 GB each (STCN + AdamW state); do not leave them in pytest's kept temp folders."""
    yield
    for path in [*tmp_path.rglob("*.pth"), *tmp_path.rglob("*.pt")]:
        path.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


XMEM = {"num_frames": 4, "num_ref_frames": 2, "max_objects": 3, "augment": "xmem", "sampling": "xmem", "crop_size": 32}


def ddp_config(root: Path, out: Path, iterations: int = 2, arch: str = "stcn") -> dict:
    cfg = _ddp_config(root, out, iterations)
    if arch == "xmem":
        cfg["model"] = {"arch": "xmem", "deep_update_prob": 0.5}
        cfg["loss"].update(dice_weight=1.0, dice_mode="xmem")
        cfg["stages"][0]["data"].update(XMEM)
    return cfg


def _ddp_config(root: Path, out: Path, iterations: int = 2) -> dict:
    return {
        "model": {"arch": "stcn"},
        "loss": {"mode": "paper", "pcl_ramp_start": 0, "pcl_ramp_end": 1, "ocl_ramp_start": 0, "ocl_ramp_end": 1},
        "stages": [
            {
                "name": "main",
                "iterations": iterations,
                "batch_size": 2,
                "lr": 1e-4,
                "lr_milestones": [],
                "data": {
                    "crop_size": 64,
                    "datasets": [{"kind": "davis", "root": str(root)}],
                    "max_skip_values": [2],
                    "max_skip_fractions": [],
                },
            }
        ],
        "num_workers": 0,
        "log_interval": 1,
        "image_interval": 0,
        "save_interval": 100,
        "device": "cpu",
        "amp": "off",
        "out_dir": str(out),
    }


def _worker(rank: int, world: int, port: int, root: str, out: str, arch: str = "stcn", sigterm_rank: int = -1) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    from corrvos.config import config_from_dict
    from corrvos.training.distributed import init_distributed, shutdown_distributed
    from corrvos.training.trainer import Trainer

    info = init_distributed("cpu")
    try:
        cfg = config_from_dict(ddp_config(Path(root), Path(out), arch=arch))
        trainer = Trainer(cfg, dist_info=info, progress=False)
        if rank == sigterm_rank:  # a signal that reaches one process only, after its first step
            import signal

            after_step = trainer.hooks.after_step

            def send_sigterm(record):
                after_step(record)
                if record.global_step == 1:
                    os.kill(os.getpid(), signal.SIGTERM)

            trainer.hooks.after_step = send_sigterm
        result = trainer.run()
        torch.save(
            {
                "model": trainer.model.state_dict(),
                "proj_head": trainer.proj_head.state_dict(),
                "backend": info.backend,
                "stopped_by": result.stopped_by,
                "global_step": result.global_step,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown_distributed(info)


def test_ranks_read_disjoint_shares_of_the_global_batch():
    kwargs = {
        "length": 10,
        "global_batch": 4,
        "world_size": 2,
        "seed": 5,
        "iterations": 3,
        "max_skip_values": [1, 2],
        "max_skip_fractions": [0.5],
    }
    r0 = list(StepBatchSampler(rank=0, **kwargs))
    r1 = list(StepBatchSampler(rank=1, **kwargs))
    single = list(StepBatchSampler(**{**kwargs, "world_size": 1}, rank=0))
    assert [len(b) for b in r0] == [2, 2, 2]
    for step in range(3):
        assert r0[step] + r1[step] == single[step]  # the two shares are the single-process global batch
    # positions 0..9 are one permutation (epoch 0), 10..11 start epoch 1; the curriculum switches at step 2
    first_epoch = [k for b in single for k in b][:10]
    assert sorted(k[0] for k in first_epoch) == list(range(10)) and {k[1] for k in first_epoch} == {0}
    assert [b[0][2] for b in single] == [1, 1, 2]
    resumed = list(StepBatchSampler(rank=0, start_step=2, **{**kwargs, "world_size": 1}))
    assert resumed == single[2:]


@pytest.mark.parametrize("arch", ["stcn", "xmem"])
def test_two_process_gloo_keeps_replicas_identical(tmp_path: Path, arch: str):
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=5, size=(64, 64), seed=5)
    out = tmp_path / "run"
    out.mkdir()
    args = (2, free_port(), str(root), str(out), arch)
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="spawn")
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["backend"] == r1["backend"] == "gloo"
    for part in ("model", "proj_head"):
        assert set(r0[part]) == set(r1[part])
        for key in r0[part]:
            assert torch.equal(r0[part][key], r1[part][key]), f"{part}.{key} differs between ranks"
    init = torch.load(out / "checkpoints" / "step_0000002.pth", weights_only=True)  # written by rank 0 only
    assert torch.equal(init["model"]["key_proj.key_proj.weight"], r0["model"]["key_proj.key_proj.weight"])


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path):
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=5, size=(64, 64), seed=5)
    out = tmp_path / "run"
    out.mkdir()
    args = (2, free_port(), str(root), str(out), "stcn", 1)
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="spawn")
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r1["stopped_by"] == "SIGTERM" and r0["stopped_by"] == "a signal on another process"
    assert r0["global_step"] == r1["global_step"] == 1  # of 2 iterations
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    saved = torch.load(out / "checkpoints" / "step_0000001.pth", weights_only=True)  # written by rank 0
    assert saved["global_step"] == 1
    assert not (out / "checkpoints" / "step_0000002.pth").exists()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["stcn", "xmem"])
def test_torchrun_cli_two_processes(tmp_path: Path, arch: str):
    import yaml

    root = generate_dataset(tmp_path / "davis", sequences=4, frames=5, size=(64, 64), seed=6)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(ddp_config(root, tmp_path / "run", iterations=1, arch=arch)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).parent / "corrvos"  # the console script is a Python file torchrun can run
    if not script.is_file():
        pytest.skip("the corrvos console script is not installed next to the interpreter")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        "train",
        "--config",
        str(config),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished at stage 'main' step 1" in proc.stdout
    assert (tmp_path / "run" / "checkpoints" / "main_final.pth").is_file()
