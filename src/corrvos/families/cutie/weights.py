"""The official Cutie weight files (rows of :data:`corrvos.weights.WEIGHTS`; no torch import).

Provenance: hkchengrex/Cutie, GitHub release ``v1.0``; ``cutie/utils/download_models.py`` fetches
``cutie-base-mega.pth`` from it (and states its MD5, a6071de6136982e396851903ab4c083a; corrvos records SHA-256 only,
on first download), and its docs/TRAINING.md names the models trained on DAVIS + YouTube-VOS ("nomose"), + MOSE
("wmose") and the "mega" mix, each as base and small. The names other than ``cutie-base-mega.pth`` follow that
naming; they are not confirmed by a listing of the release.
"""

from __future__ import annotations

from corrvos.weight_file import WeightFile

__all__ = ["FILES"]

_RELEASE = "https://github.com/hkchengrex/Cutie/releases/download/v1.0/"
_PAGE = "https://github.com/hkchengrex/Cutie/releases/tag/v1.0"
_MIX = {
    "mega": "DAVIS + YouTube-VOS + MOSE + BURST + OVIS",
    "wmose": "DAVIS + YouTube-VOS + MOSE",
    "nomose": "DAVIS + YouTube-VOS",
}

FILES = tuple(
    WeightFile(
        f"cutie-{size}" + ("" if mix == "mega" else f"-{mix}"),
        f"cutie-{size}-{mix}.pth",
        (_RELEASE + f"cutie-{size}-{mix}.pth",),
        _PAGE,
        f"Cutie-{size} trained on {text}" + (", the official default" if mix == "mega" else ""),
        approx_mb=140 if size == "base" else 115,
    )
    for size in ("base", "small")
    for mix, text in _MIX.items()
)
