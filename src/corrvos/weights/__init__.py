"""corrvos.weights: named, downloadable weight files (official STCN / XMem / VOS_Correspondence checkpoints and the
torchvision ImageNet backbones) and the local cache that ``corrvos download`` fills.

- :data:`WEIGHTS` (:mod:`corrvos.weights.table`): name -> :class:`WeightFile` (URLs, cache file name, checksum).
- :func:`download` (:mod:`corrvos.weights.fetch`): resumable, SHA-256-checked download into the cache.
- :func:`cache_dir`, :func:`resolve_model_path`, :func:`cached_file` (:mod:`corrvos.weights.cache`): where the cache
  is (``--cache``, ``$CORRVOS_CACHE``, ``~/.cache/corrvos``) and how ``--model NAME`` and ``pretrained_backbones``
  find files in it.

Nothing here imports torch, so ``corrvos download`` starts fast.

Example::

    from corrvos.models import load_model
    from corrvos.weights import WEIGHTS, download

    path = download(WEIGHTS["xmem"])  # ~/.cache/corrvos/XMem.pth (skipped when cached and checked)
    model = load_model("xmem")  # the same file, found by name
"""

from __future__ import annotations

from corrvos.weights.cache import (
    CACHE_ENV,
    DownloadError,
    Status,
    cache_dir,
    cached_file,
    resolve_model_path,
    sha256_file,
    status,
)
from corrvos.weights.fetch import MIRROR_ENV, apply_mirror, download
from corrvos.weights.table import GROUPS, WEIGHTS, WeightFile, known_names, lookup, select

__all__ = [
    "CACHE_ENV",
    "GROUPS",
    "MIRROR_ENV",
    "WEIGHTS",
    "DownloadError",
    "Status",
    "WeightFile",
    "apply_mirror",
    "cache_dir",
    "cached_file",
    "download",
    "known_names",
    "lookup",
    "resolve_model_path",
    "select",
    "sha256_file",
    "status",
]
