"""Shared test set-up: one intra-op thread per pytest-xdist worker.

``make test`` runs two workers on two cores; with torch's default of one thread per core each, four OpenMP threads
would share two cores, and their spin-waiting makes CPU steps several times slower.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A random STCN saved as an official-format state_dict; the key projection is scaled down so that the
    unsubtracted top-k exponentials stay finite. Shared by the CLI tests."""
    from corrvos.models.stcn import STCN

    torch.manual_seed(0)
    model = STCN().eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(0.05)
    path = tmp_path_factory.mktemp("ckpt") / "stcn.pth"
    torch.save(model.state_dict(), path)
    return path
