"""Stage data for the trainer: datasets from a ``DataConfig``, a step-indexed sampler, and the DataLoader.

Determinism: the clip of sample position g of a stage (g = step * global_batch + slot) is a pure function of
(run seed, stage, g): the epoch is g // L (L = dataset length), the index is a seeded permutation of that epoch
at g % L, and the dataset item is a pure function of (dataset seed, epoch, index) (``corrvos.data.clips``). The
max skip of the curriculum and the fine-tune phase are functions of the step. Each sample key carries (index, epoch,
max_skip, finetune) to the worker, which sets them on its copy of the dataset (the fine-tune copy: the same clips
without the per-frame affine transform, XMem's last iterations) before reading the item, so DataLoader workers, DDP
ranks and resumed runs all see the same clips, and resuming needs only the step.

Augmentation: ``data.augment`` "auto" takes the official presets of the model's family, a family name those of
that family (``Family.augment``: one recipe per dataset group, "video" for davis / youtube / synthetic / unlabeled,
"bl30k", "static"); the fine-tune phase drops the per-frame affine of whichever recipe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from corrvos.config import DatasetSpec, StageConfig, TrainConfig, resolve_data_root
from corrvos.data.sampling import SkipCurriculum
from corrvos.errors import ConfigError
from corrvos.training.distributed import DistInfo, barrier
from corrvos.training.schedules import derive_seed

__all__ = [
    "MixedDataset",
    "StepBatchSampler",
    "build_stage_dataset",
    "build_stage_loader",
    "resolve_dataset_root",
    "stage_augment",
]

logger = logging.getLogger(__name__)


def resolve_dataset_root(spec: DatasetSpec, cfg: TrainConfig, out_dir: Path) -> Path:
    """Absolute folder of ``spec``: absolute roots as is, else under ``data_root`` ($CORRVOS_DATA).

    An empty synthetic root means ``<out_dir>/synthetic_data``.
    """
    if spec.kind == "synthetic" and not spec.root:
        return out_dir / "synthetic_data"
    if spec.kind == "unlabeled" and not spec.root:
        return out_dir / "synthetic_unlabeled"
    root = Path(spec.root).expanduser()
    if root.is_absolute():
        return root
    base = resolve_data_root(cfg)
    if base is None:
        if spec.kind == "synthetic":
            return out_dir / root
        raise ConfigError(f"dataset root {spec.root!r} is relative but neither data_root nor $CORRVOS_DATA is set")
    return base / root


def _ensure_synthetic(spec: DatasetSpec, root: Path, seed: int, dist_info: DistInfo) -> None:
    """Generate the synthetic dataset at ``root`` unless it exists (rank 0 writes, others wait): DAVIS layout for
    ``synthetic``, frame folders for a generated ``unlabeled`` source (other videos: another seed)."""
    layout = "unlabeled" if spec.kind == "unlabeled" else "davis"
    done = (root / "ImageSets").is_dir() if layout == "davis" else len(list(root.glob("synth*"))) >= spec.sequences
    if dist_info.is_main and not done:
        from corrvos.data.synthetic import generate_dataset

        logger.info("generating the synthetic %s dataset (%d sequences) in %s", layout, spec.sequences, root)
        generate_dataset(
            root,
            sequences=spec.sequences,
            frames=spec.frames,
            size=(spec.size[0], spec.size[1]),
            seed=seed if layout == "davis" else seed + 1,
            layout=layout,
        )
    barrier(dist_info)


def stage_augment(kind: str, recipe: str, crop_size: int, *, arch: str, finetune: bool = False):
    """The ``ClipAugmentConfig`` of a dataset kind under ``recipe`` ("auto": the family of ``arch``; or a family
    name); ``finetune`` drops the per-frame affine."""
    from dataclasses import replace

    from corrvos.data.transforms import AffineRange
    from corrvos.families import family, family_of_arch

    owner = family_of_arch(arch) if recipe == "auto" else family(recipe)
    group = kind if kind in ("bl30k", "static") else "video"
    augment = owner.augment[group](crop_size)
    return replace(augment, frame_affine=AffineRange()) if finetune else augment


def _one_dataset(
    spec: DatasetSpec, root: Path, stage: StageConfig, seed: int, *, arch: str, finetune: bool = False
) -> Dataset:
    from corrvos.data import clips

    data = stage.data
    common = {
        "num_frames": data.num_frames,
        "max_objects": 1 if stage.single_object else data.max_objects,
        "seed": seed,
    }
    video = {"max_skip": data.max_skip_values[0], "short_videos": "skip", "sampling": data.sampling}
    subset = None if spec.subset is None else root / spec.subset
    augment = stage_augment(spec.kind, data.augment, data.crop_size, arch=arch, finetune=finetune)
    if spec.kind in ("davis", "synthetic"):
        if subset is None:
            return clips.davis_clip_dataset(root, split="train", augment=augment, **video, **common)
        return clips.VOSClipDataset(
            root / "JPEGImages" / "480p",
            root / "Annotations" / "480p",
            subset=subset,
            augment=augment,
            **video,
            **common,
        )
    if spec.kind == "youtube":
        return clips.youtube_clip_dataset(root, subset=subset, augment=augment, **video, **common)
    if spec.kind == "bl30k":
        from corrvos.data.bl30k import bl30k_clip_dataset

        return bl30k_clip_dataset(root, augment=augment, **video, **common)
    if spec.kind == "static":
        from corrvos.data.static import StaticPseudoVideoDataset

        return StaticPseudoVideoDataset(root, augment=augment, **common)
    if spec.kind == "unlabeled":
        from corrvos.data.unlabeled import UnlabeledClipDataset

        return UnlabeledClipDataset(root, augment=augment, **video, **common)
    raise ConfigError(f"unknown dataset kind {spec.kind!r}")  # pragma: no cover - the config Literal forbids it


def build_stage_dataset(
    cfg: TrainConfig, stage: StageConfig, *, out_dir: Path, dist_info: DistInfo, finetune: bool = False
) -> Dataset:
    """Concatenate the stage's sources; a source with ``repeat: k`` appears k times with different item seeds.

    ``finetune`` builds the same items without the per-frame affine transform (the fine-tune phase). With
    ``unlabeled`` sources the result is a :class:`MixedDataset`: the labeled items first, then the unlabeled ones.
    """
    parts: list[Dataset] = []
    unlabeled: list[Dataset] = []
    for i, spec in enumerate(stage.data.datasets):
        root = resolve_dataset_root(spec, cfg, out_dir)
        if spec.kind == "synthetic" or (spec.kind == "unlabeled" and not spec.root):
            _ensure_synthetic(spec, root, cfg.seed, dist_info)
        for k in range(spec.repeat):
            seed = derive_seed(cfg.seed, stage.name, "data", i, k) & 0x7FFFFFFF
            part = _one_dataset(spec, root, stage, seed, arch=cfg.model.arch, finetune=finetune)
            (unlabeled if spec.kind == "unlabeled" else parts).append(part)
    if unlabeled:
        return MixedDataset(parts, unlabeled)
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


class MixedDataset(ConcatDataset):
    """The labeled datasets of a stage followed by its unlabeled ones; items ``< num_labeled`` are labeled."""

    def __init__(self, labeled: list[Dataset], unlabeled: list[Dataset]) -> None:
        super().__init__([*labeled, *unlabeled])
        self.num_labeled = sum(len(d) for d in labeled)  # type: ignore[arg-type]


class _KeyedItems(Dataset):
    """Dataset view whose items are addressed by (index, epoch, max_skip, finetune) keys (set on the worker's copy).

    ``finetune`` picks the fine-tune copy of the dataset (same items, no per-frame affine) when there is one.
    """

    def __init__(self, dataset: Dataset, finetune_dataset: Dataset | None = None) -> None:
        self.dataset = dataset
        self.finetune_dataset = finetune_dataset
        if finetune_dataset is not None and len(finetune_dataset) != len(dataset):  # type: ignore[arg-type]
            raise ValueError("the fine-tune dataset must hold the same items as the stage's dataset")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int, bool]):
        from corrvos.data.clips import set_dataset_epoch

        index, epoch, max_skip, finetune = key
        dataset = self.finetune_dataset if finetune and self.finetune_dataset is not None else self.dataset
        set_dataset_epoch(dataset, epoch, max_skip=max_skip)
        return dataset[index]


class StepBatchSampler:
    """Yields this rank's sample keys for steps ``start_step, start_step + 1, ...`` up to ``iterations``.

    Args:
        length: dataset length L.
        global_batch: clips per step over all ranks.
        rank, world_size: this process's slice of every global batch.
        seed: permutation seed (one permutation of the L items per epoch).
        iterations: stage length (the curriculum's denominator and the end of iteration).
        max_skip_values, max_skip_fractions: the curriculum (:meth:`SkipCurriculum.from_values`).
        start_step: first step to yield (resume).
        finetune_iterations: the last N steps are flagged as the fine-tune phase; the curriculum's fractions then
            count over the ``iterations - N`` steps before it (XMem).
        num_labeled: items ``0 .. num_labeled - 1`` are labeled, the rest unlabeled (a :class:`MixedDataset`);
            None: all labeled.
        unlabeled_share: fraction of every global batch drawn from the unlabeled items: ``round(share x batch)``
            clips, each process taking the same number of both kinds; the two kinds are permuted separately
            (one permutation per epoch of each).
    """

    def __init__(
        self,
        *,
        length: int,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        iterations: int,
        max_skip_values: list[int],
        max_skip_fractions: list[float],
        start_step: int = 0,
        finetune_iterations: int = 0,
        num_labeled: int | None = None,
        unlabeled_share: float = 0.0,
    ) -> None:
        if global_batch % world_size:
            raise ConfigError(
                f"batch_size {global_batch} is global and must be divisible by the {world_size} processes"
            )
        num_labeled = length if num_labeled is None else num_labeled
        n_unlabeled = round(unlabeled_share * global_batch) if num_labeled < length else 0
        if n_unlabeled % world_size:
            raise ConfigError(
                f"data.unlabeled_share gives {n_unlabeled} unlabeled clips per batch, which must be divisible by the "
                f"{world_size} processes (each takes the same share)"
            )
        self.length, self.global_batch = length, global_batch
        self.local_batch = global_batch // world_size
        self.rank, self.seed, self.iterations = rank, seed, iterations
        self.curriculum = SkipCurriculum.from_values(max_skip_values, max_skip_fractions)
        self.start_step = start_step
        self.finetune_start = iterations - finetune_iterations
        # (first item, number of items, clips per global batch, permutation seed tag) of each pool
        self.pools = [(0, num_labeled, global_batch - n_unlabeled, "perm")]
        if n_unlabeled:
            self.pools.append((num_labeled, length - num_labeled, n_unlabeled, "perm-unlabeled"))
        self._perms: dict[str, tuple[int, torch.Tensor]] = {}

    def __len__(self) -> int:
        return max(self.iterations - self.start_step, 0)

    def _index(self, position: int, pool: int = 0) -> tuple[int, int]:
        offset, size, _, tag = self.pools[pool]
        epoch = position // size
        cached = self._perms.get(tag)
        if cached is None or cached[0] != epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, tag, epoch))
            cached = (epoch, torch.randperm(size, generator=gen))
            self._perms[tag] = cached
        return offset + int(cached[1][position % size]), epoch

    def keys_for_step(self, step: int) -> list[tuple[int, int, int, bool]]:
        max_skip = self.curriculum.at_step(step, self.finetune_start)
        finetune = step >= self.finetune_start
        keys = []
        for pool, (_, _, per_batch, _) in enumerate(self.pools):
            local = per_batch // (self.global_batch // self.local_batch)  # this process's clips of this pool
            first = step * per_batch + self.rank * local
            keys += [(*self._index(first + j, pool), max_skip, finetune) for j in range(local)]
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int, int, bool]]]:
        for step in range(self.start_step, self.iterations):
            yield self.keys_for_step(step)


def build_stage_loader(
    dataset: Dataset,
    *,
    cfg: TrainConfig,
    stage: StageConfig,
    dist_info: DistInfo,
    start_step: int,
    finetune_dataset: Dataset | None = None,
) -> DataLoader:
    """DataLoader over the stage's remaining steps (one batch per step, this rank's share of the global batch).

    ``finetune_dataset`` serves the stage's last ``data.finetune_iterations`` steps.
    """
    from corrvos.data.clips import collate_clips

    sampler = StepBatchSampler(
        length=len(dataset),
        global_batch=stage.batch_size,
        rank=dist_info.rank,  # type: ignore[arg-type]
        world_size=dist_info.world_size,
        seed=derive_seed(cfg.seed, stage.name),
        iterations=stage.iterations,
        max_skip_values=stage.data.max_skip_values,
        max_skip_fractions=stage.data.max_skip_fractions,
        start_step=start_step,
        finetune_iterations=stage.data.finetune_iterations,
        num_labeled=getattr(dataset, "num_labeled", None),
        unlabeled_share=stage.data.unlabeled_share,
    )
    return DataLoader(
        _KeyedItems(dataset, finetune_dataset),
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate_clips,
        pin_memory=dist_info.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=2 if cfg.num_workers > 0 else None,
    )
