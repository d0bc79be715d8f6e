"""MOSE and LVOS readers, `infer` + `eval` on them end to end, and the DAVIS submission packer (`pack-davis`)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrvos.cli import main
from corrvos.data.io import read_label, write_image, write_label
from corrvos.data.lvos import LvosDataset
from corrvos.data.mose import MoseDataset
from corrvos.errors import DataError
from corrvos.evaluation import evaluate_sequences, pack_davis
from test_cli_infer import _davis_root, _scene

LVOS_FRAMES = [f"{5 * t:08d}" for t in range(6)]  # LVOS: 8-digit frame numbers, every 5th frame
# object 3 is visible on frames 1..3 (meta end 20: frame 4 is past it), object 1 from frame 2 to the end
LVOS_IDS = {0: (), 1: (3,), 2: (1, 3), 3: (1, 3), 4: (1,), 5: (1,)}


def _mose_root(root: Path, frames: int = 4) -> Path:
    for split, video in (("train", "t1"), ("valid", "v1")):
        for t in range(frames):
            rgb, label = _scene(t)
            write_image(root / split / "JPEGImages" / video / f"{t:05d}.jpg", rgb)
            if split == "train" or t == 0:  # valid: the first frame's mask only
                write_label(root / split / "Annotations" / video / f"{t:05d}.png", label)
    return root


def _lvos_root(root: Path, *, meta: bool = True) -> Path:
    split = root / "valid"
    for t, name in enumerate(LVOS_FRAMES):
        rgb, label = _scene(t, ids=LVOS_IDS[t])
        write_image(split / "JPEGImages" / "lv1" / f"{name}.jpg", rgb)
        if t > 0:  # every frame where an object is visible is annotated (LVOS valid has full annotations)
            write_label(split / "Annotations" / "lv1" / f"{name}.png", label)
    if meta:
        objects = {
            "3": {"frame_range": {"start": LVOS_FRAMES[1], "end": "00000020", "frame_nums": 3}},
            "1": {"frame_range": {"start": 10, "end": 30, "frame_nums": 4}},
        }
        (split / "valid_meta.json").write_text(json.dumps({"videos": {"lv1": {"objects": objects}}}))
    return root


def test_mose_reader(tmp_path: Path) -> None:
    root = _mose_root(tmp_path / "MOSE")
    train = MoseDataset(root, split="train")
    seq = train.sequence("t1")
    assert train.sequences == ["t1"] and seq.objects_first_frame == {1: 0, 2: 0} and list(seq.mask_paths) == [0]
    assert sorted(seq.annotation_paths) == [0, 1, 2, 3] and seq.size == (48, 80)
    assert sorted(MoseDataset(root, split="valid").sequence("v1").annotation_paths) == [0]
    with pytest.raises(DataError, match="split folder"):
        MoseDataset(root, split="test")
    with pytest.raises(DataError, match="not in this split"):
        train.sequence("nope")


@pytest.mark.parametrize("meta", [True, False])
def test_lvos_reader_objects_appearing_later(tmp_path: Path, meta: bool) -> None:
    seq = LvosDataset(_lvos_root(tmp_path / "LVOS", meta=meta), split="valid").sequence("lv1")
    assert seq.frame_ids == LVOS_FRAMES and seq.objects_first_frame == {3: 1, 1: 2}
    assert sorted(seq.mask_paths) == [1, 2] and seq.objects_at(2) == [1]  # frame 2 also shows 3: not given again
    assert sorted(seq.annotation_paths) == [1, 2, 3, 4, 5]
    # the meta's end (20, exclusive) stops object 3 at frame 3; without a meta file objects are scored to the end
    assert seq.objects_last_frame == ({3: 3, 1: 5} if meta else {3: 5, 1: 5})


def _infer(ckpt: Path, flag: str, root: Path, out: Path, *extra: str) -> int:
    args = ["infer", "--model", str(ckpt), flag, str(root), "--out", str(out), "--device", "cpu", "--size", "-1"]
    return main([*args, *extra])


def test_infer_and_eval_on_mose(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _mose_root(tmp_path / "MOSE")
    out = tmp_path / "res"
    assert _infer(ckpt, "--mose-root", root, out, "--set", "train") == 0
    assert sorted(p.name for p in (out / "t1").iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert np.array_equal(read_label(out / "t1" / "00000.png"), _scene(0)[1])
    capsys.readouterr()
    assert main(["eval", "--mose-root", str(root), "--set", "train", "--results", str(out), "--workers", "1"]) == 0
    assert "J&F-Mean" in capsys.readouterr().out and (out / "corrvos_mose_global-train.csv").is_file()
    # valid has only first-frame masks: nothing to score locally
    assert _infer(ckpt, "--mose-root", root, tmp_path / "val") == 0
    assert main(["eval", "--mose-root", str(root), "--set", "valid", "--results", str(tmp_path / "val")]) == 2
    assert "no ground truth" in capsys.readouterr().err
    # the ground truth itself scores 1
    perfect = tmp_path / "gt"
    shutil.copytree(root / "train" / "Annotations", perfect)
    result = evaluate_sequences(MoseDataset(root, split="train"), perfect, benchmark="mose", write_csv=False)
    assert (
        result.global_scores["J&F-Mean"] == 1.0 and result.object_names == ["t1_1", "t1_2"] and result.frames == [3, 3]
    )


def test_infer_and_eval_on_lvos(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _lvos_root(tmp_path / "LVOS")
    out = tmp_path / "res"
    assert _infer(ckpt, "--lvos-root", root, out) == 0
    assert sorted(p.name for p in (out / "lv1").iterdir()) == [f"{n}.png" for n in LVOS_FRAMES[1:]]  # from frame 1
    assert set(np.unique(read_label(out / "lv1" / f"{LVOS_FRAMES[1]}.png")).tolist()) <= {0, 3}
    assert main(["eval", "--lvos-root", str(root), "--results", str(out), "--workers", "1", "--quiet"]) == 0
    assert (out / "corrvos_lvos_per-object-valid.csv").is_file()
    dataset = LvosDataset(root, split="valid")
    perfect = tmp_path / "gt"
    shutil.copytree(root / "valid" / "Annotations", perfect)
    result = evaluate_sequences(dataset, perfect, benchmark="lvos", write_csv=False)
    assert result.global_scores["J&F-Mean"] == 1.0 and result.frames == [3, 2]  # lv1_1: frames 3..5; lv1_3: 2..3
    past_end = read_label(perfect / "lv1" / f"{LVOS_FRAMES[4]}.png")
    past_end[30:45, 5:20] = 3  # object 3 after its range: not scored
    write_label(perfect / "lv1" / f"{LVOS_FRAMES[4]}.png", past_end)
    assert evaluate_sequences(dataset, perfect, benchmark="lvos", write_csv=False).global_scores["J&F-Mean"] == 1.0
    in_range = read_label(perfect / "lv1" / f"{LVOS_FRAMES[3]}.png")
    in_range[0:4, 60:80] = 3
    write_label(perfect / "lv1" / f"{LVOS_FRAMES[3]}.png", in_range)
    assert evaluate_sequences(dataset, perfect, benchmark="lvos", write_csv=False).global_scores["J-Mean"] < 1.0


def _test_dev(tmp_path: Path) -> tuple[Path, Path]:
    """A DAVIS test-dev split of two 3-frame sequences and a complete results folder for it."""
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa", "bbb"), frames=3)
    (root / "ImageSets" / "2017" / "test-dev.txt").write_text("aaa\nbbb\n")
    results = tmp_path / "res"
    for seq in ("aaa", "bbb"):
        for t in range(3):
            write_label(results / seq / f"{t:05d}.png", _scene(t)[1])
    return root, results


def test_pack_davis_writes_sequence_folders_at_the_zip_root(tmp_path: Path) -> None:
    root, results = _test_dev(tmp_path)
    write_label(results / "other" / "00000.png", _scene(0)[1])  # not in the split: left out
    assert pack_davis(results, tmp_path / "sub.zip", davis_root=root, set_name="test-dev") == 6
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        names = sorted(zf.namelist())
        assert np.array_equal(np.asarray(Image.open(zf.open("bbb/00002.png"))), _scene(2)[1])
    assert names == sorted(["aaa/", "bbb/", *(f"{s}/{t:05d}.png" for s in ("aaa", "bbb") for t in range(3))])


def test_pack_davis_refuses_an_incomplete_folder_listing_every_problem(tmp_path: Path, capsys) -> None:
    root, results = _test_dev(tmp_path)
    (results / "aaa" / "00001.png").unlink()  # a missing frame
    write_label(results / "bbb" / "00002.png", _scene(2)[1][:40])  # a wrong size
    label = _scene(1)[1].copy()
    label[0, 0] = 7  # an id the first-frame mask does not have
    write_label(results / "bbb" / "00001.png", label)
    out = tmp_path / "sub.zip"
    args = ["pack-davis", "--results", str(results), "--davis-root", str(root), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("corrvos pack-davis: error: ") and "3 problem(s)" in err
    assert "1 of 3 frame(s) missing: 00001.png" in err and "size 40x80" in err and "predicted id(s) [7]" in err
    assert not out.exists() and not list(tmp_path.glob(".sub.zip*"))
