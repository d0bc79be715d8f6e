"""The XMem family (hkchengrex/XMem, Cheng & Schwing, ECCV 2022).

- :mod:`.network` and :mod:`.modules`: the ``XMem`` network with named stages (and corrvos's small variants);
- :mod:`.memory`: its inference memory (working and long-term memory, ``XMemMemory``);
- :mod:`.family`: its entry of the family table (``FAMILY``);
- :mod:`.weights`: its official weight files (no torch import, for ``corrvos download``).

This ``__init__`` holds the family's card (:class:`~corrvos.families.card.FamilyCard`) and imports no torch, so help
texts and the weight table can describe the family without loading a network.
"""

from __future__ import annotations

from corrvos.families.card import FamilyCard

__all__ = ["CARD"]

CARD = FamilyCard(
    name="xmem",
    title="XMem",
    inference_defaults={
        "top_k": 30,
        "mem_every": 5,
        "deep_update_every": -1,
        "enable_long_term": True,
        "min_mid_term_frames": 5,
        "max_mid_term_frames": 10,
        "num_prototypes": 128,
        "max_long_term_elements": 10000,
        "internal_size": 480,
        "resize_mode": "bilinear",
    },
    driver_defaults={"youtube_all_frames": True},
    checkpoint_markers="XMem: key_proj.d_proj / key_proj.e_proj",
    checkpoint_sources="XMem",
)
