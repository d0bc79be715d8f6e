"""Tests of the DAVIS and YouTube-VOS readers (corrvos.data.davis, corrvos.data.youtube_vos, VideoSequence).

Trees are built by hand in each test (so the expected values are known independently of the readers), plus
synthetic trees written by corrvos.data.synthetic for the objects-appear-later case.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corrvos.data.davis import DavisDataset, read_sequence_list
from corrvos.data.io import read_label, write_image, write_label
from corrvos.data.synthetic import generate_dataset
from corrvos.data.youtube_vos import YouTubeVOSDataset
from corrvos.errors import DataError

H, W = 12, 20


def _frame(value: int) -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = value
    return rgb


def _label(ids: list[int], offset: int = 0) -> np.ndarray:
    label = np.zeros((H, W), np.uint8)
    for k, obj in enumerate(ids):
        label[2 * k : 2 * k + 2, offset : offset + 3] = obj
    return label


def make_davis(
    root: Path,
    sequences: dict[str, int],
    *,
    sets: dict[str, list[str]] | None = None,
    ids: dict[str, list[int]] | None = None,
) -> dict[str, list[np.ndarray]]:
    """A DAVIS tree; sequence -> number of frames; returns the written label maps."""
    labels = {}
    for name, n in sequences.items():
        seq_ids = (ids or {}).get(name, [1, 2])
        labels[name] = []
        for t in range(n):
            write_image(root / "JPEGImages" / "480p" / name / f"{t:05d}.png", _frame(10 * t))
            label = _label(seq_ids, offset=t)
            write_label(root / "Annotations" / "480p" / name / f"{t:05d}.png", label)
            labels[name].append(label)
    for year in ("2016", "2017"):
        for split, names in (sets or {"val": list(sequences)}).items():
            path = root / "ImageSets" / year / f"{split}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{n}\n" for n in names))
    return labels


# ----------------------------------------------------------------------------------------------------- DAVIS


def test_davis_reads_sequences_in_imageset_order(tmp_path: Path):
    labels = make_davis(tmp_path, {"bear": 4, "cows": 3}, sets={"val": ["cows", "bear"]}, ids={"cows": [1, 2, 4]})
    ds = DavisDataset(tmp_path, year="2017", split="val")
    assert ds.sequences == ["cows", "bear"] and len(ds) == 2
    seq = ds.sequence("bear")
    assert seq.name == "bear" and len(seq) == 4
    assert seq.frame_ids == ["00000", "00001", "00002", "00003"]
    assert seq.frame_paths == [tmp_path / "JPEGImages" / "480p" / "bear" / f"{i:05d}.png" for i in range(4)]
    assert seq.mask_paths == {0: tmp_path / "Annotations" / "480p" / "bear" / "00000.png"}
    assert seq.objects_first_frame == {1: 0, 2: 0} and seq.frames_to_save is None
    assert seq.size == (H, W)
    assert sorted(seq.annotation_paths) == [0, 1, 2, 3]
    frame = seq.read_frame(2)
    assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)
    np.testing.assert_array_equal(frame, _frame(20))
    for t in range(4):
        mask = seq.read_mask(t)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, labels["bear"][t])
    assert ds.sequence("cows").objects_first_frame == {1: 0, 2: 0, 4: 0}
    assert [s.name for s in ds] == ["cows", "bear"]


def test_davis_2016_binarises(tmp_path: Path):
    labels = make_davis(tmp_path, {"bear": 3}, ids={"bear": [1, 3]})
    seq = DavisDataset(tmp_path, year="2016", split="val").sequence("bear")
    assert seq.objects_first_frame == {1: 0}
    np.testing.assert_array_equal(seq.read_mask(1), (labels["bear"][1] > 0).astype(np.uint8))
    assert set(np.unique(seq.read_mask(0))) == {0, 1}


def test_davis_void_is_not_an_object(tmp_path: Path):
    make_davis(tmp_path, {"bear": 2})
    label = _label([1, 2])
    label[-1, -1] = 255
    write_label(tmp_path / "Annotations" / "480p" / "bear" / "00000.png", label)
    assert DavisDataset(tmp_path).sequence("bear").objects_first_frame == {1: 0, 2: 0}


def test_davis_test_dev_only_first_annotation(tmp_path: Path):
    make_davis(tmp_path, {"bear": 3}, sets={"test-dev": ["bear"]})
    for t in (1, 2):
        (tmp_path / "Annotations" / "480p" / "bear" / f"{t:05d}.png").unlink()
    seq = DavisDataset(tmp_path, split="test-dev").sequence("bear")
    assert sorted(seq.annotation_paths) == [0] and seq.has_mask(0) and not seq.has_mask(1)
    with pytest.raises(DataError, match="no annotation") as info:
        seq.read_mask(1)
    assert info.value.path == seq.frame_paths[1]


def test_read_sequence_list_formats(tmp_path: Path):
    path = tmp_path / "val.txt"
    path.write_text("bear\r\n\n  cows  \nbear\n/JPEGImages/480p/dog/00000.jpg /Annotations/480p/dog/00000.png\n")
    assert read_sequence_list(path) == ["bear", "cows", "dog"]
    path.write_text("\n\n")
    with pytest.raises(DataError, match="no sequence"):
        read_sequence_list(path)


def test_davis_is_lazy(tmp_path: Path):
    make_davis(tmp_path, {"bear": 2}, sets={"val": ["bear", "ghost"]})
    ds = DavisDataset(tmp_path)  # a missing sequence folder is only reported when the sequence is asked for
    assert ds.sequences == ["bear", "ghost"]
    with pytest.raises(DataError, match="frame folder") as info:
        ds.sequence("ghost")
    assert info.value.path == tmp_path / "JPEGImages" / "480p" / "ghost"


def test_davis_bad_inputs_name_the_path(tmp_path: Path):
    with pytest.raises(DataError, match="root folder not found") as info:
        DavisDataset(tmp_path / "missing")
    assert info.value.path == tmp_path / "missing"
    make_davis(tmp_path, {"bear": 2, "empty": 1, "nomask": 2, "small": 2})
    with pytest.raises(DataError, match="year"):
        DavisDataset(tmp_path, year="2015")
    with pytest.raises(DataError, match="split"):
        DavisDataset(tmp_path, year="2016", split="test-dev")
    with pytest.raises(DataError, match="split"):
        DavisDataset(tmp_path, split="valid")
    with pytest.raises(DataError, match="ImageSets") as info:
        DavisDataset(tmp_path, split="train")
    assert info.value.path == tmp_path / "ImageSets" / "2017" / "train.txt"
    ds = DavisDataset(tmp_path)
    with pytest.raises(DataError, match="not in this split"):
        ds.sequence("nothere")

    for p in (tmp_path / "JPEGImages" / "480p" / "empty").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="no frames") as info:
        ds.sequence("empty")
    assert info.value.path == tmp_path / "JPEGImages" / "480p" / "empty"

    first = tmp_path / "Annotations" / "480p" / "nomask" / "00000.png"
    first.unlink()
    with pytest.raises(DataError, match="first-frame annotation") as info:
        ds.sequence("nomask")
    assert info.value.path == first

    small = tmp_path / "Annotations" / "480p" / "small"
    write_label(small / "00000.png", np.zeros((H - 2, W), np.uint8))
    with pytest.raises(DataError, match="annotation is 10x20") as info:
        ds.sequence("small")
    assert info.value.path == small / "00000.png"


def test_davis_later_frame_errors_are_lazy_and_named(tmp_path: Path):
    make_davis(tmp_path, {"bear": 3})
    ann = tmp_path / "Annotations" / "480p" / "bear" / "00002.png"
    write_label(ann, np.zeros((H, W + 1), np.uint8))
    jpg = tmp_path / "JPEGImages" / "480p" / "bear" / "00001.png"
    jpg.write_bytes(b"broken")
    seq = DavisDataset(tmp_path).sequence("bear")
    np.testing.assert_array_equal(seq.read_mask(1), _label([1, 2], offset=1))
    with pytest.raises(DataError, match="annotation is 12x21") as info:
        seq.read_mask(2)
    assert info.value.path == ann
    with pytest.raises(DataError) as info:
        seq.read_frame(1)
    assert info.value.path == jpg
    write_image(tmp_path / "JPEGImages" / "480p" / "bear" / "00002.png", np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(DataError, match="frame is 13x20"):
        seq.read_frame(2)
    with pytest.raises(IndexError):
        seq.read_frame(3)


def test_davis_reads_synthetic_tree(tmp_path: Path):
    root = generate_dataset(tmp_path / "d", sequences=3, frames=4, size=(32, 48), seed=5)
    for year in ("2016", "2017"):
        train = DavisDataset(root, year=year, split="train")
        val = DavisDataset(root, year=year, split="val")
        assert set(train.sequences).isdisjoint(val.sequences)
        assert sorted(train.sequences + val.sequences) == ["synth000", "synth001", "synth002"]
    seq = DavisDataset(root, split="val").sequence(val.sequences[0])
    assert len(seq) == 4 and seq.size == (32, 48)
    ids = sorted(seq.objects_first_frame)
    assert ids == list(range(1, len(ids) + 1))  # contiguous ids, all in frame 0
    assert set(np.unique(seq.read_mask(0))) == {0, *ids}


# ----------------------------------------------------------------------------------------------- YouTube-VOS


def make_youtube(root: Path, *, all_frames: int = 11) -> None:
    """Video "vid": frames 0..10, sampled 0, 5, 10; object 1 from frame 0, object 3 from frame 5."""
    for t in range(all_frames):
        write_image(root / "valid_all_frames" / "JPEGImages" / "vid" / f"{t:05d}.jpg", _frame(10 * t))
    for t in range(0, all_frames, 5):
        write_image(root / "valid" / "JPEGImages" / "vid" / f"{t:05d}.jpg", _frame(10 * t))
    write_label(root / "valid" / "Annotations" / "vid" / "00000.png", _label([1]))
    write_label(root / "valid" / "Annotations" / "vid" / "00005.png", _label([0, 3]))
    meta = {
        "videos": {
            "vid": {"objects": {"1": {"frames": ["00000", "00005", "00010"]}, "3": {"frames": ["00005", "00010"]}}}
        }
    }
    (root / "valid" / "meta.json").write_text(json.dumps(meta))


def test_youtube_objects_appearing_later(tmp_path: Path):
    make_youtube(tmp_path)
    ds = YouTubeVOSDataset(tmp_path, year="2019", split="valid")
    assert ds.sequences == ["vid"]
    seq = ds.sequence("vid")
    ann = tmp_path / "valid" / "Annotations" / "vid"
    assert seq.frame_ids == ["00000", "00005", "00010"]
    assert seq.mask_paths == {0: ann / "00000.png", 1: ann / "00005.png"}
    assert seq.objects_first_frame == {1: 0, 3: 1} and seq.frames_to_save is None
    assert seq.objects_at(1) == [3] and seq.object_ids == [1, 3]
    np.testing.assert_array_equal(seq.read_mask(1), _label([0, 3]))
    np.testing.assert_array_equal(seq.read_frame(2), _frame(100))
    assert seq.size == (H, W)


def test_youtube_all_frames_mode(tmp_path: Path):
    make_youtube(tmp_path)
    seq = YouTubeVOSDataset(tmp_path, year="2018", all_frames=True).sequence("vid")
    assert seq.frame_ids == [f"{t:05d}" for t in range(11)]
    assert seq.frames_to_save == {0, 5, 10}
    assert seq.should_save(5) and not seq.should_save(4)
    assert seq.objects_first_frame == {1: 0, 3: 5} and sorted(seq.mask_paths) == [0, 5]


def test_youtube_bad_inputs_name_the_path(tmp_path: Path):
    with pytest.raises(DataError, match="root folder not found"):
        YouTubeVOSDataset(tmp_path / "missing")
    make_youtube(tmp_path)
    with pytest.raises(DataError, match="year"):
        YouTubeVOSDataset(tmp_path, year="2017")
    with pytest.raises(DataError, match="split"):
        YouTubeVOSDataset(tmp_path, split="val")
    with pytest.raises(DataError, match="split folder") as info:
        YouTubeVOSDataset(tmp_path, split="train")
    assert info.value.path == tmp_path / "train"
    meta = tmp_path / "valid" / "meta.json"
    good = meta.read_text()
    for text, problem in [
        ("{not json", "cannot parse"),
        ('{"vids": {}}', '"videos"'),
        ('{"videos": {"vid": {}}}', '"objects"'),
        ('{"videos": {"vid": {"objects": {"x": {"frames": ["00000"]}}}}}', "not an integer"),
        ('{"videos": {"vid": {"objects": {"1": {"frames": []}}}}}', "non-empty"),
    ]:
        meta.write_text(text)
        with pytest.raises(DataError, match=problem) as info:
            YouTubeVOSDataset(tmp_path)
        assert info.value.path == meta
    meta.unlink()
    with pytest.raises(DataError, match=r"meta\.json not found"):
        YouTubeVOSDataset(tmp_path)
    meta.write_text(good)
    ds = YouTubeVOSDataset(tmp_path)
    with pytest.raises(DataError, match=r"not in meta\.json"):
        ds.sequence("other")

    (tmp_path / "valid" / "Annotations" / "vid" / "00005.png").unlink()
    with pytest.raises(DataError, match="object 3") as info:
        ds.sequence("vid")
    assert info.value.path == tmp_path / "valid" / "Annotations" / "vid" / "00005.png"
    write_label(tmp_path / "valid" / "Annotations" / "vid" / "00005.png", np.zeros((H, W + 4), np.uint8))
    with pytest.raises(DataError, match="annotation is 12x24"):
        ds.sequence("vid")

    meta.write_text(json.dumps({"videos": {"vid": {"objects": {"1": {"frames": ["00003"]}}}}}))
    with pytest.raises(DataError, match="first frame 00003"):
        YouTubeVOSDataset(tmp_path).sequence("vid")
    meta.write_text(
        json.dumps(
            {
                "videos": {
                    "vid": {"objects": {"1": {"frames": ["00000"]}}},
                    "gone": {"objects": {"1": {"frames": ["00000"]}}},
                }
            }
        )
    )
    ds = YouTubeVOSDataset(tmp_path)  # lazy: the missing folder is reported by sequence()
    with pytest.raises(DataError, match="frame folder") as info:
        ds.sequence("gone")
    assert info.value.path == tmp_path / "valid" / "JPEGImages" / "gone"


def test_youtube_all_frames_missing(tmp_path: Path):
    make_youtube(tmp_path)
    shutil.rmtree(tmp_path / "valid_all_frames")
    with pytest.raises(DataError, match="all_frames") as info:
        YouTubeVOSDataset(tmp_path, all_frames=True)
    assert info.value.path == tmp_path / "valid_all_frames" / "JPEGImages"


def test_youtube_reads_synthetic_tree_with_late_objects(tmp_path: Path):
    root = generate_dataset(tmp_path / "y", sequences=6, frames=16, size=(48, 64), seed=3, layout="youtube")
    late_seen = 0
    for split in ("train", "valid"):
        ds = YouTubeVOSDataset(root, split=split)
        assert ds.sequences
        for seq in ds:
            assert all(int(fid) % 5 == 0 for fid in seq.frame_ids)
            for obj, first in seq.objects_first_frame.items():
                mask = seq.read_mask(first)
                assert (mask == obj).any()  # the introducing mask holds the object
                for earlier in range(first):
                    if seq.has_mask(earlier):
                        assert not (seq.read_mask(earlier) == obj).any()
                late_seen += first > 0
            if split == "valid":
                # valid annotations exist only where something first appears, and hold only the new objects
                assert sorted(seq.annotation_paths) == sorted(set(seq.objects_first_frame.values()))
                for index in seq.mask_paths:
                    present = set(np.unique(read_label(seq.mask_paths[index]))) - {0}
                    assert present == set(seq.objects_at(index))
                full = YouTubeVOSDataset(root, split=split, all_frames=True).sequence(seq.name)
                assert len(full) == 16 and full.frames_to_save == {0, 5, 10, 15}
                assert {k: full.frame_ids[v] for k, v in full.objects_first_frame.items()} == {
                    k: seq.frame_ids[v] for k, v in seq.objects_first_frame.items()
                }
            else:
                assert sorted(seq.annotation_paths) == list(range(len(seq)))
    assert late_seen > 0
