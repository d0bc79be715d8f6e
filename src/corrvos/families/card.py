"""A family's card: the facts about a model family that help texts and the weight table need, without torch.

Each family package defines its ``CARD`` in its ``__init__`` (which imports nothing heavy), and its
:class:`~corrvos.families.base.Family` entry carries the same card, so ``corrvos --help`` and ``corrvos download``
can describe every family without importing a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FamilyCard"]


@dataclass(frozen=True)
class FamilyCard:
    """Attributes:
    name: the family's name, the ``family`` attribute of its networks ("stcn").
    title: its name in messages and help texts ("STCN").
    inference_defaults: the official evaluation options (``InferenceConfig`` fields); an option a family does
        not list is one it does not use.
    driver_defaults: conventions of the official evaluation drivers that are not engine options
        (``youtube_all_frames``).
    checkpoint_markers: how its state_dicts are told apart, for error messages.
    checkpoint_sources: the official releases it loads, for help texts ("STCN / VOS_Correspondence").
    presets: named sets of inference options (``--preset``; e.g. Cutie's "plus"); ``internal_size`` in a preset
        stands for ``--size``.
    """

    name: str
    title: str
    inference_defaults: Mapping[str, Any]
    driver_defaults: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_markers: str = ""
    checkpoint_sources: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
