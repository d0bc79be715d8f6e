"""The table of named weight files that ``corrvos download`` fetches and ``--model NAME`` finds.

Provenance of every entry (checked in the publishers' own READMEs and in downstream scripts that download them):

- hkchengrex/XMem, GitHub release ``v1.0`` (linked from its ``docs/INFERENCE.md``): ``XMem.pth`` (s03, the
  default), ``XMem-s012.pth`` (with BL30K), ``XMem-s2.pth`` (no static-image pre-training),
  ``XMem-no-sensory.pth`` and the stage-01 file ``XMem-s01.pth``.
- hkchengrex/STCN, README "Pretrained models": the s012 model ``stcn.pth`` and ``stcn_s03.pth`` on Google Drive
  (file ids from the README; ``download_model.py`` fetches the first one with gdown), and the s0 / s01 models on
  the GitHub release ``1.0``. The release asset names ``stcn.pth`` / ``stcn_s0.pth`` / ``stcn_s01.pth`` are
  inferred from the README and from downstream projects that load ``saves/stcn_s01.pth``; they are not
  confirmed by a listing of the release, so ``stcn`` falls back to Google Drive when the release URL fails.
- wenguanwang/VOS_Correspondence: the README says that code, checkpoint and training log are on the GitHub release
  ``CKPT``, but no source we could check names the asset, so the entry has no URL: download it by hand, save it
  under the cache name below (or pass its path to ``--model``).
- torchvision IMAGENET1K_V1 ResNet-50 / ResNet-18 (the files :mod:`corrvos.models.backbones` loads).

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
from dataclasses import dataclass

from corrvos.errors import ConfigError

__all__ = ["GROUPS", "WEIGHTS", "WeightFile", "known_names", "lookup", "select"]

_XMEM = "https://github.com/hkchengrex/XMem/releases/download/v1.0/"
_STCN = "https://github.com/hkchengrex/STCN/releases/download/1.0/"
_GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
_TORCHVISION = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weight file.

    Attributes:
        name: the name used on the command line (``corrvos download NAME``, ``--model NAME``); lower case.
        filename: the file name in the cache folder (the publisher's name where there is one).
        urls: download locations, tried in order; empty when the file must be fetched by hand.
        page: the page that publishes the file (shown when every URL fails or there is none).
        description: one line for ``corrvos download --list``.
        sha256: the full SHA-256 hex digest when it is known from a trusted source, else ``None``.
        sha256_prefix: a known prefix of the SHA-256 (torchvision's file names carry 8 hex digits), else ``None``.
        approx_mb: approximate size in MB (1e6 bytes), for display only.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    page: str
    description: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    approx_mb: float | None = None


def _entries() -> list[WeightFile]:
    xmem_page = "https://github.com/hkchengrex/XMem/releases/tag/v1.0"
    stcn_page = "https://github.com/hkchengrex/STCN#pretrained-models"
    return [
        WeightFile(
            "stcn",
            "stcn.pth",
            (_STCN + "stcn.pth", _GDRIVE.format("1mRrE0uCI2ktdWlUgapJI_KmgeIiF2eOm")),
            stcn_page,
            "STCN s012 (BL30K pre-training), the official default",
            approx_mb=218,
        ),
        WeightFile(
            "stcn-s03",
            "stcn_s03.pth",
            (_GDRIVE.format("1JllXPJZola0G-g1aUQfXe9nLMBioj-aH"),),
            stcn_page,
            "STCN s03 (no BL30K)",
            approx_mb=218,
        ),
        WeightFile(
            "stcn-s0", "stcn_s0.pth", (_STCN + "stcn_s0.pth",), stcn_page, "STCN stage 0 (static images)", approx_mb=218
        ),
        WeightFile(
            "stcn-s01", "stcn_s01.pth", (_STCN + "stcn_s01.pth",), stcn_page, "STCN stages 0+1 (+BL30K)", approx_mb=218
        ),
        WeightFile(
            "stcn-corr",
            "stcn_corr.pth",
            (),
            "https://github.com/wenguanwang/VOS_Correspondence/releases/tag/CKPT",
            "VOS_Correspondence STCN (CVPR 2023); manual download",
        ),
        WeightFile(
            "xmem", "XMem.pth", (_XMEM + "XMem.pth",), xmem_page, "XMem s03, the official default", approx_mb=249
        ),
        WeightFile(
            "xmem-s012", "XMem-s012.pth", (_XMEM + "XMem-s012.pth",), xmem_page, "XMem s012 (BL30K)", approx_mb=249
        ),
        WeightFile(
            "xmem-s2",
            "XMem-s2.pth",
            (_XMEM + "XMem-s2.pth",),
            xmem_page,
            "XMem s2 (no static pre-training)",
            approx_mb=249,
        ),
        WeightFile("xmem-s01", "XMem-s01.pth", (_XMEM + "XMem-s01.pth",), xmem_page, "XMem stages 0+1", approx_mb=249),
        WeightFile(
            "xmem-no-sensory",
            "XMem-no-sensory.pth",
            (_XMEM + "XMem-no-sensory.pth",),
            xmem_page,
            "XMem without sensory memory",
            approx_mb=239,
        ),
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
