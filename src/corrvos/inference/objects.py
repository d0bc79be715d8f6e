"""Object bookkeeping for streaming inference: user object ids <-> tensor channels, and object groups.

Conventions:
- object ids are the user's labels (1..255 in palette PNGs). They are immutable: the same id is always the same
  object. Ids need not be contiguous (YouTube-VOS skips some).
- channels are positions in the probability tensor ``prob [N+1, H, W]``: channel 0 is the background and object
  ids follow in ascending order in channels 1..N. When an object with a smaller id appears later in the video,
  the channels of the larger ids shift by one; code that holds per-object tensors asks this manager for the
  current channels instead of storing them.
- a group is the set of objects introduced by the same mask (the same frame). Each group reads its own part of
  the memory, starting at the frame that introduced it (the scheme of hkchengrex/STCN:inference_core_yv.py,
  where every object has its own memory bank that starts at its first annotated frame; objects of one group
  share that bank here because their keys are identical).

The idea of separating immutable ids from temporary positions follows hkchengrex/Cutie:cutie/inference/
object_manager.py; the code is written independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["ObjectGroup", "ObjectManager", "scatter_groups"]


@dataclass
class ObjectGroup:
    """Objects introduced together.

    Attributes:
        ids: the object ids of the group, ascending.
        first_frame: index (in ``step`` calls) of the frame whose mask introduced the group.
    """

    ids: list[int]
    first_frame: int


@dataclass
class ObjectManager:
    """Maps object ids to channels and remembers in which group each object was introduced."""

    groups: list[ObjectGroup] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """All known object ids, ascending (channel k+1 holds ``ids[k]``)."""
        return sorted(i for g in self.groups for i in g.ids)

    @property
    def num_objects(self) -> int:
        return sum(len(g.ids) for g in self.groups)

    def __contains__(self, obj_id: int) -> bool:
        return any(obj_id in g.ids for g in self.groups)

    def add(self, ids: list[int], frame: int) -> ObjectGroup | None:
        """Register the ids among ``ids`` that are new as one group introduced at ``frame``.

        Returns:
            the new group, or ``None`` when every id was already known.
        """
        new = sorted({int(i) for i in ids if int(i) not in self})
        if not new:
            return None
        group = ObjectGroup(ids=new, first_frame=frame)
        self.groups.append(group)
        return group

    def channel(self, obj_id: int) -> int:
        """Object channel (0-based among the N objects, i.e. ``prob`` channel minus one) of ``obj_id``."""
        return self.ids.index(obj_id)

    def channels(self, ids: list[int]) -> list[int]:
        """Object channels (0-based among the N objects) of several ids, in the given order."""
        order = {obj_id: k for k, obj_id in enumerate(self.ids)}
        return [order[i] for i in ids]


def scatter_groups(per_group: list[Tensor], groups: list[list[int]]) -> Tensor:
    """Per-group tensors [N_g, ...] (group order) -> one [N, ...] tensor in channel order (``groups``: the channels of
    each group). With one group the channels are 0..N-1 in order and its tensor is returned as it is."""
    if len(per_group) == 1:
        return per_group[0]
    out = per_group[0].new_empty(sum(len(c) for c in groups), *per_group[0].shape[1:])  # [N, ...]
    for channels, t in zip(groups, per_group, strict=True):
        out[channels] = t
    return out
