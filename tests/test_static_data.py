"""Static-image pseudo-videos: pair discovery, mask reading, shapes, determinism, bad input, TPS warps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corrvos.data.clips import collate_clips
from corrvos.data.io import write_image, write_label
from corrvos.data.static import StaticPseudoVideoDataset, find_image_mask_pairs, read_binary_mask
from corrvos.data.tps import random_tps_maps, tps_warp
from corrvos.data.transforms import ClipAugmentConfig
from corrvos.errors import ConfigError, DataError


def _pair(folder: Path, stem: str, seed: int, *, size=(40, 56), mask_ext_folder: Path | None = None) -> None:
    rng = np.random.default_rng(seed)
    write_image(folder / f"{stem}.jpg", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    mask = np.zeros(size, np.uint8)
    mask[size[0] // 4 : 3 * size[0] // 4, size[1] // 4 : 3 * size[1] // 4] = 255
    Image.fromarray(mask, mode="L").save((mask_ext_folder or folder) / f"{stem}.png")


@pytest.fixture()
def static_tree(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "fss/cat").mkdir(parents=True)
    (root / "duts").mkdir(parents=True)
    _pair(root / "fss/cat", "1", 0)
    _pair(root / "fss/cat", "2", 1)
    _pair(root / "duts", "img_a", 2)
    return root


def test_pairs_are_found_recursively_and_missing_masks_are_named(static_tree: Path, tmp_path: Path):
    pairs = find_image_mask_pairs(static_tree)
    assert [p[0].relative_to(static_tree).as_posix() for p in pairs] == [
        "duts/img_a.jpg",
        "fss/cat/1.jpg",
        "fss/cat/2.jpg",
    ]
    assert all(mask == image.with_suffix(".png") for image, mask in pairs)
    write_image(static_tree / "duts/orphan.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"orphan\.png not found") as err:
        find_image_mask_pairs(static_tree)
    assert err.value.path == static_tree / "duts/orphan.jpg"
    with pytest.raises(DataError, match="not found"):
        find_image_mask_pairs(tmp_path / "absent")
    # masks in a parallel folder, PNG images allowed
    images, masks = tmp_path / "imgs", tmp_path / "masks"
    (images / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    write_image(images / "sub/x.png", np.zeros((8, 8, 3), np.uint8))
    write_label(masks / "sub/x.png", np.ones((8, 8), np.uint8))
    assert find_image_mask_pairs(images, masks) == [(images / "sub/x.png", masks / "sub/x.png")]


def test_read_binary_mask_modes(tmp_path: Path):
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    assert read_binary_mask(tmp_path / "g.png").tolist() == [[0, 0, 1, 1]]
    write_label(tmp_path / "p.png", np.array([[0, 1, 2, 0]], np.uint8))  # palette: index > 0
    assert read_binary_mask(tmp_path / "p.png").tolist() == [[0, 1, 1, 0]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = 255
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    assert read_binary_mask(tmp_path / "c.png").tolist() == [[0, 1]]
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode"):
        read_binary_mask(tmp_path / "bad.png")


def test_static_items_shapes_and_single_object(static_tree: Path):
    ds = StaticPseudoVideoDataset(
        [static_tree / "fss", static_tree / "duts"], repeats=[1, 3], augment=ClipAugmentConfig.static_images(32)
    )
    assert len(ds) == 5
    items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item.frames.shape == (3, 3, 32, 32) and item.labels.shape == (3, 32, 32)
        assert item.num_objects == 1 and item.max_objects == 1 and set(item.labels.unique().tolist()) <= {0, 1}
        assert item.labels[0].any()
    assert items[2].name == "duts/img_a.jpg"
    batch = collate_clips(items)
    assert batch.masks.shape == (5, 3, 1, 32, 32) and batch.selector.tolist() == [[1.0]] * 5
    # the per-frame draws make the frames of one pseudo-video differ
    assert not torch.equal(items[0].frames[0], items[0].frames[1])


def test_static_items_are_deterministic(static_tree: Path):
    make = lambda: StaticPseudoVideoDataset(static_tree, augment=ClipAugmentConfig.static_images(32), seed=3)  # noqa: E731
    a, b = make(), make()
    for i in range(len(a)):
        assert torch.equal(a[i].frames, b[i].frames) and torch.equal(a[i].labels, b[i].labels)
    b.set_epoch(1)
    assert not torch.equal(a[0].frames, b[0].frames)


def test_static_multi_object_composition(static_tree: Path):
    ds = StaticPseudoVideoDataset(static_tree, max_objects=3, num_frames=4, augment=ClipAugmentConfig.static_images(32))
    counts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            present = sorted(v for v in item.labels[0].unique().tolist() if v)
            assert present == list(range(1, item.num_objects + 1)) and item.frames.shape == (4, 3, 32, 32)
            counts.add(item.num_objects)
    assert counts & {2, 3}  # some clips received pasted objects


def test_static_bad_inputs(tmp_path: Path):
    root = tmp_path / "s"
    root.mkdir()
    write_image(root / "a.jpg", np.zeros((20, 20, 3), np.uint8))
    Image.fromarray(np.zeros((20, 20), np.uint8), mode="L").save(root / "a.png")
    with pytest.raises(DataError, match="mask is empty") as err:
        StaticPseudoVideoDataset(root, augment=ClipAugmentConfig.static_images(16))[0]
    assert err.value.path == root / "a.png"
    Image.fromarray(np.full((10, 20), 255, np.uint8), mode="L").save(root / "a.png")
    with pytest.raises(DataError, match="differs from image"):
        StaticPseudoVideoDataset(root, augment=ClipAugmentConfig.static_images(16))[0]
    (root / "a.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot decode") as err:
        StaticPseudoVideoDataset(root, augment=ClipAugmentConfig.static_images(16))[0]
    assert err.value.path == root / "a.jpg"
    with pytest.raises(ConfigError):
        StaticPseudoVideoDataset(root, repeats=[1, 2])


def test_tps_identity_and_displacement():
    rng = np.random.default_rng(0)
    map_x, map_y = random_tps_maps(30, 50, rng, sigma=0.0)
    ys, xs = np.mgrid[0:30, 0:50].astype(np.float32)
    assert np.abs(map_x - xs).max() < 1e-3 and np.abs(map_y - ys).max() < 1e-3
    image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (30, 50), dtype=np.uint8)
    warped, warped_label = tps_warp(image, label, np.random.default_rng(1), sigma=0.0)
    assert np.array_equal(warped_label, label) and np.abs(warped.astype(int) - image).max() <= 1
    map_x, map_y = random_tps_maps(100, 100, np.random.default_rng(2), sigma=0.05)
    shift = np.hypot(map_x - np.mgrid[0:100, 0:100][1], map_y - np.mgrid[0:100, 0:100][0])
    assert 0.5 < shift.mean() < 20  # a real but moderate warp
    again = random_tps_maps(100, 100, np.random.default_rng(2), sigma=0.05)
    assert np.array_equal(again[0], map_x)


def test_tps_moves_control_points_to_their_targets():
    from scipy.ndimage import map_coordinates

    height, width = 48, 64
    map_x, map_y = random_tps_maps(height, width, np.random.default_rng(5), num_points=12, sigma=0.04)
    rng = np.random.default_rng(5)  # the same draws, made independently: sources, then offsets
    src = rng.random((12, 2))
    dst = src + rng.normal(scale=0.04, size=src.shape)
    inside = (dst > 0.05).all(1) & (dst < 0.95).all(1)
    assert inside.sum() >= 6
    where = np.stack([dst[inside, 1] * height - 0.5, dst[inside, 0] * width - 0.5])  # [2, P] (row, col)
    got_x = map_coordinates(map_x.astype(np.float64), where, order=1)  # bilinear lookup at the moved points
    got_y = map_coordinates(map_y.astype(np.float64), where, order=1)
    assert np.abs(got_x - (src[inside, 0] * width - 0.5)).max() < 0.25
    assert np.abs(got_y - (src[inside, 1] * height - 0.5)).max() < 0.25
