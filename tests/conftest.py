"""Shared test set-up: one intra-op thread per pytest-xdist worker.

``make test`` runs two workers on two cores; with torch's default of one thread per core each, four OpenMP threads
would share two cores, and their spin-waiting makes CPU steps several times slower.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
# the commands' automatic thread choice (corrvos.cpu_threads) reads this, so CLI calls in tests keep the count above
os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A random STCN saved as an official-format state_dict; the key projection is scaled down so that the
    unsubtracted top-k exponentials stay finite. Shared by the CLI tests."""
    from corrvos.families.stcn.network import STCN

    torch.manual_seed(0)
    model = STCN().eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(0.05)
    path = tmp_path_factory.mktemp("ckpt") / "stcn.pth"
    torch.save(model.state_dict(), path)
    return path


def paper_run_config(davis_root: Path, **overrides: Any) -> dict[str, Any]:
    """A two-step STCN run in paper mode (L_SEG + L_PCL + L_OCL on from step 0) on a DAVIS-layout folder, for
    tests that need a real training run (its log, checkpoints and projection head); ``overrides`` are top-level."""
    data = {"crop_size": 64, "datasets": [{"kind": "davis", "root": str(davis_root)}]}
    data |= {"max_skip_values": [2], "max_skip_fractions": []}
    stage = {"name": "main", "iterations": 2, "batch_size": 2, "lr": 1e-4, "lr_milestones": [1], "data": data}
    ramps = {f"{k}_ramp_{e}": (0 if e == "start" else 1) for k in ("pcl", "ocl") for e in ("start", "end")}
    cfg = {
        "model": {"arch": "stcn"},
        "loss": {"mode": "paper", **ramps},
        "stages": [stage],
        "num_workers": 0,
        "log_interval": 1,
        "image_interval": 0,
        "device": "cpu",
        "amp": "off",
    }
    return cfg | overrides
