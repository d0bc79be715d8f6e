"""The memory interface of streaming inference: what :class:`corrvos.inference.InferenceCore` asks of a memory.

Each model family implements :class:`MemoryStore` in its own package (``corrvos.families.<name>.memory``) and names
the class in its :class:`~corrvos.families.base.Family` entry; ``InferenceCore`` makes one per video through
:func:`make_memory`.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from corrvos.inference.config import InferenceConfig
from corrvos.types import QueryFeatures

__all__ = ["MemoryStore", "make_memory", "make_recurrence"]


class MemoryStore(Protocol):
    """What ``InferenceCore`` needs from a memory.

    ``groups`` lists, per object group (objects introduced by the same mask) in introduction order, the channels of
    its objects among the N object channels of ``value`` / the readout.
    """

    #: reading changes the memory (usage counts), so frames cannot be skipped.
    reads_change_state: bool

    def add(self, feats: QueryFeatures, value: Tensor, groups: list[list[int]], *, temporary: bool = False) -> None:
        """Insert a frame: its key features and values [1, N, CV, h, w]; groups past the known ones start here."""
        ...

    def read(self, model: Any, feats: QueryFeatures, groups: list[list[int]]) -> Tensor:
        """Readout [1, N, CV, h, w] (channel order) of one query frame."""
        ...

    @property
    def num_elements(self) -> int:
        """Memory positions held (for memory-growth reports)."""
        ...


def make_memory(model: Any, config: InferenceConfig, *, video_length: int | None = None) -> MemoryStore:
    """The memory of ``model``'s family for one video (the ``memory`` class of its family table entry)."""
    from corrvos.families import family_of

    return family_of(model).memory(config, video_length=video_length)


def make_recurrence(model: Any, config: InferenceConfig, memory: MemoryStore) -> Any:
    """The per-frame recurrence of ``model``'s family for one video (``Family.recurrence``; default
    :class:`~corrvos.inference.recurrence.MatchingRecurrence`)."""
    from corrvos.families import family_of
    from corrvos.inference.recurrence import MatchingRecurrence

    cls = family_of(model).recurrence or MatchingRecurrence
    if config.flip_aug and not cls.supports_flip_aug:
        raise ValueError(f"flip_aug (averaging with the mirror image) is not supported by {family_of(model).title}")
    return cls(model, config, memory)
