"""Typed training configuration: dataclass schemas, YAML overrides, dotted ``--set`` overrides (the consistency
checks are in :mod:`corrvos.config_checks`).

The schema (and every default) lives in code. A YAML experiment file holds only overrides of those defaults; it
may name a ``base:`` file (relative to itself) whose overrides it extends. Stages are an explicit list of named
blocks with identical fields (``static``, ``bl30k``, ``main``); a YAML ``stages:`` list replaces the default list,
and each block is merged onto :class:`StageConfig` defaults. ``--set a.b=c`` overrides are applied last; list
elements are addressed by index or, for stages, by name (``stages.main.iterations=1000``). Values of ``--set`` are
parsed as YAML scalars/flow sequences (``--set stages.main.lr_milestones=[100,200]``) and type-checked.

Every batch size is **global** (summed over all processes); each of W processes loads ``batch_size / W`` clips.

Unknown keys, wrong types and inconsistent values raise :class:`corrvos.errors.ConfigError` naming the key and the
file (or ``--set``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from corrvos.config_checks import has_aux_key_head, stage_loss_config, validate
from corrvos.errors import ConfigError
from corrvos.losses.config import LossConfig
from corrvos.yaml_dataclasses import build_dataclass, read_yaml_chain, yaml_problem

__all__ = [
    "DATA_ROOT_ENV",
    "DataConfig",
    "DatasetSpec",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "has_aux_key_head",
    "load_config",
    "resolve_data_root",
    "stage_loss_config",
]

DATA_ROOT_ENV = "CORRVOS_DATA"
"""Environment variable naming the data root when ``data_root`` is not set in the config."""


@dataclass
class ModelConfig:
    """Which network to train and where its initial weights come from."""

    arch: str = field(default_factory=lambda: _default_arch())
    """An architecture of the family table (``corrvos.families``; default: its first family's first): "stcn"
    (public hkchengrex/STCN network), "stcn_corr" (the VOS_Correspondence network: fusion decoder + the auxiliary
    ``key_proj2`` head used by the "official" correspondence losses), "xmem" (hkchengrex/XMem)."""
    aux_key_head: bool | None = None
    """Build the auxiliary ``key_proj2`` head that the "official" losses train (None: as the architecture defines,
    e.g. "stcn_corr"; true elsewhere adds it, our extension of the release, which has it on STCN only)."""
    deep_update_prob: float = 0.2
    """XMem: probability that encoding a predicted frame's value also deep-updates the hidden state (XMem's
    ``deep_update_prob``); models without a hidden state (STCN) ignore it."""
    key_encoder: Literal["resnet50", "resnet18"] = "resnet50"
    """Key encoder: "resnet50" (official) or "resnet18" (BasicBlocks [2, 2, 2], stride-16 features of 4 * width
    channels instead of 16 * width; corrvos's small variant, not an official architecture)."""
    width: int = 64
    """Base channel width of the ResNets (official 64; a positive multiple of 8). Every ResNet stage of both
    encoders, the value channels, the decoder (and XMem's hidden state) scale by width / 64; keys stay 64-d.
    A width other than 64 trains from random init only (no ImageNet weights fit it)."""
    pretrained_backbones: bool | str = False
    """ImageNet initialisation of the ResNet encoders (passed to ``corrvos.models.build_model``; width 64 only)."""
    init_checkpoint: str | None = None
    """Fine-tune from this official or corrvos checkpoint (weights only; ``corrvos train --init-from``)."""


@dataclass
class DatasetSpec:
    """One training source of a stage."""

    kind: Literal["davis", "youtube", "static", "bl30k", "synthetic", "unlabeled"] = "davis"
    root: str = ""
    """Folder of the dataset, relative to ``data_root`` unless absolute. For ``synthetic`` the folder is created
    (under the run's output folder when empty) and filled by ``corrvos.data.synthetic.generate_dataset``.
    ``unlabeled``: a folder of videos (frame folders or video files, no masks) whose clips feed only the
    label-free losses (``data.unlabeled_share`` of every batch); an empty root generates synthetic unlabeled
    videos (``sequences`` / ``frames`` / ``size``) under the run's folder."""
    repeat: int = 1
    """Oversampling factor (STCN repeats DAVIS 5 times next to YouTube-VOS)."""
    subset: str | None = None
    """Optional text file (relative to ``root``) listing the sequences to keep, one per line."""
    sequences: int = 8
    """synthetic (and generated unlabeled) only: number of generated sequences."""
    frames: int = 12
    """synthetic (and generated unlabeled) only: frames per generated sequence."""
    size: list[int] = field(default_factory=lambda: [96, 96])
    """synthetic (and generated unlabeled) only: [H, W] of the generated frames."""


@dataclass
class DataConfig:
    """Clip sampling of one stage."""

    datasets: list[DatasetSpec] = field(
        default_factory=lambda: [
            DatasetSpec(kind="davis", root="DAVIS/2017/trainval", repeat=5),
            DatasetSpec(kind="youtube", root="YouTube/train_480p"),
        ]
    )
    """Sources of the stage, concatenated (default: STCN's main mix, DAVIS-2017 train x5 + YouTube-VOS train)."""
    crop_size: int = 384
    """Square training crop (pixels); a multiple of 16."""
    num_frames: int = 3
    """T, frames per training clip (STCN: 3; XMem: 8, 3 in the static stage)."""
    num_ref_frames: int | None = None
    """Memory frames of frame t once t > num_ref_frames: frame 0 plus randomly drawn earlier frames (XMem: 3, 2 in
    the static stage); null: every earlier frame (STCN)."""
    max_objects: int = 2
    """N, object slots per clip (STCN: a target object and, when present, a second one)."""
    max_skip_values: list[int] = field(default_factory=lambda: [5, 10, 15, 20, 25, 5])
    """Max-skip curriculum: the largest gap between sampled frames, ``max_skip_values[i]`` from fraction
    ``max_skip_fractions[i-1]`` of the stage on (STCN's defaults; see ``corrvos.data.sampling.SkipCurriculum``).
    The fractions increase strictly within (0, 1]."""
    max_skip_fractions: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.9])
    augment: str = "auto"
    """Augmentation recipe: "auto" (the official recipe of the model's family) or a family name of the table
    (``corrvos.families``): "stcn" (bicubic) or "xmem" (bilinear; BL30K without the per-frame affine). Static
    images use the static-image recipe (STCN's, which XMem also uses)."""
    sampling: Literal["auto", "chain", "window"] = "auto"
    """Frame sampler (``corrvos.data.sampling.sample_frames``): "chain" (STCN's three-frame chain), "window" (XMem's:
    each frame within the max skip of an already chosen one, any T) or "auto" (chain for 3 frames, else window)."""
    unlabeled_share: float = 0.0
    """Fraction of every batch drawn from the stage's ``unlabeled`` datasets (round(share x batch_size) clips,
    the same number on every process); those clips feed only the label-free losses (L_PCL in paper mode,
    temp / cross_key in official mode), never L_SEG or L_OCL. 0 when the stage has no unlabeled dataset."""
    finetune_iterations: int = 0
    """The last N iterations of the stage (included in ``iterations``) sample clips without the per-frame affine
    transform: XMem's "finetune" phase (10K in s2 / s3). The max-skip fractions then count over the iterations
    before it, as XMem's do."""


@dataclass
class OptimConfig:
    """Optimiser, parameter groups and step safety."""

    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 1e-7
    encoder_lr_scale: float = 1.0
    """lr factor of the key/value encoders' stem and layer1 (and the value encoder's fuser); official: 0.2."""
    encoder_deep_lr_scale: float = 1.0
    """lr factor of the key/value encoders' layer2 and layer3; official: 0.4."""
    gamma: float = 0.1
    """MultiStepLR decay factor at each milestone."""
    eps: float = 1e-8
    """Adam / AdamW epsilon (torch's default; Cutie's main training, under AMP, uses 1e-6)."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value (None: no clipping, as STCN)."""
    freeze_bn: bool = True
    """Keep BatchNorm layers in eval mode (running statistics frozen, affine parameters trained), as STCN."""
    max_nonfinite: int = 5
    """Stop training after this many non-finite losses in a row (each one skips its step)."""


@dataclass
class StageConfig:
    """One training stage: its length, optimisation and data. Each stage restarts the optimiser and lr schedule."""

    name: str = "main"
    iterations: int = 150_000
    batch_size: int = 16
    """Global batch size (clips per optimiser step over all processes)."""
    lr: float = 1e-5
    lr_milestones: list[int] = field(default_factory=lambda: [125_000])
    """Iterations (within the stage) at which the lr is multiplied by ``optim.gamma``."""
    lr_warmup: int = 0
    """Linear learning-rate warm-up over the first ``lr_warmup`` iterations of the stage: step k (0-based) trains
    at ``lr * (k + 1) / lr_warmup``, then the milestone schedule applies (0: none, as STCN and XMem)."""
    single_object: bool = False
    """Train a single-object model (static-image pre-training); later multi-object stages widen it."""
    data: DataConfig = field(default_factory=DataConfig)
    loss: dict[str, Any] = field(default_factory=dict)
    """Overrides of the top-level ``loss`` block for this stage only (keys are LossConfig fields)."""


@dataclass
class TrainConfig:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    seed: int = 14159265
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision: "auto" = bf16 on CUDA when supported, else fp16 with a gradient scaler; off on CPU."""
    out_dir: str = "runs/train"
    data_root: str | None = None
    """Root of all dataset folders; falls back to the CORRVOS_DATA environment variable."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:K"."""
    num_workers: int = 4
    """DataLoader workers per process."""
    log_interval: int = 50
    """Steps between TensorBoard scalar logs."""
    image_interval: int = 1000
    """Steps between TensorBoard image panels (0: never)."""
    save_interval: int = 5000
    """Steps between checkpoints (the end of every stage is always saved)."""
    keep_checkpoints: int = 3
    """How many periodic checkpoints to keep (stage-final ones are always kept). 0: no resumable checkpoints at
    all (no periodic ones, stage ends write only ``<stage>_final.pth``; a stopped run still writes one), for short
    runs where disk matters more than resuming (the demo)."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms(True)`` (slower on CUDA; needed for bit-exact resume there)."""
    weights_only_checkpoints: bool = False
    """Checkpoints hold the weights and the position only, not the optimiser, scheduler and RNG states: about a
    third of the size (a full STCN step file is about 650 MB), loadable as ``--model``, but ``--resume`` cannot
    continue from them (``--init-from`` can start a new run). For demo-size runs where disk matters."""


def _default_arch() -> str:
    from corrvos.families import default_arch

    return default_arch()


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a (possibly partial) nested dict of overrides."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    cfg = build_dataclass(TrainConfig, data, where="", source=source)
    validate(cfg, source)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (only str/int/float/bool/None/list/dict) of ``cfg``; stored in checkpoints."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# ----------------------------------------------------------------------------------------------------- loading


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a full nested config dict (from :func:`config_to_dict`); returns a copy.

    Keys must exist, except inside free-form mappings (a stage's ``loss`` block). List items are addressed by
    index; stages also by name.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"{source} {item!r}: empty key component")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} {item!r}: cannot parse the value: {yaml_problem(exc)}") from exc
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                index = _list_index(node, part)
                if index is None:
                    raise ConfigError(f"{source} {item!r}: no list item '{here}'")
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                free_form = depth >= 1 and parts[depth - 1] == "loss" and parts[0] == "stages"
                if part not in node and not free_form:
                    raise ConfigError(f"{source} {item!r}: unknown key '{here}'")
                if last:
                    node[part] = value
                else:
                    node = node[part]
            else:
                raise ConfigError(f"{source} {item!r}: '{'.'.join(parts[:depth])}' is not a mapping or list")
    return data


def _list_index(items: list[Any], part: str) -> int | None:
    if part.lstrip("-").isdigit():
        index = int(part)
        return index if -len(items) <= index < len(items) else None
    for i, entry in enumerate(items):
        if isinstance(entry, dict) and entry.get("name") == part:
            return i
    return None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a training configuration: defaults <- YAML file (and its ``base`` chain) <- ``--set`` overrides.

    Args:
        path: YAML file of overrides, or None for the defaults.
        overrides: ``key.sub=value`` strings applied after the file.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, wrong type or inconsistent values.
    """
    source = str(path) if path is not None else "defaults"
    data = read_yaml_chain(Path(path)) if path is not None else {}
    cfg = config_from_dict(data, source=source)
    if overrides:
        full = apply_overrides(config_to_dict(cfg), overrides)
        cfg = config_from_dict(full, source=f"{source} + --set")
    return cfg


def resolve_data_root(cfg: TrainConfig) -> Path | None:
    """``cfg.data_root``, else ``$CORRVOS_DATA``, else None (then dataset roots must be absolute)."""
    root = cfg.data_root or os.environ.get(DATA_ROOT_ENV)
    return Path(root).expanduser() if root else None
