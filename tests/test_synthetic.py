"""Tests of the synthetic video generator (corrvos.data.synthetic*) and of `corrvos synth`."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from corrvos.cli import main
from corrvos.cli.synth import parse_size
from corrvos.data.io import read_image, read_label
from corrvos.data.synthetic import MIN_AREA, generate_dataset, render_sequence, synthesize_video
from corrvos.data.synthetic_layouts import MARKER
from corrvos.data.synthetic_render import render_scene
from corrvos.errors import ConfigError, DataError

SIZE = (64, 96)
SEEDS = range(12)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def davis_videos():
    return [synthesize_video(seed, 16, SIZE) for seed in SEEDS]


@pytest.fixture(scope="module")
def late_videos():
    return [synthesize_video(seed, 16, SIZE, late_objects=True, shuffle_ids=True) for seed in SEEDS]


def _alone_area(video, index: int) -> np.ndarray:
    """[T] pixels of sprite ``index`` rendered with no other sprite (an independent re-render)."""
    scene = replace(video.scene, objects=[video.scene.objects[index]])
    return (render_scene(scene).instances == 1).reshape(video.scene.frames, -1).sum(axis=1)


def test_render_sequence_shapes_and_davis_ids():
    for seed in range(4):
        frames, labels = render_sequence(seed, 6, (40, 72))
        assert frames.shape == (6, 40, 72, 3) and frames.dtype == np.uint8
        assert labels.shape == (6, 40, 72) and labels.dtype == np.uint8
        ids = sorted(set(np.unique(labels[0])) - {0})
        assert len(ids) >= 1 and ids == list(range(1, len(ids) + 1))
        assert set(np.unique(labels)) <= {0, *ids}  # no object appears later
    frames, labels = render_sequence(0, 1, (16, 16))
    assert frames.shape == (1, 16, 16, 3) and labels.max() >= 1


def test_render_sequence_is_deterministic_per_seed():
    a, la = render_sequence(7, 5, SIZE)
    b, lb = render_sequence(7, 5, SIZE)
    c, _ = render_sequence(8, 5, SIZE)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_labels_are_the_annotated_instances(davis_videos):
    for video in davis_videos:
        objects = video.scene.objects
        for i, obj in enumerate(objects):
            where = video.instances == i + 1
            expected = video.label_of_instance[i + 1]
            assert (video.labels[where] == expected).all()
            if not obj.annotated:
                assert expected == 0
        assert (video.labels[video.instances == 0] == 0).all()
        # every object is visible in frame 0 with enough pixels (DAVIS style)
        assert video.first_frame == dict.fromkeys(video.first_frame, 0)
        for obj_id in video.first_frame:
            assert (video.labels[0] == obj_id).sum() >= MIN_AREA


def test_distractors_share_a_target_family_and_are_not_annotated(davis_videos):
    for video in davis_videos:
        distractors = [(i, o) for i, o in enumerate(video.scene.objects) if o.role == "distractor"]
        assert 1 <= len(distractors) <= 2
        for i, obj in distractors:
            target = video.scene.objects[obj.similar_to]
            assert target.annotated and target.family == obj.family and target.kind == obj.kind
            assert not np.array_equal(target.texture, obj.texture)  # same family, another realisation
            assert video.label_of_instance[i + 1] == 0
    visible = sum(
        any((v.instances == i + 1).any() for i, o in enumerate(v.scene.objects) if o.role == "distractor")
        for v in davis_videos
    )
    assert visible >= len(davis_videos) - 1


def test_occlusion_leaving_and_kinds(davis_videos):
    occluded = left_and_back = 0
    kinds = set()
    for video in davis_videos:
        t_count = video.scene.frames
        for i, obj in enumerate(video.scene.objects):
            if video.label_of_instance[i + 1] == 0:
                continue
            kinds.add(obj.kind)
            alone = _alone_area(video, i)
            visible = (video.instances == i + 1).reshape(t_count, -1).sum(axis=1)
            assert (visible <= alone).all()
            occluded += int((visible < alone).any())
            if obj.role == "leaver":
                assert alone[0] > 0
                gone = np.flatnonzero(alone == 0)
                assert gone.size, "the leaver never leaves the frame"
                assert alone[gone.max() + 1 :].sum() > 0, "the leaver does not come back"
                left_and_back += 1
    assert occluded >= 3 and left_and_back >= 2
    assert kinds == {"blob", "bar", "dot"}


def test_object_sizes(davis_videos):
    h, w = SIZE
    for video in davis_videos:
        blob_areas = [
            (video.instances[0] == i + 1).sum()
            for i, o in enumerate(video.scene.objects)
            if o.kind == "blob" and video.label_of_instance[i + 1]
        ]
        assert blob_areas and max(blob_areas) >= 0.01 * h * w  # a clearly visible mid-size object
        for i, obj in enumerate(video.scene.objects):
            alone = _alone_area(video, i)
            if obj.kind == "dot":
                assert alone.max() <= 0.01 * h * w
            if obj.kind == "bar":
                length = np.ptp(obj.outline[:, 0])
                width = np.ptp(obj.outline[:, 1])
                assert width <= 0.1 * length and width <= 4


def test_camera_moves_and_frames_change(davis_videos):
    moving = 0
    for video in davis_videos:
        cam = video.scene.camera
        moving += int(np.linalg.norm(cam.position(video.scene.frames - 1) - cam.position(0)) > 0.5)
        background = (video.instances[0] == 0) & (video.instances[-1] == 0)
        diff = np.abs(video.frames[0].astype(int) - video.frames[-1].astype(int)).sum(axis=-1)
        assert diff[background].mean() > 1  # the background itself moves
    assert moving >= len(davis_videos) - 2


def test_label_boundaries_are_image_edges(davis_videos):
    ratios = []
    for video in davis_videos[:6]:
        gray = video.frames[0].astype(np.float32).mean(axis=-1)
        grad = np.abs(np.diff(gray, axis=1))  # [H, W-1] horizontal gradient
        inst = video.instances[0]
        boundary = inst[:, 1:] != inst[:, :-1]
        ratios.append(grad[boundary].mean() / grad[~boundary].mean())
    assert min(ratios) > 1.5


def test_late_objects(late_videos):
    late = 0
    for video in late_videos:
        for obj_id, first in video.first_frame.items():
            assert first % 5 == 0
            assert not (video.labels[:first] == obj_id).any()
            assert (video.labels[first] == obj_id).sum() >= MIN_AREA
            late += first > 0
        roles = [o.role for o in video.scene.objects]
        for i, obj in enumerate(video.scene.objects):
            if obj.role == "late":
                assert not (video.instances[: obj.start] == i + 1).any()
        assert sorted(video.first_frame) == list(range(1, len(video.first_frame) + 1))
        assert "distractor" in roles
    assert late >= 3


@pytest.mark.parametrize("layout", ["davis", "youtube"])
def test_generate_dataset_byte_identical(tmp_path: Path, layout: str):
    a = generate_dataset(tmp_path / "a", sequences=3, frames=7, size=(32, 48), seed=11, layout=layout)
    b = generate_dataset(tmp_path / "b", sequences=3, frames=7, size=(32, 48), seed=11, layout=layout)
    c = generate_dataset(tmp_path / "c", sequences=3, frames=7, size=(32, 48), seed=12, layout=layout)
    ta, tb, tc = _tree(a), _tree(b), _tree(c)
    assert ta == tb and len(ta) > 10
    assert ta != tc
    if layout == "davis":  # same file names, other content
        assert ta.keys() == tc.keys()


def test_davis_files_match_the_rendered_video(tmp_path: Path):
    root = generate_dataset(tmp_path / "d", sequences=4, frames=5, size=(48, 80), seed=2)
    record = json.loads((root / MARKER).read_text())
    assert record["train"] == ["synth000", "synth001"] and record["val"] == ["synth002", "synth003"]
    for year in ("2016", "2017"):
        assert (root / "ImageSets" / year / "train.txt").read_text() == "synth000\nsynth001\n"
        assert (root / "ImageSets" / year / "val.txt").read_text() == "synth002\nsynth003\n"
    children = np.random.SeedSequence(2).spawn(4)
    video = synthesize_video(children[3], 5, (48, 80))
    for t in range(5):
        jpg = read_image(root / "JPEGImages" / "480p" / "synth003" / f"{t:05d}.jpg")
        assert np.abs(jpg.astype(float) - video.frames[t]).mean() < 4
        np.testing.assert_array_equal(
            read_label(root / "Annotations" / "480p" / "synth003" / f"{t:05d}.png"), video.labels[t]
        )


def test_youtube_files_match_the_rendered_video(tmp_path: Path):
    root = generate_dataset(tmp_path / "y", sequences=4, frames=17, size=(40, 64), seed=4, layout="youtube")
    children = np.random.SeedSequence(4).spawn(4)
    train_meta = json.loads((root / "train" / "meta.json").read_text())["videos"]
    valid_meta = json.loads((root / "valid" / "meta.json").read_text())["videos"]
    assert sorted(train_meta) == ["synth000", "synth001"] and sorted(valid_meta) == ["synth002", "synth003"]
    sampled = [0, 5, 10, 15]
    for name, meta in train_meta.items():
        video = synthesize_video(children[int(name[-3:])], 17, (40, 64), late_objects=True, shuffle_ids=True)
        assert sorted(p.stem for p in (root / "train" / "JPEGImages" / name).iterdir()) == [f"{t:05d}" for t in sampled]
        for t in sampled:
            np.testing.assert_array_equal(
                read_label(root / "train" / "Annotations" / name / f"{t:05d}.png"), video.labels[t]
            )
        for obj_id, entry in meta["objects"].items():
            assert entry["category"] == video.categories[int(obj_id)]
            assert entry["frames"] == [f"{t:05d}" for t in sampled if (video.labels[t] == int(obj_id)).any()]
    for name, meta in valid_meta.items():
        video = synthesize_video(children[int(name[-3:])], 17, (40, 64), late_objects=True, shuffle_ids=True)
        assert len(list((root / "valid_all_frames" / "JPEGImages" / name).iterdir())) == 17
        firsts = {int(k): int(v["frames"][0]) for k, v in meta["objects"].items()}
        assert firsts == video.first_frame
        for t in sorted(set(firsts.values())):
            label = read_label(root / "valid" / "Annotations" / name / f"{t:05d}.png")
            new = [k for k, f in firsts.items() if f == t]
            np.testing.assert_array_equal(label, np.where(np.isin(video.labels[t], new), video.labels[t], 0))
        assert len(list((root / "valid" / "Annotations" / name).iterdir())) == len(set(firsts.values()))


def test_regenerate_in_place_and_refuse_foreign_folders(tmp_path: Path):
    out = tmp_path / "data"
    generate_dataset(out, sequences=4, frames=3, size=(32, 32), seed=0)
    generate_dataset(out, sequences=2, frames=2, size=(32, 32), seed=0)
    assert not (out / "JPEGImages" / "480p" / "synth003").exists()
    assert len(list((out / "JPEGImages" / "480p" / "synth000").iterdir())) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty") as info:
        generate_dataset(foreign, sequences=1, frames=1, size=(32, 32), seed=0)
    assert info.value.path == foreign and (foreign / "keep.txt").read_text() == "precious"
    with pytest.raises(DataError, match="not a folder"):
        generate_dataset(foreign / "keep.txt", sequences=1, frames=1, size=(32, 32), seed=0)


@pytest.mark.parametrize("layout", ["davis", "unlabeled"])
def test_name_prefix_renames_only(tmp_path: Path, layout: str):
    args = dict(sequences=3, frames=3, size=(32, 48), seed=5, layout=layout)
    default = generate_dataset(tmp_path / "default", **args)
    same = generate_dataset(tmp_path / "same", **args, prefix="synth")
    held = generate_dataset(tmp_path / "held", **args, prefix="heldout")
    # the default is unchanged: synthNNN names and no prefix in the marker; giving it explicitly is identical
    assert _tree(default) == _tree(same)
    record = json.loads((default / MARKER).read_text())
    assert "prefix" not in record and record["train"] == ["synth000"] and record["val"] == ["synth001", "synth002"]
    # another prefix: the same files under the new names, and the prefix recorded
    renamed = {
        k.replace("heldout", "synth"): v.replace(b"heldout", b"synth") if k.endswith(".txt") else v
        for k, v in _tree(held).items()
        if k != MARKER
    }
    assert renamed == {k: v for k, v in _tree(default).items() if k != MARKER}
    held_record = json.loads((held / MARKER).read_text())
    assert held_record["prefix"] == "heldout" and held_record["val"] == ["heldout001", "heldout002"]
    # regenerating in place removes the earlier videos, whatever their prefix
    generate_dataset(held, **(args | {"sequences": 1}))
    assert not any("heldout" in k for k in _tree(held))
    with pytest.raises(ConfigError, match="--prefix"):
        generate_dataset(tmp_path / "bad", **args, prefix="../x")


def test_single_sequence_is_in_both_splits(tmp_path: Path):
    root = generate_dataset(tmp_path / "one", sequences=1, frames=2, size=(32, 32), seed=0)
    for split in ("train", "val"):
        assert (root / "ImageSets" / "2017" / f"{split}.txt").read_text() == "synth000\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sequences=0),
        dict(frames=0),
        dict(size=(8, 64)),
        dict(seed=-1),
        dict(layout="kitti"),
        dict(val_fraction=1.0),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict):
    args = dict(sequences=1, frames=1, size=(32, 32), seed=0) | kwargs
    with pytest.raises(ConfigError):
        generate_dataset(tmp_path / "x", **args)


def test_small_dataset_is_fast(tmp_path: Path):
    start = time.perf_counter()
    generate_dataset(tmp_path / "fast", sequences=4, frames=8, size=(96, 160), seed=0)
    assert time.perf_counter() - start < 2.0  # typically ~0.1 s


def test_parse_size():
    assert parse_size("480x854") == (480, 854)
    assert parse_size(" 96 X 160 ") == (96, 160)
    for bad in ["480", "0x10", "ax3", "10x-3", "1.5x3"]:
        with pytest.raises(ConfigError, match="HxW"):
            parse_size(bad)


def test_cli_synth(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--sequences",
                "2",
                "--frames",
                "11",
                "--size",
                "32x48",
                "--seed",
                "3",
                "--layout",
                "youtube",
                "--prefix",
                "clip",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "wrote a synthetic youtube dataset" in capsys.readouterr().out
    assert (out / "valid" / "meta.json").is_file() and (out / "valid_all_frames" / "JPEGImages").is_dir()
    assert sorted(p.name for p in (out / "train" / "JPEGImages").iterdir()) == ["clip000"]
    assert main(["synth", "--out", str(tmp_path / "bad"), "--size", "12x40"]) == 2
    assert "--size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    help_text = capsys.readouterr().out
    for option in [
        "--out",
        "--sequences",
        "--frames",
        "--size",
        "--seed",
        "--layout",
        "--val-fraction",
        "--prefix",
        "--no-progress",
    ]:
        assert option in help_text
