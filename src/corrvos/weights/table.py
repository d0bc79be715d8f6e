"""The table of named weight files that ``corrvos download`` fetches and ``--model NAME`` finds.

Rows: each model family's official files, defined with their provenance in its package
(``corrvos.families.<name>.weights``, in the order of the family table), then the torchvision IMAGENET1K_V1
ResNet-50 / ResNet-18 files that :mod:`corrvos.models.backbones` loads.

Checksums: no publisher states a SHA-256 for these files, and none is invented here. ``sha256`` is therefore
``None`` everywhere; torchvision's file names embed the first 8 hex digits of the SHA-256, which is checked
(``sha256_prefix``). Without a known hash the first download is recorded instead (trust on first use, see
:mod:`corrvos.weights.fetch`): later checks compare against that record, which detects a corrupted or replaced
cache file but cannot prove that the first download was the published one. Fill ``sha256`` in once a hash has
been verified against a trusted copy.

``approx_mb`` is for display only: 4 bytes per parameter of the architecture (parameter counts of the official
state_dicts, as :func:`corrvos.models.build_model` reproduces them); it is never checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from corrvos.errors import ConfigError
from corrvos.weight_file import WeightFile

__all__ = ["GROUPS", "WEIGHTS", "WeightFile", "known_names", "lookup", "select"]

_TORCHVISION = "https://download.pytorch.org/models/"


def _entries() -> list[WeightFile]:
    """Every model family's official files (``corrvos.families.<name>.weights.FILES``, in table order), then the
    ImageNet backbones."""
    import importlib

    from corrvos.families import NAMES

    rows = [w for name in NAMES for w in importlib.import_module(f"corrvos.families.{name}.weights").FILES]
    return [
        *rows,
        WeightFile(
            "resnet50-imagenet",
            "resnet50-0676ba61.pth",
            (_TORCHVISION + "resnet50-0676ba61.pth",),
            "https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html",
            "torchvision ResNet-50 IMAGENET1K_V1 (key encoder init)",
            sha256_prefix="0676ba61",
            approx_mb=102,
        ),
        WeightFile(
            "resnet18-imagenet",
            "resnet18-f37072fd.pth",
            (_TORCHVISION + "resnet18-f37072fd.pth",),
            "https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet18.html",
            "torchvision ResNet-18 IMAGENET1K_V1 (value encoder init)",
            sha256_prefix="f37072fd",
            approx_mb=47,
        ),
    ]


#: name -> entry. Tests (and users with private mirrors) may add entries.
WEIGHTS: dict[str, WeightFile] = {w.name: w for w in _entries()}

#: group name -> names (``all`` is every entry that has a URL, computed at lookup time).
GROUPS: dict[str, tuple[str, ...]] = {"imagenet": ("resnet50-imagenet", "resnet18-imagenet")}


def known_names() -> list[str]:
    """Every entry name, in table order."""
    return list(WEIGHTS)


def lookup(name: str) -> WeightFile | None:
    """The entry called ``name`` (case-insensitive) or whose cache file name is ``name``; ``None`` if unknown."""
    key = name.strip().lower()
    if key in WEIGHTS:
        return WEIGHTS[key]
    return next((w for w in WEIGHTS.values() if w.filename.lower() == key), None)


def select(names: Iterable[str]) -> list[WeightFile]:
    """Entries for names, group names (``imagenet``) and ``all`` (every entry with a URL), without duplicates.

    Raises:
        ConfigError: an unknown name (the message lists the known names and groups).
    """
    chosen: dict[str, WeightFile] = {}
    for name in names:
        key = name.strip().lower()
        if key == "all":
            chosen.update((w.name, w) for w in WEIGHTS.values() if w.urls)
        elif key in GROUPS:
            chosen.update((n, WEIGHTS[n]) for n in GROUPS[key])
        elif (entry := lookup(key)) is not None:
            chosen[entry.name] = entry
        else:
            raise ConfigError(
                f"{name}: unknown weight name (known: {', '.join(known_names())}; groups: all, {', '.join(GROUPS)})"
            )
    return list(chosen.values())
