"""The STCN family (hkchengrex/STCN, and the wenguanwang/VOS_Correspondence layout of the paper's release).

- :mod:`.network`: the ``STCN`` network with named stages (both layouts, and corrvos's small variants);
- :mod:`.memory`: its inference memory (``MemoryBank``);
- :mod:`.family`: its entry of the family table (``FAMILY``): architectures and detection, inference defaults,
  training presets, recipe settings;
- :mod:`.weights`: its official weight files (no torch import, for ``corrvos download``).

This ``__init__`` holds the family's card (:class:`~corrvos.families.card.FamilyCard`) and imports no torch, so help
texts and the weight table can describe the family without loading a network.
"""

from __future__ import annotations

from corrvos.families.card import FamilyCard

__all__ = ["CARD"]

CARD = FamilyCard(
    name="stcn",
    title="STCN",
    inference_defaults={
        "top_k": 20,
        "mem_every": 5,
        "include_last": False,
        "internal_size": None,
        "resize_mode": "bicubic",
    },
    driver_defaults={"youtube_all_frames": False},
    checkpoint_markers="STCN: key_comp / decoder.compress; VOS_Correspondence: decoder.fuser",
    checkpoint_sources="STCN / VOS_Correspondence",
)
