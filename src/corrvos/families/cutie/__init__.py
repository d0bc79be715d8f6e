"""The Cutie family (hkchengrex/Cutie, Cheng et al., CVPR 2024): inference and training (L_SEG; the correspondence
losses are not validated on it yet).

- :mod:`.network`: the ``Cutie`` network with named stages (base: ResNet-50 pixel encoder; small: ResNet-18), with
  the official state_dict layout (527 / 359 entries); :mod:`.blocks` and :mod:`.transformer`: its parts;
- :mod:`.memory` and :mod:`.recurrence`: its inference memory (pixel working and long-term memory per object
  group, object memory) and its per-frame recurrence;
- :mod:`.unroll` and :mod:`.losses`: its training clip unroller and its point-sampled L_SEG with the auxiliary
  losses (one step equals the official trainer's; tests/test_cutie_training.py);
- :mod:`.family`: its entry of the family table; :mod:`.weights`: its official weight files.

This ``__init__`` holds the family's card and imports no torch.
"""

from __future__ import annotations

from corrvos.families.card import FamilyCard

__all__ = ["CARD"]

CARD = FamilyCard(
    name="cutie",
    title="Cutie",
    inference_defaults={
        "top_k": 30,
        "mem_every": 5,
        "deep_update_every": -1,
        "enable_long_term": False,
        "min_mid_term_frames": 5,
        "max_mid_term_frames": 10,
        "num_prototypes": 128,
        "max_long_term_elements": 10000,
        "count_long_term_usage": True,
        "long_term_buffer": 2000,
        "max_mem_frames": 5,
        "stagger_updates": 5,
        "chunk_size": -1,
        "flip_aug": False,
        "internal_size": 480,
        "resize_mode": "bilinear",
    },
    driver_defaults={"youtube_all_frames": True},
    checkpoint_markers="Cutie: pixel_encoder / object_transformer",
    checkpoint_sources="Cutie",
    # eval_plus_config.yaml: DAVIS and MOSE at 720 pixels with a memory frame every 3 frames and 10 memory frames
    # (its YouTube-VOS setting is 600 pixels with mem_every 5)
    presets={"plus": {"max_mem_frames": 10, "mem_every": 3, "internal_size": 720}},
)
