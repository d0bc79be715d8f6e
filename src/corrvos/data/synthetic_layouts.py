"""Writers of synthetic datasets in the DAVIS and YouTube-VOS file layouts: :func:`generate_dataset`.

The videos come from :mod:`corrvos.data.synthetic_video`; :mod:`corrvos.data.synthetic` re-exports both.

Conventions:
- videos are named ``synth000``, ``synth001``, ... (``prefix`` + a 3-digit index; the default prefix is
  ``synth``, and only another prefix is recorded in the marker file, so default datasets are unchanged); video i
  is drawn from ``SeedSequence(seed).spawn(n)[i]`` (its content does not depend on how many videos are generated,
  nor on the prefix); the same arguments give byte-identical files;
- frames are JPEG (quality 95) named by their 5-digit frame number, label maps palette PNGs (DAVIS palette);
- a ``corrvos_synthetic.json`` file at the root (written first) records the arguments and the splits; a folder
  holding it may be regenerated in place (its layout folders are deleted first), any other non-empty folder is
  refused; the split lists (ImageSets / meta.json) are written last, so their presence means a complete dataset;
- unlabeled: ``<name>/00000.jpg, ...`` frame folders only (no masks, no splits): a set of unlabeled videos for
  the label-free losses (``{kind: unlabeled}`` training sources);
- YouTube-VOS: the frames of ``train/`` and ``valid/`` are the frames 0, 5, 10, ... of the rendered video, as in the
  real dataset; ``valid/Annotations/<vid>/<frame>.png`` exists only where some object first appears and holds only
  the objects that first appear there; meta.json lists, per object, the sampled frames where it is visible
  (train, with its category) or every sampled frame from its first appearance to the end (valid).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np

from corrvos.data.io import write_image, write_label
from corrvos.data.synthetic_video import SyntheticVideo, synthesize_video
from corrvos.errors import ConfigError, DataError
from corrvos.progress import progress_bar
from corrvos.utils import atomic_write_text, make_output_dir

__all__ = ["LAYOUTS", "MARKER", "SAMPLE_STEP", "generate_dataset"]

logger = logging.getLogger(__name__)

LAYOUTS = ("davis", "youtube", "unlabeled")
MARKER = "corrvos_synthetic.json"
SAMPLE_STEP = 5  # YouTube-VOS annotates every 5th frame
_LAYOUT_DIRS = ("JPEGImages", "Annotations", "ImageSets", "train", "valid", "valid_all_frames")
JPEG_QUALITY = 95
DEFAULT_PREFIX = "synth"
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _check_args(
    *, sequences: int, frames: int, size: tuple[int, ...], seed: int, layout: str, val_fraction: float, prefix: str
) -> None:
    if not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"--prefix must be a letter followed by letters, digits, '_' or '-', got {prefix!r}")
    if sequences < 1:
        raise ConfigError(f"--sequences must be >= 1, got {sequences}")
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    if len(size) != 2 or min(size) < 16:
        raise ConfigError(f"--size must be HxW with H, W >= 16, got {'x'.join(map(str, size))}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction must lie in (0, 1), got {val_fraction}")


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` ready: create it, or clear a previous synthetic dataset; refuse anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "output path exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise DataError(
                out_dir,
                f"output folder is not empty and holds no {MARKER} (not a corrvos synthetic "
                "dataset); choose an empty or new folder",
            )
        for name in _LAYOUT_DIRS:
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
        try:
            old_prefix = str(json.loads((out_dir / MARKER).read_text()).get("prefix", DEFAULT_PREFIX))
        except (OSError, ValueError, AttributeError):
            old_prefix = DEFAULT_PREFIX
        if not _PREFIX_RE.fullmatch(old_prefix):
            old_prefix = DEFAULT_PREFIX
        for folder in out_dir.glob(f"{old_prefix}[0-9][0-9][0-9]*"):  # the unlabeled layout's video folders
            if folder.is_dir():
                shutil.rmtree(folder)
        (out_dir / MARKER).unlink()
    make_output_dir(out_dir)


def _splits(names: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    if len(names) == 1:
        return list(names), list(names)
    n_val = min(max(1, round(len(names) * val_fraction)), len(names) - 1)
    return names[:-n_val], names[-n_val:]


def _write_unlabeled_video(root: Path, name: str, video: SyntheticVideo) -> None:
    for t in range(video.frames.shape[0]):
        write_image(root / name / f"{t:05d}.jpg", video.frames[t], quality=JPEG_QUALITY)


def _write_davis_video(root: Path, name: str, video: SyntheticVideo) -> None:
    for t in range(video.frames.shape[0]):
        write_image(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", video.frames[t], quality=JPEG_QUALITY)
        write_label(root / "Annotations" / "480p" / name / f"{t:05d}.png", video.labels[t])


def _write_youtube_video(root: Path, name: str, video: SyntheticVideo, *, split: str) -> dict:
    """Write one video of the ``train`` or ``valid`` split; returns its meta.json entry."""
    n_frames = video.frames.shape[0]
    sampled = list(range(0, n_frames, SAMPLE_STEP))
    for t in sampled:
        write_image(root / split / "JPEGImages" / name / f"{t:05d}.jpg", video.frames[t], quality=JPEG_QUALITY)
    objects: dict[str, dict] = {}
    if split == "train":
        for t in sampled:
            write_label(root / split / "Annotations" / name / f"{t:05d}.png", video.labels[t])
        for obj_id, kind in video.categories.items():
            present = [f"{t:05d}" for t in sampled if (video.labels[t] == obj_id).any()]
            objects[str(obj_id)] = {"category": kind, "frames": present}
    else:
        for t in range(n_frames):
            write_image(
                root / f"{split}_all_frames" / "JPEGImages" / name / f"{t:05d}.jpg",
                video.frames[t],
                quality=JPEG_QUALITY,
            )
        for t in sorted(set(video.first_frame.values())):
            new_ids = [k for k, first in video.first_frame.items() if first == t]
            label = np.where(np.isin(video.labels[t], new_ids), video.labels[t], 0).astype(np.uint8)
            write_label(root / split / "Annotations" / name / f"{t:05d}.png", label)
        for obj_id, first in video.first_frame.items():
            objects[str(obj_id)] = {"frames": [f"{t:05d}" for t in sampled if t >= first]}
    return {"objects": objects}


def generate_dataset(
    out_dir: str | Path,
    *,
    sequences: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    layout: str = "davis",
    val_fraction: float = 0.5,
    progress: bool = False,
    prefix: str = DEFAULT_PREFIX,
) -> Path:
    """Write a complete synthetic dataset in the DAVIS or the YouTube-VOS layout.

    DAVIS: ``JPEGImages/480p/<seq>/00000.jpg``, ``Annotations/480p/<seq>/00000.png`` (every frame, DAVIS palette),
    ``ImageSets/2017/{train,val}.txt`` and ``ImageSets/2016/{train,val}.txt``. YouTube-VOS: ``train/`` (every 5th
    frame, all annotated, meta.json with categories), ``valid/`` (every 5th frame, annotations only where an object
    first appears, meta.json) and ``valid_all_frames/JPEGImages`` (every frame). See docs/data.md.

    Args:
        out_dir: destination; must be empty, absent, or a previous corrvos synthetic dataset (which is replaced).
        sequences: number of videos (>= 1); the last ``round(sequences * val_fraction)`` (at least 1) form the
            validation split, the others the training split (a single video is in both).
        frames: frames per video (>= 1); for YouTube-VOS, the length of the all-frames video.
        size: (H, W) of the frames, each >= 16.
        seed: random seed (>= 0).
        layout: "davis" or "youtube".
        val_fraction: fraction of the videos in the validation split, in (0, 1).
        progress: show a progress bar.
        prefix: video names are ``<prefix>000``, ``<prefix>001``, ... (a letter, then letters, digits, ``_``,
            ``-``); another prefix than the default ``synth`` is recorded in ``corrvos_synthetic.json``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: an argument is out of range. DataError: ``out_dir`` holds something else.
    """
    out_dir = Path(out_dir)
    _check_args(
        sequences=sequences,
        frames=frames,
        size=tuple(size),
        seed=seed,
        layout=layout,
        val_fraction=val_fraction,
        prefix=prefix,
    )
    size = (int(size[0]), int(size[1]))
    _prepare(out_dir)
    names = [f"{prefix}{i:03d}" for i in range(sequences)]
    train, val = _splits(names, val_fraction)
    # the marker is written first, so that an interrupted generation can be regenerated in place
    record = {
        "generator": "corrvos.data.synthetic",
        "format_version": 1,
        "layout": layout,
        "sequences": sequences,
        "frames": frames,
        "size": list(size),
        "seed": seed,
        "val_fraction": val_fraction,
        "train": train,
        "val": val,
    }
    if prefix != DEFAULT_PREFIX:  # the default is not recorded: default datasets stay byte-identical
        record["prefix"] = prefix
    atomic_write_text(out_dir / MARKER, json.dumps(record, indent=1) + "\n")
    children = np.random.SeedSequence(seed).spawn(sequences)
    youtube_meta: dict[str, dict] = {"train": {}, "valid": {}}
    bar = progress_bar(names, desc=f"synth ({layout})", unit="video", disable=not progress)
    for name, child in zip(bar, children, strict=True):
        if layout in ("davis", "unlabeled"):
            video = synthesize_video(child, frames, size)
            (_write_davis_video if layout == "davis" else _write_unlabeled_video)(out_dir, name, video)
            continue
        video = synthesize_video(child, frames, size, late_objects=True, sample_step=SAMPLE_STEP, shuffle_ids=True)
        for split, members in (("train", train), ("valid", val)):
            if name in members:
                youtube_meta[split][name] = _write_youtube_video(out_dir, name, video, split=split)
    if layout == "davis":
        for year in ("2016", "2017"):
            for split, members in (("train", train), ("val", val)):
                atomic_write_text(out_dir / "ImageSets" / year / f"{split}.txt", "".join(f"{n}\n" for n in members))
    elif layout == "youtube":
        for split, videos in youtube_meta.items():
            atomic_write_text(out_dir / split / "meta.json", json.dumps({"videos": videos}, indent=1) + "\n")
    logger.debug(
        "wrote a synthetic %s dataset of %d videos (%d frames, %dx%d) to %s",
        layout,
        sequences,
        frames,
        size[0],
        size[1],
        out_dir,
    )
    return out_dir
