"""Training clips: frame sampling, curriculum, object selection, augmentation, VOSClipDataset, collation, BL30K."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from corrvos.data.bl30k import BL30KObjectFilter, bl30k_clip_dataset, find_bl30k_parts
from corrvos.data.clips import (
    ClipItem,
    VOSClipDataset,
    collate_clips,
    davis_clip_dataset,
    set_dataset_epoch,
    youtube_clip_dataset,
)
from corrvos.data.io import read_image, read_label, write_image, write_label
from corrvos.data.layouts import detect_layout, open_clip_dataset
from corrvos.data.sampling import (
    SkipCurriculum,
    effective_max_skip,
    item_rng,
    sample_frames,
    select_objects,
)
from corrvos.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipAugmentConfig,
    ColorJitterRange,
    augment_clip,
)
from corrvos.errors import ConfigError, DataError
from corrvos.families import families
from corrvos.families.stcn.family import STCN_CURRICULUM
from corrvos.families.xmem.family import XMEM_CURRICULUM, xmem_augment

SIZE = (24, 32)  # H, W of the tiny videos


def _frame(rng: np.random.Generator, t: int) -> np.ndarray:
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def _label(t: int, objects: int, empty_until: int = -1) -> np.ndarray:
    label = np.zeros(SIZE, np.uint8)
    if t <= empty_until:
        return label
    for k in range(objects):
        y, x = 2 + 7 * k, 2 + (t + 3 * k) % 20
        label[y : y + 6, x : x + 8] = k + 1
    return label


def write_video(
    image_root: Path,
    mask_root: Path,
    name: str,
    frames: int,
    *,
    objects: int = 2,
    step: int = 1,
    empty_until: int = -1,
    image_ext: str = ".png",
    seed: int = 0,
) -> None:
    """Frames named with ``step`` (5 mimics YouTube-VOS train); lossless PNG frames unless told otherwise."""
    rng = np.random.default_rng(seed)
    for t in range(frames):
        stem = f"{t * step:05d}"
        write_image(image_root / name / f"{stem}{image_ext}", _frame(rng, t))
        write_label(mask_root / name / f"{stem}.png", _label(t, objects, empty_until))


@pytest.fixture()
def davis_tree(tmp_path: Path) -> Path:
    root = tmp_path / "DAVIS"
    for i, (name, n, objects) in enumerate([("alpha", 12, 2), ("beta", 9, 3), ("gamma", 7, 1)]):
        write_video(root / "JPEGImages/480p", root / "Annotations/480p", name, n, objects=objects, seed=i)
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/train.txt").write_text("alpha\nbeta\n")
    return root


# ---------------------------------------------------------------------------------------------- sampling


def test_stcn_sampler_matches_the_rule_drawn_independently():
    for seed in range(200):
        length, max_skip = 4 + seed % 30, 1 + seed % 11
        got = sample_frames(length, 3, max_skip, np.random.default_rng(seed), method="chain", allow_repeats=True)
        rng = np.random.default_rng(seed)
        jump = min(length, max_skip)
        a = rng.integers(0, length - jump + 1)
        b = min(a + 1 + rng.integers(0, jump + 1), length - jump, length - 1)
        c = min(b + 1 + rng.integers(0, jump + 1), length - jump // 2, length - 1)
        expected = [a, b, c][::-1] if rng.random() < 0.5 else [a, b, c]
        assert got == [int(v) for v in expected]
        assert all(0 <= v < length for v in got)


def test_stcn_sampler_redraws_repeated_frames():
    repeats = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        repeats += len(set(sample_frames(6, 3, 1, rng, method="chain", allow_repeats=True))) < 3
        got = sample_frames(6, 3, 1, np.random.default_rng(seed), method="chain")
        assert len(set(got)) == 3 and max(np.diff(sorted(got))) <= 2
    assert repeats > 50  # the raw recipe often repeats frames of a 6-frame video
    assert sorted(sample_frames(3, 3, 5, np.random.default_rng(0))) == [0, 1, 2]


def test_window_sampler_is_distinct_connected_and_reversible():
    for seed in range(100):
        length, frames, max_skip = 10 + seed % 40, 2 + seed % 7, 1 + seed % 6
        got = sample_frames(length, frames, max_skip, np.random.default_rng(seed), method="window", reverse_prob=0.0)
        assert len(set(got)) == frames and got == sorted(got) and 0 <= got[0] and got[-1] < length
        assert max(np.diff(got)) <= max_skip  # each new frame lies within max_skip of a chosen one
        back = sample_frames(length, frames, max_skip, np.random.default_rng(seed), method="window", reverse_prob=1.0)
        assert back == got[::-1]


def test_sampler_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="cannot sample 5 frames"):
        sample_frames(4, 5, 3, rng)
    with pytest.raises(ConfigError, match="exactly 3"):
        sample_frames(10, 4, 3, rng, method="chain")
    with pytest.raises(ConfigError, match="method"):
        sample_frames(10, 3, 3, rng, method="random")
    with pytest.raises(ConfigError):
        effective_max_skip(0)


def test_effective_max_skip_and_curricula():
    assert [effective_max_skip(s, 5) for s in (5, 10, 25, 3)] == [1, 2, 5, 1]
    assert [STCN_CURRICULUM.at_fraction(p) for p in (0.0, 0.1, 0.25, 0.39, 0.5, 0.95)] == [5, 10, 15, 20, 25, 5]
    # epoch switching as round(total * fraction): boundaries 1, 2, 3, 4, 9 for 10 epochs
    assert [STCN_CURRICULUM.at_epoch(e, 10) for e in range(10)] == [5, 10, 15, 20, 25, 25, 25, 25, 25, 5]
    assert [XMEM_CURRICULUM.at_fraction(p) for p in (0.05, 0.2, 0.5, 0.9)] == [5, 10, 15, 5]
    with pytest.raises(ConfigError, match="one value per fraction"):
        SkipCurriculum(5, (0.1, 0.2), (10,))
    with pytest.raises(ConfigError, match="increase"):
        SkipCurriculum(5, (0.3, 0.2), (10, 15))
    with pytest.raises(ConfigError, match=">= 1"):
        SkipCurriculum(0, (0.5,), (3,))
    # the trainer's form: one value more than fractions, switched at the exact step
    stage = SkipCurriculum.from_values([5, 10, 15, 20, 25, 5], [0.1, 0.2, 0.3, 0.4, 0.9])
    assert stage == STCN_CURRICULUM
    assert [stage.at_step(s, 100) for s in (0, 9, 10, 39, 40, 89, 90, 99)] == [5, 5, 10, 20, 25, 25, 5, 5]
    assert SkipCurriculum.from_values([2], []).at_step(7, 0) == 2
    with pytest.raises(ConfigError, match="one more entry"):
        SkipCurriculum.from_values([5, 10], [])
    with pytest.raises(ConfigError, match="max_skip_values must be >= 1"):
        SkipCurriculum.from_values([5, 0], [0.5])


def test_select_objects_and_item_rng():
    rng = np.random.default_rng(3)
    picked = select_objects([7, 3, 9], 2, rng)
    order = np.random.default_rng(3).permutation(3)
    assert picked == [[3, 7, 9][i] for i in order[:2]]
    assert sorted(select_objects([4, 2], 5, rng)) == [2, 4]
    a, b = item_rng(1, 2, 3).random(4), item_rng(1, 2, 3).random(4)
    assert np.array_equal(a, b) and not np.array_equal(a, item_rng(1, 3, 3).random(4))


# ---------------------------------------------------------------------------------------------- augmentation


def test_clip_level_draws_are_shared_and_frame_level_draws_differ():
    rng = np.random.default_rng(0)
    image, label = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), _label(0, 2)
    label = np.pad(label, ((0, 16), (0, 18)))
    clip_only = ClipAugmentConfig(
        size=(32, 32),
        frame_affine=ClipAugmentConfig.none().frame_affine,
        frame_jitter=ClipAugmentConfig.none().frame_jitter,
        grayscale_prob=0.5,
    )
    frames, labels = augment_clip([image] * 3, [label] * 3, clip_only, np.random.default_rng(5))
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.float32 and labels.shape == (3, 32, 32)
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])
    assert np.array_equal(labels[0], labels[2])
    frames, labels = augment_clip([image] * 3, [label] * 3, ClipAugmentConfig.video(32), np.random.default_rng(5))
    assert not np.array_equal(frames[0], frames[1])
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and set(np.unique(labels)) <= {0, 1, 2}


def test_flip_and_resize_are_exact():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    label = rng.integers(0, 4, (20, 30), dtype=np.uint8)
    cfg = ClipAugmentConfig(
        size=(20, 30),
        crop="resize",
        hflip_prob=1.0,
        frame_affine=ClipAugmentConfig.none().frame_affine,
        clip_jitter=ClipAugmentConfig.none().clip_jitter,
        grayscale_prob=0.0,
        frame_jitter=ClipAugmentConfig.none().frame_jitter,
    )
    frames, labels = augment_clip([image], [label], cfg, np.random.default_rng(0))
    assert np.array_equal(labels[0], label[:, ::-1])
    assert np.abs(frames[0] * 255 - image[:, ::-1]).max() < 1e-3
    gray = ClipAugmentConfig.none(size=(20, 30))
    gray = ClipAugmentConfig(**{**gray.__dict__, "grayscale_prob": 1.0})
    frames, _ = augment_clip([image], [label], gray, np.random.default_rng(0))
    luma = image.astype(np.float32) / 255 @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.allclose(frames[0], luma[..., None], atol=1e-5)


def test_images_and_labels_stay_aligned():
    """Colour-coded objects: the label warped with the image must agree with the colour of each output pixel."""
    label = np.zeros((200, 300), np.uint8)
    label[20:120, 30:150], label[100:180, 160:280], label[60:90, 200:230] = 1, 2, 3
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    no_colour = {
        "clip_jitter": ColorJitterRange(),
        "frame_jitter": ColorJitterRange(),
        "grayscale_prob": 0.0,
        "fill": (0, 0, 0),
    }
    for recipe in (ClipAugmentConfig.video(32), ClipAugmentConfig.static_images(32)):
        cfg = ClipAugmentConfig(**{**recipe.__dict__, **no_colour})
        for seed in range(5):
            frames, labels = augment_clip([palette[label]] * 3, [label] * 3, cfg, np.random.default_rng(seed))
            distance = ((frames[..., None, :] * 255 - palette.astype(np.float32)) ** 2).sum(-1)  # [T, H, W, 4]
            assert (distance.argmin(-1) == labels).mean() > 0.97


def test_augment_config_errors():
    with pytest.raises(ConfigError, match="crop"):
        ClipAugmentConfig(crop="zoom")
    with pytest.raises(ConfigError, match="interpolation"):
        ClipAugmentConfig(interpolation="lanczos")
    with pytest.raises(ConfigError, match="crop_scale"):
        ClipAugmentConfig(crop_scale=(0.5, 1.5))
    assert ClipAugmentConfig.video(64).size == (64, 64)
    assert xmem_augment(48, finetune=True).frame_affine.degrees == 0
    presets = [f.augment[g] for f in families().values() if f.trainable for g in ("video", "bl30k", "static")]
    assert all(preset(40).size == (40, 40) for preset in presets)
    assert families()["stcn"].augment["bl30k"](32).crop_scale == (0.25, 1.0)
    assert families()["xmem"].augment["video"](32).interpolation == "linear"


# ---------------------------------------------------------------------------------------------- datasets


def _no_aug(size=SIZE) -> ClipAugmentConfig:
    return ClipAugmentConfig.none(size)


def test_clip_shapes_and_batch(davis_tree: Path):
    ds = davis_clip_dataset(davis_tree, augment=ClipAugmentConfig.video(32), max_objects=2)
    assert ds.names == ["alpha", "beta"] and len(ds) == 2
    items = [ds[0], ds[1]]
    for item in items:
        assert isinstance(item, ClipItem) and item.frames.shape == (3, 3, 32, 32)
        assert item.frames.dtype == torch.float32 and item.labels.dtype == torch.int64
        assert 1 <= item.num_objects <= 2 and int(item.labels.max()) <= item.num_objects
        assert item.labels[0].max() >= 1  # the first frame shows an object
    batch = collate_clips(items)
    assert batch.frames.shape == (2, 3, 3, 32, 32) and batch.masks.shape == (2, 3, 2, 32, 32)
    assert batch.labels.shape == (2, 3, 32, 32) and batch.selector.shape == (2, 2) and batch.names == ["alpha", "beta"]
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_clips)
    assert next(iter(loader)).frames.shape == (2, 3, 3, 32, 32)


def test_clips_are_exact_frames_and_slots_without_augmentation(davis_tree: Path):
    ds = davis_clip_dataset(davis_tree, augment=_no_aug(), max_objects=2, max_skip=3, reverse_prob=0.0, seed=4)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for index in range(len(ds)):
        for epoch in range(3):
            ds.set_epoch(epoch)
            item = ds[index]
            video = davis_tree / "JPEGImages/480p" / item.name
            ids = [int(s) for s in item.frame_ids]
            assert ids == sorted(ids)
            for t, stem in enumerate(item.frame_ids):
                rgb = torch.from_numpy(read_image(video / f"{stem}.png")).permute(2, 0, 1).float() / 255
                assert torch.allclose(item.frames[t], (rgb - mean) / std, atol=1e-5)
                original = read_label(davis_tree / "Annotations/480p" / item.name / f"{stem}.png")
                expected = np.zeros(SIZE, np.int64)
                for slot, object_id in enumerate(item.object_ids, start=1):
                    expected[original == object_id] = slot
                assert np.array_equal(item.labels[t].numpy(), expected)
    beta = ds[1]  # 3 objects, 2 slots
    assert beta.num_objects == 2 and set(beta.object_ids) <= {1, 2, 3}


def test_items_are_deterministic_per_seed_epoch_index(davis_tree: Path):
    make = lambda seed: davis_clip_dataset(davis_tree, augment=ClipAugmentConfig.video(32), seed=seed)  # noqa: E731
    a, b = make(7), make(7)
    for index in range(2):
        x, y = a[index], b[index]
        assert torch.equal(x.frames, y.frames) and torch.equal(x.labels, y.labels) and x.frame_ids == y.frame_ids
    a.set_epoch(1)
    assert not torch.equal(a[0].frames, b[0].frames)
    assert not torch.equal(make(8)[0].frames, b[0].frames)
    # worker processes give the same items as the main process
    serial = [collate_clips([b[i]]) for i in range(2)]
    parallel = list(DataLoader(b, batch_size=1, num_workers=2, collate_fn=collate_clips))
    for s, p in zip(serial, parallel, strict=True):
        assert torch.equal(s.frames, p.frames) and torch.equal(s.masks, p.masks)


def test_time_reversal_and_any_number_of_frames(davis_tree: Path):
    ds = davis_clip_dataset(davis_tree, augment=_no_aug(), num_frames=5, max_skip=2, reverse_prob=1.0)
    item = ds[0]
    ids = [int(s) for s in item.frame_ids]
    assert item.frames.shape == (5, 3, *SIZE) and ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert max(-np.diff(ids)) <= 2


def test_retry_until_the_first_frame_shows_an_object(tmp_path: Path):
    images, masks = tmp_path / "img", tmp_path / "ann"
    write_video(images, masks, "late", 10, objects=1, empty_until=6)  # objects only in frames 7..9
    ds = VOSClipDataset(images, masks, augment=_no_aug(), max_attempts=50, reverse_prob=0.5)
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item.labels[0].max() == 1 and int(item.frame_ids[0]) >= 7
    write_video(images, masks, "void", 5, objects=1, empty_until=10)
    with pytest.raises(DataError, match=r"no object visible.*empty annotations") as err:
        VOSClipDataset(images, masks, augment=_no_aug(), subset=["void"], max_attempts=3)[0]
    assert err.value.path == images / "void"


def test_crops_that_miss_every_object_are_redrawn_and_named_in_the_error(tmp_path: Path):
    # A 3x3 object in the corner of 48x64 frames: a 16 px RandomResizedCrop misses it in most draws.
    images, masks = tmp_path / "img", tmp_path / "ann"
    rng = np.random.default_rng(0)
    label = np.zeros((48, 64), np.uint8)
    label[44:47, 60:63] = 1
    for t in range(6):
        write_image(images / "corner" / f"{t:05d}.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        write_label(masks / "corner" / f"{t:05d}.png", label)
    aug = ClipAugmentConfig.video(16)
    redrawn = VOSClipDataset(images, masks, augment=aug, max_attempts=200)
    single = VOSClipDataset(images, masks, augment=aug, max_attempts=1)
    failures = 0
    for epoch in range(6):
        redrawn.set_epoch(epoch)
        single.set_epoch(epoch)
        assert redrawn[0].labels[0].max() == 1  # the object is in the first frame of every returned clip
        try:
            single[0]
        except DataError as err:
            failures += 1
            assert "cropped out" in str(err) and "empty annotations" not in str(err)
    assert failures >= 1  # the redraws above were needed


def test_bad_inputs_raise_data_errors(tmp_path: Path):
    images, masks = tmp_path / "img", tmp_path / "ann"
    write_video(images, masks, "ok", 6)
    write_video(images, masks, "short", 2)
    with pytest.raises(DataError, match="fewer than the 3 frames") as err:
        VOSClipDataset(images, masks)
    assert err.value.path == images / "short"
    assert VOSClipDataset(images, masks, short_videos="skip").names == ["ok"]
    with pytest.raises(DataError, match="not found"):
        VOSClipDataset(images, masks, subset=["ok", "missing"])
    with pytest.raises(DataError, match="annotation root"):
        VOSClipDataset(images, tmp_path / "nowhere")
    # an annotation of another size than its frame
    write_label(masks / "ok/00003.png", np.zeros((10, 10), np.uint8))
    ds = VOSClipDataset(images, masks, subset=["ok"], augment=_no_aug(), max_skip=5)
    with pytest.raises(DataError, match="differs from frame") as err:
        for epoch in range(20):
            ds.set_epoch(epoch)
            ds[0]
    assert err.value.path == masks / "ok/00003.png"
    # an unreadable frame
    write_video(images, masks, "broken", 4)
    for t in range(4):
        (images / f"broken/{t:05d}.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode") as err:
        VOSClipDataset(images, masks, subset=["broken"], augment=_no_aug())[0]
    assert err.value.path.parent == images / "broken"


def test_youtube_layout_counts_skips_in_annotated_frames(tmp_path: Path):
    root = tmp_path / "YouTube"
    write_video(root / "train/JPEGImages", root / "train/Annotations", "yt1", 12, step=5, image_ext=".jpg")
    ds = youtube_clip_dataset(root, augment=_no_aug(), reverse_prob=0.0, max_skip=5)
    assert ds.skip_divisor == 5
    for epoch in range(20):
        ds.set_epoch(epoch)
        ids = [int(s) for s in ds[0].frame_ids]
        assert all(i % 5 == 0 for i in ids) and max(np.diff(ids)) <= 10  # STCN gap <= effective skip + 1 = 2
    ds.set_max_skip(25)
    gaps = []
    for epoch in range(30):
        ds.set_epoch(epoch)
        gaps.extend(np.diff([int(s) for s in ds[0].frame_ids]))
    assert max(gaps) > 10
    assert youtube_clip_dataset(root / "train", augment=_no_aug()).names == ["yt1"]


def test_set_dataset_epoch_walks_concat(davis_tree: Path):
    a = davis_clip_dataset(davis_tree, augment=_no_aug())
    b = davis_clip_dataset(davis_tree, augment=_no_aug(), split=None)
    concat = ConcatDataset([a, a, b])
    assert set_dataset_epoch(concat, 3, max_skip=15) == 3
    assert (a.epoch, b.epoch, a.max_skip, b.max_skip) == (3, 3, 15, 15) and len(b) == 3


def test_collate_pads_slots_and_rejects_mixed_shapes():
    labels = torch.tensor([[[0, 1], [2, 0]]]).expand(2, 2, 2)  # [T=2, 2, 2]
    one = ClipItem(torch.zeros(2, 3, 2, 2), labels.clone(), 2, 2, "a")
    other = ClipItem(torch.ones(2, 3, 2, 2), (labels > 0).long(), 1, 3, "b")
    batch = collate_clips([one, other])
    assert batch.masks.shape == (2, 2, 3, 2, 2)
    for b, item in enumerate([one, other]):
        for k in range(3):
            assert torch.equal(batch.masks[b, :, k], (item.labels == k + 1).float())
    assert batch.selector.tolist() == [[1, 1, 0], [1, 0, 0]]
    with pytest.raises(ConfigError, match="different shapes"):
        collate_clips([one, ClipItem(torch.zeros(3, 3, 2, 2), torch.zeros(3, 2, 2).long(), 1, 1, "c")])


# ---------------------------------------------------------------------------------------------- BL30K


def test_bl30k_filter_rule():
    labels = np.zeros((3, 384, 384), np.uint8)
    labels[0, :40, :40] = 1  # 1600 > 30^2: kept
    labels[0, 100:115, 100:115] = 2  # 225: small, and small later -> kept
    labels[1, 100:115, 100:115] = 2
    labels[0, 200:215, 200:215] = 3  # 225 now, 900 >= 20^2 later -> dropped
    labels[2, 200:230, 200:230] = 3
    labels[0, 300:305, 300:305] = 4  # 25 <= 10^2 -> dropped
    assert BL30KObjectFilter()(labels, [1, 2, 3, 4]) == [1, 2]
    half = BL30KObjectFilter.for_size((192, 192))
    assert math.isclose(half.area_scale, 0.25)
    small = labels[:, ::2, ::2]  # 400, 64, 64->225 later, 9 pixels
    assert half(small, [1, 2, 3, 4]) == [1, 2]


def test_bl30k_layout_with_segments(tmp_path: Path):
    for part in ("BL30K_a", "BL30K_b"):
        base = tmp_path / "BL30K" / part
        write_video(base / "JPEGImages", base / "Annotations", f"vid_{part[-1]}", 6, image_ext=".jpg")
    write_video(tmp_path / "BL30K/BL30K_b/JPEGImages", tmp_path / "BL30K/BL30K_b/Annotations", "vid_a", 5)
    parts = find_bl30k_parts(tmp_path / "BL30K")
    assert detect_layout(tmp_path / "BL30K") == "bl30k"
    assert [p.name for p in parts] == ["BL30K_a", "BL30K_b"]
    ds = bl30k_clip_dataset(
        tmp_path / "BL30K", augment=replace(ClipAugmentConfig.video(32), crop_scale=(0.25, 1.0)), filter_objects=False
    )
    assert sorted(ds.names) == ["BL30K_b/vid_a", "vid_a", "vid_b"]
    assert ds[0].frames.shape == (3, 3, 32, 32)
    with pytest.raises(DataError, match="no BL30K layout"):
        find_bl30k_parts(tmp_path / "BL30K/BL30K_a/JPEGImages")


# ---------------------------------------------------------------------------------------------- synthetic sets


def test_synthetic_davis_and_youtube_layouts(tmp_path: Path):
    from corrvos.data.synthetic import generate_dataset

    davis = generate_dataset(tmp_path / "davis", sequences=3, frames=8, size=(48, 64), seed=0)
    youtube = generate_dataset(tmp_path / "yt", sequences=3, frames=20, size=(48, 64), seed=0, layout="youtube")
    train = (davis / "ImageSets/2017/train.txt").read_text().split()
    ds = davis_clip_dataset(davis, augment=ClipAugmentConfig.video(32), max_objects=2)
    assert ds.names == train
    yt = youtube_clip_dataset(youtube, augment=ClipAugmentConfig.video(32), max_objects=2)
    assert all(len(v.images) == 4 for v in yt.videos)  # 20 frames annotated every 5th
    assert (detect_layout(davis), detect_layout(youtube), detect_layout(youtube / "train")) == (
        "davis",
        "youtube",
        "youtube",
    )
    assert open_clip_dataset(youtube, augment=ClipAugmentConfig.none(32)).skip_divisor == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no BL30K layout"):
        detect_layout(tmp_path / "empty")
    batch = collate_clips([ds[0], yt[0]])
    assert batch.frames.shape == (2, 3, 3, 32, 32) and batch.masks.shape == (2, 3, 2, 32, 32)
    assert torch.equal(batch.masks.sum(2).clamp(max=1), (batch.labels > 0).float())
    assert (batch.masks[:, 0].flatten(2).amax(2) >= batch.selector).all()  # every selected slot is in frame 0
