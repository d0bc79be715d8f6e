"""Cutie inference (``corrvos.families.cutie``: memory and recurrence behind ``InferenceCore.step``) against the
official ``InferenceCore`` of hkchengrex/Cutie on the same weights: every frame's probabilities, on a video whose size
is not a multiple of 16 (the padding convention), with memory frames beyond ``max_mem_frames`` (eviction), the
stagger rule, an object introduced later (a second object group), long-term memory (consolidations and long-term
evictions, with usage), ``chunk_size`` and ``flip_aug``. Skips without ``.ref/Cutie``."""

from __future__ import annotations

import pytest
import torch

from corrvos.families.cutie.memory import CutieMemory
from corrvos.families.cutie.network import Cutie
from corrvos.families.cutie.recurrence import stagger_offsets
from corrvos.inference import InferenceCore
from corrvos.inference.config import inference_config_for
from official_cutie import build_official_cutie, have_official_cutie, official_eval_config, official_inference_core
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")


def test_stagger_offsets_follow_the_official_rule() -> None:
    assert stagger_offsets(5, 5) == {1, 2, 3, 4, 5}
    assert stagger_offsets(5, 9) == {1, 2, 3, 4, 5}
    assert stagger_offsets(10, 3) == {1, 6, 10}  # round(linspace(1, 10, 3)) = 1, 5.5 -> 6, 10
    assert stagger_offsets(6, 1) == {1}


def test_options_other_families_cannot_take_are_refused() -> None:
    from corrvos.families.stcn.network import STCN
    from corrvos.inference.memory_store import make_memory, make_recurrence

    stcn = STCN()
    config = inference_config_for(stcn, flip_aug=True)
    with pytest.raises(ValueError, match="flip_aug"):
        make_recurrence(stcn, config, make_memory(stcn, config))
    with pytest.raises(ValueError, match="chunk_size"):
        inference_config_for("cutie", chunk_size=0)
    with pytest.raises(ValueError, match="include_last"):
        CutieMemory(inference_config_for("cutie", include_last=True))


def _video(t: int, h: int, w: int) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """Frames of three moving squares on noise; masks on frame 0 (objects 1, 2) and frame 4 (object 3)."""
    g = torch.Generator().manual_seed(5)
    frames, masks = [], {}
    for i in range(t):
        img = torch.rand(3, h, w, generator=g) * 0.3
        label = torch.zeros(h, w, dtype=torch.long)
        for obj, (y, x, colour) in enumerate([(6, 6 + 2 * i, 0), (40, 50 - i, 1), (20 + i, 30, 2)], start=1):
            img[colour, y : y + 20, x : x + 20] = 0.9
            label[y : y + 20, x : x + 20] = obj
        frames.append(img)
        if i == 0:
            masks[i] = torch.where(label == 3, 0, label)
        if i == 4:
            masks[i] = torch.where(label == 3, 3, 0)
    return frames, masks


# long-term memory small enough for a 5 x 6 stride-16 map (30 elements per frame): a consolidation every second frame
# (T_max 4, T_min 2: 60 candidates -> 16 prototypes) and a long-term eviction every third one (LT_max 60, buffer 8)
_LONG_TERM = {"max_mid_term_frames": 4, "min_mid_term_frames": 2, "num_prototypes": 16}
_OFFICIAL_LONG_TERM = {"count_usage": True, "max_mem_frames": 4, "min_mem_frames": 2, "num_prototypes": 16}
_CASES = {
    "fifo": ({"mem_every": 2, "stagger_updates": 5, "max_mem_frames": 3}, {}),
    "stagger": ({"mem_every": 3, "stagger_updates": 2, "max_mem_frames": 5}, {}),
    "long_term": (
        {"mem_every": 1, "top_k": 10, "enable_long_term": True, "max_long_term_elements": 60, "long_term_buffer": 8}
        | _LONG_TERM,
        {"use_long_term": True, "long_term": _OFFICIAL_LONG_TERM | {"max_num_tokens": 60, "buffer_tokens": 8}},
    ),
    "chunk": ({"mem_every": 2, "chunk_size": 1}, {}),
    "flip": (
        {"mem_every": 2, "flip_aug": True, "enable_long_term": True, "max_long_term_elements": 60} | _LONG_TERM,
        {
            "use_long_term": True,
            "long_term": _OFFICIAL_LONG_TERM | {"max_num_tokens": 60, "buffer_tokens": 2000},
        },
    ),
}
_OFFICIAL_NAMES = {"max_mem_frames", "mem_every", "stagger_updates", "top_k", "chunk_size", "flip_aug"}


@pytest.mark.skipif(not have_official_cutie(), reason="needs .ref/Cutie and omegaconf")
@pytest.mark.parametrize("case", sorted(_CASES))
def test_probabilities_equal_the_official_inference(case: str) -> None:
    options, official_extra = _CASES[case]
    torch.manual_seed(0)
    ours = Cutie(key_encoder="resnet18").eval()
    with torch.no_grad():
        ours.key_proj.key_proj.weight.mul_(0.05)  # keep random-init similarities in exp's range (the official
        # top-k softmax exponentiates without subtracting the maximum)
    official = build_official_cutie("small").eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    shared = {k: v for k, v in options.items() if k in _OFFICIAL_NAMES}
    theirs = official_inference_core(official, official_eval_config("small", **shared, **official_extra))
    core = InferenceCore(ours, inference_config_for(ours, internal_size=None, **options))
    frames, masks = _video(24 if case == "long_term" else 12, 72, 88)  # 72 x 88: padded to 80 x 96
    worst, disagree, pixels = 0.0, 0, 0
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            end = i == len(frames) - 1
            mask = masks.get(i)
            got = core.step(frame, mask, end=end)
            objects = None if mask is None else sorted(int(v) for v in mask.unique() if v)
            want = theirs.step(frame, mask, objects, end=end)
            assert got.shape == want.shape, i
            worst = max(worst, float((got - want).abs().max()))
            disagree += int((got.argmax(0) != want.argmax(0)).sum())  # near-ties of a random-init network
            pixels += got[0].numel()
    print(f"{case}: worst {worst:.2g}, disagree {disagree}/{pixels}")
    assert worst <= 1e-4 and disagree / pixels <= 1e-4, (worst, disagree, pixels)
    assert core.memory.num_groups == 2
    if options.get("enable_long_term"):
        official_sizes = [theirs.memory.long_mem.size(b) for b in sorted(theirs.memory.long_mem.buckets)]
        assert [g.long.size for g in core.memory.groups] == official_sizes
        assert min(official_sizes) > 0  # consolidation happened in both groups
        if case == "long_term":
            assert official_sizes[0] == 60 - 16 - 8 + 16  # the first group's long-term memory was evicted
