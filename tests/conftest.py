"""Shared test set-up: one intra-op thread per pytest-xdist worker.

``make test`` runs two workers on two cores; with torch's default of one thread per core each, four OpenMP threads
would share two cores, and their spin-waiting makes CPU steps several times slower.
"""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
