"""Checks before a training run builds anything: :func:`check_training_inputs`.

A run that fails after minutes of set-up (or hours, at the first stage that reads a missing dataset) wastes the
user's time, so ``corrvos train`` looks at everything the config names first: the output folder, every dataset
root of every stage to run, the initial weights and the ImageNet weights, and reports every problem at once,
one line each, with the fix.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from corrvos.config import DatasetSpec, TrainConfig
from corrvos.errors import ConfigError, CorrvosError

__all__ = ["check_training_inputs", "imagenet_weights_problem"]

logger = logging.getLogger(__name__)

URL_TIMEOUT_S = 5.0
"""Seconds to wait for the ImageNet weight server before calling it unreachable."""


def _dataset_problem(spec: DatasetSpec, root: Path) -> str | None:
    """What is missing under ``root`` for a dataset of ``spec.kind`` (None when it looks complete)."""
    if spec.kind == "synthetic" or (spec.kind == "unlabeled" and not spec.root):
        return None  # generated on first use
    if not root.is_dir():
        return f"{root}: {spec.kind} dataset folder not found (set data_root / --data-root or fix the stage's root)"
    required: list[Path] = []
    if spec.kind == "davis":
        required = [root / "JPEGImages" / "480p", root / "Annotations" / "480p"]
        if spec.subset is None:
            required.append(root / "ImageSets" / "2017" / "train.txt")
    elif spec.kind == "youtube":
        base = root if (root / "JPEGImages").is_dir() else root / "train"
        required = [base / "JPEGImages", base / "Annotations"]
    elif spec.kind == "unlabeled":
        from corrvos.data.unlabeled import find_unlabeled_videos

        try:
            find_unlabeled_videos(root)
        except CorrvosError as exc:
            return str(exc)
    elif spec.kind == "bl30k":
        from corrvos.data.bl30k import find_bl30k_parts

        try:
            find_bl30k_parts(root)
        except CorrvosError as exc:
            return str(exc)
    if spec.subset is not None:
        required.append(root / spec.subset)
    missing = [p for p in required if not p.exists()]
    if missing:
        names = ", ".join(str(p.relative_to(root)) for p in missing)
        return f"{root}: not a complete {spec.kind} dataset, missing {names}"
    return None


def imagenet_weights_problem(
    source: bool | str,
    *,
    url_ok: Callable[[str], bool] | None = None,
    hub_dir: Path | None = None,
    archs: tuple[str, ...] = ("resnet50", "resnet18"),
) -> str | None:
    """Why the ImageNet backbone weights named by ``model.pretrained_backbones`` cannot be had (None if they can).

    Args:
        source: ``True`` (torchvision's files: the torch hub cache or the download URL) or a folder.
        url_ok: reachability test of a URL (default: an HTTP HEAD request with a short timeout).
        hub_dir: the torch hub folder (default ``torch.hub.get_dir()``).
        archs: the files the network needs (a "resnet18" key encoder needs only "resnet18").
    """
    from corrvos.models.backbones import TORCHVISION_URLS

    if source is False:
        return None
    if source is not True:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            return (
                f"{folder}: ImageNet weight folder not found (model.pretrained_backbones); put torchvision's "
                "resnet50-*.pth and resnet18-*.pth there, or use true to download them"
            )
        for arch in archs:
            found = sorted(folder.glob(f"{arch}*.pth"))
            if len(found) != 1:
                return f"{folder}: expected exactly one {arch}*.pth file, found {[p.name for p in found]}"
        return None
    if hub_dir is None:
        import torch

        hub_dir = Path(torch.hub.get_dir())
    url_ok = url_ok or _url_reachable
    from corrvos.weights import cached_file

    for arch, url in TORCHVISION_URLS.items():
        if arch not in archs:
            continue
        cached = hub_dir / "checkpoints" / url.rsplit("/", 1)[-1]
        if cached_file(f"{arch}-imagenet") is not None or cached.is_file() or url_ok(url):
            continue
        return (
            f"{url}: ImageNet {arch} weights are neither in the corrvos weight cache nor in the torch hub cache "
            f"({cached}) and the URL is unreachable; run `corrvos download imagenet` where there is internet, or "
            "set model.pretrained_backbones to a folder holding resnet50-*.pth and resnet18-*.pth"
        )
    return None


def _url_reachable(url: str) -> bool:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _init_weights_problems(cfg: TrainConfig, init: str) -> list[str]:
    """Multi-object initial weights cannot start a single-object stage (the trainer would refuse them only after
    building everything; it also checks the architecture, which needs the built network)."""
    from corrvos.models import load_model

    try:
        source = load_model(init, widen_single_object_file=False)
    except CorrvosError as exc:
        return [str(exc)]
    problems = []
    first = cfg.stages[0]
    if first.single_object and not source.single_object:
        later = ",".join(s.name for s in cfg.stages if not s.single_object)
        problems.append(
            f"{init}: holds a multi-object network, but the first stage {first.name!r} trains a single-object one; "
            f"run the later stages only (--stages {later or 'NAME'})"
        )
    args = source.init_args()
    for name in ("key_encoder", "width"):
        if args[name] != getattr(cfg.model, name):
            problems.append(
                f"{init}: holds a network with {name} {args[name]!r} but model.{name} is {getattr(cfg.model, name)!r}"
            )
    return problems


def check_training_inputs(cfg: TrainConfig, *, resuming: bool, url_ok: Callable[[str], bool] | None = None) -> None:
    """Raise one ConfigError listing every problem of ``cfg`` found without building anything.

    Checked: the device exists; the output folder is not a file; every dataset of every stage resolves to a
    folder holding its layout; ``model.init_checkpoint`` exists (``~`` expanded); the ImageNet weights are
    available (a local folder, the torch hub cache or a reachable URL) when a fresh run will load them.
    """
    from corrvos.devices import resolve_device
    from corrvos.training.data import resolve_dataset_root

    problems: list[str] = []
    try:
        resolve_device(cfg.device, option="device")
    except ConfigError as exc:
        problems.append(str(exc))
    out_dir = Path(cfg.out_dir).expanduser()
    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        problems.append(f"{blocker}: is a file, not a folder: choose another --out")
    seen: set[Path] = set()
    relative: list[str] = []
    for stage in cfg.stages:
        for spec in stage.data.datasets:
            try:
                root = resolve_dataset_root(spec, cfg, out_dir)
            except ConfigError:
                relative.append(spec.root)
                continue
            if root in seen:
                continue
            seen.add(root)
            problem = _dataset_problem(spec, root)
            if problem is not None:
                problems.append(f"stage {stage.name!r}: {problem}")
    if relative:
        problems.append(
            f"dataset roots {', '.join(relative)} are relative but neither data_root nor $CORRVOS_DATA is set: "
            "pass --data-root DIR (the folder holding them)"
        )
    init = cfg.model.init_checkpoint
    if init and not resuming:
        from corrvos.weights import resolve_model_path

        try:  # a file, or a weight name of `corrvos download` already in the cache
            found = Path(resolve_model_path(str(init))).expanduser().is_file()
        except CorrvosError as exc:
            problems.append(f"{exc} (--init-from / model.init_checkpoint)")
        else:
            if not found:
                problems.append(
                    f"{Path(init).expanduser()}: initial weights not found (--init-from / model.init_checkpoint)"
                )
            else:
                problems += _init_weights_problems(cfg, str(init))
    if not resuming and not init:
        archs = tuple(dict.fromkeys((cfg.model.key_encoder, "resnet18")))  # the key encoder's file, the trunk's
        problem = imagenet_weights_problem(cfg.model.pretrained_backbones, url_ok=url_ok, archs=archs)
        if problem is not None:
            problems.append(problem)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems, nothing was started:" + "".join(f"\n  {p}" for p in problems))
    logger.debug("preflight checks passed (%s)", os.fspath(out_dir))
