"""The model-family table: one line per family, and the lookups every engine goes through.

A family is one package, ``corrvos.families.<name>``, that owns its networks, checkpoint detection, inference
memory and defaults, training presets, recipe settings and official weight files (the contract is
:class:`~corrvos.families.base.Family`). :data:`NAMES` below is the table: adding a family is its package plus
one name here (and its configs). ``InferenceCore``, the trainer, the CLI and the demo use only the functions of
this module; a test fails when a family name or an architecture branch appears anywhere else in the code.

This module imports no torch: ``corrvos download`` reads the families' weight files through it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from corrvos.errors import CheckpointError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from corrvos.families.base import Architecture, Family
    from corrvos.families.card import FamilyCard

__all__ = [
    "NAMES",
    "architecture",
    "architectures",
    "canonical_arch",
    "cards",
    "checkpoint_sources",
    "default_arch",
    "detect_architecture",
    "families",
    "family",
    "family_of",
    "family_of_arch",
    "option_defaults",
    "option_users",
    "titles",
]

#: The family table: each name is a package ``corrvos.families.<name>`` whose ``family`` module defines ``FAMILY``
#: (whose first architecture carries the family's name) and whose ``__init__`` defines its torch-free ``CARD``.
NAMES: tuple[str, ...] = ("stcn", "xmem", "cutie")

_MAX_LISTED = 20


@functools.cache
def cards() -> dict[str, FamilyCard]:
    """name -> :class:`~corrvos.families.card.FamilyCard`, in table order, without importing torch."""
    return {name: importlib.import_module(f"corrvos.families.{name}").CARD for name in NAMES}


def option_defaults(option: str) -> str:
    """The official value of an inference option per family that uses it, for help texts ("STCN 20, XMem 30")."""
    return ", ".join(
        f"{c.title} {c.inference_defaults[option]}" for c in cards().values() if option in c.inference_defaults
    )


def option_users(option: str) -> str:
    """The families whose memory uses an inference option, for help texts ("XMem")."""
    return " / ".join(c.title for c in cards().values() if option in c.inference_defaults)


def presets() -> dict[str, dict[str, dict[str, Any]]]:
    """Family title -> preset name -> options, of the families that have named presets (torch-free)."""
    return {c.title: {n: dict(v) for n, v in c.presets.items()} for c in cards().values() if c.presets}


def preset_options(model_or_family: Any, name: str) -> dict[str, Any]:
    """The options of preset ``name`` of a model's family (or a family name); ValueError naming the presets."""
    card = family(model_or_family).card if isinstance(model_or_family, str) else family_of(model_or_family).card
    if name not in card.presets:
        known = ", ".join(sorted(card.presets)) or "none"
        raise ValueError(f"{card.title} has no preset {name!r} (its presets: {known})")
    return dict(card.presets[name])


def titles() -> str:
    """Every family's title, for help texts ("STCN / XMem")."""
    return " / ".join(c.title for c in cards().values())


@functools.cache
def families() -> dict[str, Family]:
    """name -> :class:`~corrvos.families.base.Family`, in table order (imports the families' networks)."""
    table = {}
    for name in NAMES:
        entry = importlib.import_module(f"corrvos.families.{name}.family").FAMILY
        if entry.name != name or entry.default_arch != name:
            raise RuntimeError(
                f"corrvos.families.{name}.family.FAMILY is named {entry.name!r} with first architecture "
                f"{entry.default_arch!r}; both must be {name!r} (a family's default architecture carries its name)"
            )
        table[name] = entry
    return table


def default_arch() -> str:
    """The architecture a config without ``model.arch`` trains: the first family's first."""
    return families()[NAMES[0]].default_arch


def family(name: str) -> Family:
    """The family called ``name`` (case-insensitive). Raises ValueError for an unknown name."""
    table = families()
    key = str(name).lower()
    if key not in table:
        raise ValueError(f"unknown model family {name!r}; expected one of {list(table)}")
    return table[key]


def family_of(model: Any) -> Family:
    """The family of a network (its ``family`` attribute, the ``VOSModel`` contract). TypeError without one."""
    name = getattr(model, "family", None)
    if not isinstance(name, str):
        raise TypeError(
            f"{type(model).__name__} has no 'family' attribute: corrvos models follow the VOSModel protocol "
            "(corrvos.models.base), whose 'family' names their entry of the family table (corrvos.families)"
        )
    return family(name)


@functools.cache
def architectures() -> dict[str, Architecture]:
    """canonical architecture name -> :class:`~corrvos.families.base.Architecture`, over every family."""
    return {a.name: a for f in families().values() for a in f.architectures}


@functools.cache
def _aliases() -> dict[str, str]:
    return {alias: a.name for a in architectures().values() for alias in a.aliases}


def canonical_arch(name: str) -> str:
    """The canonical architecture name of ``name`` (case-insensitive; aliases accepted). ValueError if unknown."""
    key = str(name).lower()
    key = _aliases().get(key, key)
    if key not in architectures():
        known = sorted([*architectures(), *_aliases()])
        raise ValueError(f"unknown architecture {name!r}; expected one of {known}")
    return key


def architecture(name: str) -> Architecture:
    """The table entry of an architecture name (aliases accepted)."""
    return architectures()[canonical_arch(name)]


def family_of_arch(name: str) -> Family:
    """The family that builds architecture ``name``."""
    arch = canonical_arch(name)
    return next(f for f in families().values() if any(a.name == arch for a in f.architectures))


def checkpoint_sources() -> str:
    """The official releases the families load, for help texts ("STCN / VOS_Correspondence / XMem"); no torch."""
    return " / ".join(c.checkpoint_sources or c.title for c in cards().values())


def detect_architecture(state: Mapping[str, Tensor], *, path: Any = "<checkpoint>") -> tuple[str, dict[str, Any]]:
    """Find the architecture of a state_dict and its constructor arguments.

    Returns:
        (canonical name, constructor kwargs), e.g. ("xmem", {"single_object": False, "key_dim": 64, ...}).

    Raises:
        CheckpointError: no entry (or several) recognise the keys, or the value encoder's conv1 is malformed.
    """
    found = []
    for a in architectures().values():
        try:
            kwargs = a.detect(state)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if kwargs is not None:
            found.append((a.name, kwargs))
    if len(found) != 1:
        listed = sorted(state)[:_MAX_LISTED]
        what = "unknown architecture: no entry" if not found else f"ambiguous: {[n for n, _ in found]}"
        markers = "; ".join(f.checkpoint_markers for f in families().values() if f.checkpoint_markers)
        raise CheckpointError(
            f"{path}: {what} of the family table matches these keys ({markers}); first keys: {listed}"
        )
    return found[0]


def arch_of(model: nn.Module) -> str:
    """The canonical architecture name of a built network (detected from its own state_dict keys)."""
    return detect_architecture(model.state_dict(), path=type(model).__name__)[0]


__all__ += ["arch_of"]
