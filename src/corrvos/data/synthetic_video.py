"""Synthetic VOS videos in memory: :class:`SyntheticVideo`, :func:`synthesize_video`, :func:`render_sequence`.

Nothing can be downloaded in some environments, so corrvos generates its own videos: a textured background seen
by a panning / zooming camera, 2-4 annotated textured objects (mid-size blobs, thin bars, tiny dots) on smooth
trajectories with occlusions, an object that may leave the frame and come back, 1-2 unannotated distractors that
share the colour/texture family of a target, and (YouTube-VOS layout) objects that appear on later frames.
Rendering lives in :mod:`corrvos.data.synthetic_render`, textures in :mod:`corrvos.data.synthetic_textures`, the
dataset writers in :mod:`corrvos.data.synthetic_layouts`; :mod:`corrvos.data.synthetic` is the public entry point.

Conventions:
- labels are uint8 [T, H, W]; DAVIS-style videos have ids 1..K, all present in frame 0; with ``late_objects`` the
  ids are shuffled (not ordered by appearance) and an object is labelled from its first appearance on a sampled
  frame (multiple of ``sample_step``) with at least ``MIN_AREA`` visible pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corrvos.data.synthetic_render import SceneSpec, render_scene, sample_scene

__all__ = ["MIN_AREA", "SyntheticVideo", "render_sequence", "synthesize_video"]

MIN_AREA = 6  # visible pixels an object needs in the frame whose mask introduces it
_MAX_ATTEMPTS = 20


@dataclass
class SyntheticVideo:
    """A generated video with its ground truth.

    Attributes:
        frames: uint8 RGB [T, H, W, 3].
        labels: uint8 [T, H, W] annotated object ids (0 background; distractors are background).
        first_frame: object id -> first frame where it is labelled (the frame of its reference mask).
        categories: object id -> sprite kind ("blob", "bar", "dot").
        instances: uint8 [T, H, W] rendered sprite index + 1 (distractors included), for inspection and tests.
        label_of_instance: uint8 [n_sprites + 1] the object id of each sprite index + 1 (0: not annotated).
        scene: the sampled scene (sprites in z-order, camera, background).
    """

    frames: np.ndarray
    labels: np.ndarray
    first_frame: dict[int, int]
    categories: dict[int, str]
    instances: np.ndarray
    label_of_instance: np.ndarray
    scene: SceneSpec


def synthesize_video(
    seed: int | np.random.SeedSequence,
    frames: int,
    size: tuple[int, int],
    *,
    late_objects: bool = False,
    sample_step: int = 5,
    shuffle_ids: bool = False,
) -> SyntheticVideo:
    """Render one synthetic video and its labels.

    Args:
        seed: an int or a ``SeedSequence``; everything random is drawn from it.
        frames: number of frames T (>= 1).
        size: (H, W).
        late_objects: allow annotated objects that appear after frame 0 (YouTube-VOS style); otherwise every
            annotated object is visible in frame 0 (DAVIS style).
        sample_step: with ``late_objects``, objects are introduced only on frames that are multiples of it.
        shuffle_ids: give the objects a random order of ids instead of z-order.

    Returns:
        the video; sprites too hidden to be introduced are left unannotated (label 0).
    """
    rng = np.random.default_rng(seed)
    steps = range(0, frames, sample_step) if late_objects else range(1)
    for _ in range(_MAX_ATTEMPTS):
        scene = sample_scene(rng, frames, size, late_objects=late_objects, sample_step=sample_step)
        rendered = render_scene(scene)
        n = len(scene.objects)
        flat = rendered.instances.reshape(frames, -1)  # [T, H*W]
        areas = np.stack([np.bincount(row, minlength=n + 1) for row in flat])  # [T, n + 1]
        firsts: dict[int, int] = {}  # sprite index -> first labelled frame
        for i, obj in enumerate(scene.objects):
            if obj.annotated:
                first = next((t for t in steps if areas[t, i + 1] >= MIN_AREA), None)
                if first is not None:
                    firsts[i] = first
        if firsts:
            break
    else:  # pragma: no cover - every attempt left all objects hidden
        raise RuntimeError(f"could not place a visible object in a {size[0]}x{size[1]} frame")

    kept = sorted(firsts)
    ids = (rng.permutation(len(kept)) + 1) if shuffle_ids else np.arange(1, len(kept) + 1)
    lut = np.zeros(n + 1, np.uint8)
    for i, obj_id in zip(kept, ids, strict=True):
        lut[i + 1] = obj_id
    labels = lut[rendered.instances]  # [T, H, W]
    first_frame, categories = {}, {}
    for i, obj_id in zip(kept, ids, strict=True):
        obj_id = int(obj_id)
        first_frame[obj_id] = firsts[i]
        categories[obj_id] = scene.objects[i].kind
        before = labels[: firsts[i]]  # slivers visible before the introducing frame stay unlabelled
        before[before == obj_id] = 0
    return SyntheticVideo(
        frames=rendered.frames,
        labels=labels,
        first_frame=dict(sorted(first_frame.items())),
        categories=dict(sorted(categories.items())),
        instances=rendered.instances,
        label_of_instance=lut,
        scene=scene,
    )


def render_sequence(
    seed: int, frames: int = 8, size: tuple[int, int] = (96, 160), *, late_objects: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A quick in-memory synthetic video for tests and examples.

    Args:
        seed: random seed (>= 0).
        frames: number of frames T.
        size: (H, W).
        late_objects: allow objects that first appear after frame 0 (on frames 5, 10, ...).

    Returns:
        (frames uint8 RGB [T, H, W, 3], labels uint8 [T, H, W]); without ``late_objects`` the labels use the ids
        1..K and every id is present in frame 0.
    """
    video = synthesize_video(np.random.SeedSequence(seed), frames, size, late_objects=late_objects)
    return video.frames, video.labels
