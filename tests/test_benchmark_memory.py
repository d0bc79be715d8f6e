"""What ``benchmarks/long_video.py`` measures about a memory: the bytes of the tensors it holds and its long-term
size, for every family of the table (a memory that moved package once read as 0 bytes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from corrvos.families import NAMES, family
from corrvos.inference import InferenceCore
from corrvos.inference.config import inference_config_for
from corrvos.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from long_video import long_term_size, pingpong, tensor_bytes


def test_pingpong_plays_the_clip_back_and_forth() -> None:
    assert [pingpong(t, 3) for t in range(7)] == [0, 1, 2, 1, 0, 1, 2]
    assert [pingpong(t, 1) for t in range(3)] == [0, 0, 0]


@pytest.mark.parametrize("name", NAMES)
def test_tensor_bytes_sees_every_family_s_memory(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **family(name).tiny_args).eval()
    long_term = "enable_long_term" in family(name).inference_defaults
    config = inference_config_for(
        model, internal_size=None, mem_every=1, top_k=4, **({"enable_long_term": True} if long_term else {})
    )
    core = InferenceCore(model, config)
    mask = torch.zeros(32, 48, dtype=torch.long)
    mask[4:20, 8:30] = 1
    for t in range(3):
        core.step(torch.rand(3, 32, 48), mask if t == 0 else None)
    # keys [1, CK, M] of float32 at least (other tensors, buffers allocated ahead, can only add to it)
    key_bytes = core.memory.num_elements * model.key_dim * 4
    assert tensor_bytes(core.memory) >= key_bytes > 0
    if long_term:
        assert long_term_size(core.memory) == 0  # 3 frames: nothing consolidated yet
