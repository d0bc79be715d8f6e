"""Data of the ablation (``benchmarks/ablation.py``): the training set, the held-out stress set and its crossings.

The held-out set is written by :func:`corrvos.data.synthetic.generate_dataset` (DAVIS layout). Its videos are
re-synthesised in memory to find the *crossing frames*: video ``i`` of a dataset generated with ``seed`` is
``synthesize_video(SeedSequence(seed).spawn(n)[i], frames, size)`` for any ``n > i`` (children of a
``SeedSequence`` do not depend on how many are spawned), so the regenerated label maps equal the files on disk;
:func:`verify_labels` checks it for every evaluated video.

Stress selection: candidates ``synth000``, ``synth001``, ... are drawn in order and a video is kept when some
annotated object is crossed by an unannotated distractor (same kind, colour and texture family as a target) on at
least ``min_crossing`` of the evaluated frames (1 .. T-2, as the DAVIS protocol scores). Every video of the
generator also has target-target occlusions (60 %) and an object that leaves the frame and comes back (50 %);
their counts are recorded. The kept names are written to ``ImageSets/{2016,2017}/val.txt``, which ``corrvos
infer`` and ``evaluate_davis`` read.

Crossing (per object and frame): the full silhouette of an unannotated distractor, dilated by a disk of
``radius`` pixels, meets the full silhouette of the object. Full silhouettes (each sprite rendered alone, before
occlusion) count a frame where the distractor hides the object entirely, or passes behind it, as a crossing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablation_stats import crossing_frames
from corrvos.data.synthetic import SyntheticVideo, generate_dataset, synthesize_video
from corrvos.data.synthetic_render import render_scene
from corrvos.utils import atomic_write_text

__all__ = [
    "EvalSet",
    "empty_after_first_frame",
    "foreground_ratio",
    "make_eval_set",
    "regenerate_video",
    "sprite_silhouettes",
    "verify_labels",
    "video_crossings",
    "visible_cells",
]


@dataclass
class EvalSet:
    """The held-out stress set.

    Attributes:
        root: DAVIS-layout folder.
        names: evaluated videos (the ``val`` list).
        crossing: name -> bool [K, T-2], crossing cells of objects 1..K on the evaluated frames 1..T-2.
        visible: name -> bool [K, T-2], cells where object k is visible in the ground truth (area > 0); an empty
            prediction scores J = F = 1 on the other cells, so scores over these cells are not inflated by them.
        stats: name -> per-video counts (crossing cells, occlusions, re-appearances, ...).
        candidates: videos synthesised to find them.
    """

    root: Path
    names: list[str]
    crossing: dict[str, np.ndarray]
    visible: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    candidates: int = 0


def regenerate_video(seed: int, index: int, frames: int, size: tuple[int, int]) -> SyntheticVideo:
    """Video ``index`` (``synth{index:03d}``) of a DAVIS-layout ``generate_dataset(..., seed=seed)`` call."""
    child = np.random.SeedSequence(seed).spawn(index + 1)[index]
    return synthesize_video(child, frames, tuple(size))


def sprite_silhouettes(video: SyntheticVideo) -> np.ndarray:
    """bool [n_sprites, T, H, W]: where each sprite of the scene covers the frame, ignoring occlusion."""
    out = []
    for obj in video.scene.objects:
        alone = render_scene(dataclasses.replace(video.scene, objects=[obj]))
        out.append(alone.instances > 0)  # [T, H, W]
    return np.stack(out)


def video_crossings(video: SyntheticVideo, *, radius: int = 2) -> np.ndarray:
    """bool [K, T]: frames where a distractor crosses annotated object k + 1 (K = number of object ids)."""
    silhouettes = sprite_silhouettes(video)  # [S, T, H, W]
    lut = video.label_of_instance[1:]  # [S] object id of each sprite (0: not annotated)
    ids = sorted(video.first_frame)
    objects = np.stack([silhouettes[int(np.flatnonzero(lut == k)[0])] for k in ids])  # [K, T, H, W]
    distractors = [i for i, obj in enumerate(video.scene.objects) if obj.role == "distractor"]
    return crossing_frames(objects, silhouettes[distractors], radius=radius)


def visible_cells(video: SyntheticVideo) -> np.ndarray:
    """bool [K, T]: where annotated object k + 1 has at least one pixel in the ground truth."""
    labels = video.labels  # [T, H, W]
    return np.stack([(labels == k).reshape(labels.shape[0], -1).any(axis=1) for k in sorted(video.first_frame)])


def _video_stats(video: SyntheticVideo, crossing: np.ndarray, visible: np.ndarray) -> dict[str, Any]:
    """Counts on the evaluated frames 1..T-2 (``crossing``, ``visible``: bool [K, T]): crossing cells, hidden and
    re-appearing objects, occlusions."""
    ids = sorted(video.first_frame)
    hidden = ~visible  # [K, T]
    reappear = hidden[:, :-1] & ~hidden[:, 1:]  # [K, T-1]: hidden at t, visible at t + 1
    roles = [obj.role for obj in video.scene.objects]
    return {
        "objects": len(ids),
        "distractors": roles.count("distractor"),
        "leaver": "leaver" in roles,
        "crossing_cells": int(crossing[:, 1:-1].sum()),
        "crossing_frames": int(crossing[:, 1:-1].any(axis=0).sum()),
        "hidden_cells": int(hidden[:, 1:-1].sum()),
        "reappearances": int(reappear[:, 1:].sum()),
    }


def verify_labels(root: Path, name: str, video: SyntheticVideo) -> None:
    """Raise ``RuntimeError`` unless ``root``'s annotations of ``name`` equal the regenerated labels."""
    from corrvos.data.io import read_label

    folder = root / "Annotations" / "480p" / name
    paths = sorted(folder.glob("*.png"))
    if len(paths) != video.labels.shape[0]:
        raise RuntimeError(f"{folder}: {len(paths)} annotations, the regenerated video has {video.labels.shape[0]}")
    for t, path in enumerate(paths):
        if not np.array_equal(read_label(path), video.labels[t]):
            raise RuntimeError(f"{path}: differs from the regenerated video's labels (frame {t})")


def make_eval_set(
    root: Path,
    *,
    sequences: int,
    frames: int,
    size: tuple[int, int],
    seed: int,
    radius: int = 2,
    min_crossing: int = 1,
    max_candidates: int | None = None,
) -> EvalSet:
    """Select, write and verify the held-out stress set (see the module docstring)."""
    if frames < 3:
        raise ValueError("the DAVIS protocol needs at least 3 frames per video")
    limit = max_candidates if max_candidates is not None else 10 * sequences
    names: list[str] = []
    crossing: dict[str, np.ndarray] = {}
    visible: dict[str, np.ndarray] = {}
    stats: dict[str, dict[str, Any]] = {}
    index = -1
    for index in range(limit):
        video = regenerate_video(seed, index, frames, size)
        cross = video_crossings(video, radius=radius)
        if cross[:, 1:-1].any(axis=0).sum() >= min_crossing:
            name = f"synth{index:03d}"
            names.append(name)
            seen = visible_cells(video)  # [K, T]
            crossing[name] = cross[:, 1:-1]
            visible[name] = seen[:, 1:-1]
            stats[name] = _video_stats(video, cross, seen)
            if len(names) == sequences:
                break
    if not names:
        raise RuntimeError(f"no video with a distractor crossing among {limit} candidates")
    candidates = index + 1
    generate_dataset(
        root, sequences=max(candidates, 2), frames=frames, size=size, seed=seed, val_fraction=0.5, progress=False
    )
    for year in ("2016", "2017"):  # evaluate the stress videos only
        atomic_write_text(root / "ImageSets" / year / "val.txt", "".join(f"{n}\n" for n in names))
    for name in names:
        verify_labels(root, name, regenerate_video(seed, int(name[5:]), frames, size))
    return EvalSet(root=root, names=names, crossing=crossing, visible=visible, stats=stats, candidates=candidates)


def make_train_set(root: Path, *, sequences: int, frames: int, size: tuple[int, int], seed: int) -> Path:
    """The labeled training set (DAVIS layout; the last video is held out of ``train.txt``, as in the demo)."""
    return generate_dataset(
        root, sequences=sequences, frames=frames, size=size, seed=seed, val_fraction=0.5 / sequences, progress=False
    )


def make_unlabeled_set(root: Path, *, sequences: int, frames: int, size: tuple[int, int], seed: int) -> Path:
    """A folder of unlabeled synthetic videos (frame folders, no masks) for the semi-supervised study."""
    return generate_dataset(root, sequences=sequences, frames=frames, size=size, seed=seed, layout="unlabeled")


def empty_after_first_frame(root: Path, names: list[str], out_dir: Path) -> Path:
    """The "predict nothing" floor: the first-frame annotation on frame 0 and empty masks on every later frame."""
    from corrvos.data.io import read_label, write_label

    for name in names:
        paths = sorted((root / "Annotations" / "480p" / name).glob("*.png"))
        first = read_label(paths[0])
        for t, path in enumerate(paths):
            write_label(out_dir / name / path.name, first if t == 0 else np.zeros_like(first))
    return out_dir


def foreground_ratio(root: Path, names: list[str], results: Path) -> float:
    """Predicted over ground-truth object pixels on the evaluated frames 1..T-2 (1 = as much as annotated)."""
    from corrvos.data.io import read_label

    predicted = annotated = 0
    for name in names:
        paths = sorted((root / "Annotations" / "480p" / name).glob("*.png"))[1:-1]
        for path in paths:
            gt = read_label(path)
            predicted += int((read_label(results / name / path.name) > 0).sum())
            annotated += int(((gt > 0) & (gt != 255)).sum())
    return predicted / max(annotated, 1)
