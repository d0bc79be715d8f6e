"""Every command against a table of bad inputs: exit status 2, one line naming the file (or option) and the
problem, no traceback, and nothing left behind in the folder the command would write.

Each case builds its inputs in a fresh folder, snapshots the folder, runs ``corrvos.cli.main`` in-process and
compares the folder afterwards with the snapshot (the inputs themselves are never changed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.data.io import write_image, write_label
from test_cli_infer import _davis_root, _scene, _write_mp4

H, W = 48, 80


def _video(d: Path) -> tuple[Path, Path]:
    video, mask = d / "clip.mp4", d / "first.png"
    _write_mp4(video, frames=3)
    write_label(mask, _scene(0)[1])
    return video, mask


def _segment(d: Path, ck: Path, *extra: str, video: Path | None = None, mask: Path | None = None) -> list[str]:
    v, m = _video(d)
    return ["segment", "--model", str(ck), "--video", str(video or v), "--mask", str(mask or m), "--out",
            str(d / "seg"), "--device", "cpu", *extra]  # fmt: skip


def _infer(d: Path, ck: Path, root: Path, *extra: str) -> list[str]:
    return ["infer", "--model", str(ck), "--davis-root", str(root), "--out", str(d / "res"), "--device", "cpu", *extra]


def _train_cfg(d: Path, body: str) -> Path:
    cfg = d / "cfg.yaml"
    cfg.write_text(body)
    return cfg


TINY_TRAIN = """\
model: {arch: stcn, pretrained_backbones: %s}
stages:
  - name: main
    iterations: 2
    batch_size: 1
    lr: 1.0e-5
    data:
      crop_size: 64
      num_frames: 3
      datasets:
        - {kind: davis, root: %s}
"""


def _davis_train(d: Path) -> Path:
    root = _davis_root(d / "DT", ("a",), 3)
    (root / "ImageSets" / "2017" / "train.txt").write_text("a\n")
    return root


def _file(d: Path) -> Path:
    f = d / "a_file"
    f.write_text("x")
    return f


def _mixed_folder(d: Path) -> Path:
    frames = d / "frames"
    for t in range(3):
        write_image(frames / f"{t:05d}.jpg", _scene(t)[0])
    write_image(frames / "00001.png", _scene(1)[0])
    return frames


def _corrupt_png(d: Path) -> Path:
    p = d / "corrupt.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return p


def _void_mask(d: Path) -> Path:
    p = d / "void.png"
    write_label(p, np.full((H, W), 255, np.uint8))
    return p


def _wrong_size_mask(d: Path) -> Path:
    p = d / "small.png"
    write_label(p, np.ones((H // 2, W // 2), np.uint8))
    return p


def _pickled_object_ckpt(d: Path) -> Path:
    p = d / "pickled.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, p)  # a Module object, not a state_dict
    return p


def _wrong_keys_ckpt(d: Path) -> Path:
    p = d / "wrong_keys.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, p)
    return p


def _davis_missing_first_mask(d: Path) -> Path:
    root = _davis_root(d / "DAVIS", seqs=("aaa",), frames=3)
    (root / "Annotations" / "480p" / "aaa" / "00000.png").unlink()
    return root


def _davis_corrupt_first_mask(d: Path) -> Path:
    root = _davis_root(d / "DAVIS", seqs=("aaa",), frames=3)
    (root / "Annotations" / "480p" / "aaa" / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def _train(d: Path, *extra: str, weights: str = "false", root: Path | None = None) -> list[str]:
    cfg = _train_cfg(d, TINY_TRAIN % (weights, root if root is not None else _davis_train(d)))
    return ["train", "--config", str(cfg), "--out", str(d / "run"), *extra]


def _no_file(argv: list[str], expected: str) -> tuple[list[str], str, bool]:
    return argv, expected, False


CASES: dict[str, Callable[[Path, Path], tuple]] = {
    "train --out FILE": lambda d, ck: (_train(d, "--out", str(_file(d))), "is a file, not a folder"),
    "demo --out FILE": lambda d, ck: (["demo", "--out", str(_file(d))], "is a file, not a folder"),
    "pack-youtube --out DIR": lambda d, ck: (["pack-youtube", "--results", str(d), "--out", str(d)], "is a folder"),
    "train --device tpu": lambda d, ck: _no_file(_train(d, "--device", "tpu"), "'tpu': not a device"),
    "train --set device=tpu": lambda d, ck: _no_file(_train(d, "--set", "device=tpu"), "'tpu': not a device"),
    "segment --device tpu": lambda d, ck: _no_file([*_segment(d, ck)[:-2], "--device", "tpu"], "'tpu': not a device"),
    "segment --size 0": lambda d, ck: _no_file(_segment(d, ck, "--size", "0"), "--size must be"),
    "infer --size 0": lambda d, ck: _no_file(_infer(d, ck, _davis_root(d / "D", ("a",), 2), "--size", "0"), "--size"),
    "segment: missing video": lambda d, ck: (_segment(d, ck, video=d / "none.mp4"), "no such video"),
    "segment: corrupt mask": lambda d, ck: (_segment(d, ck, mask=_corrupt_png(d)), "cannot decode label map"),
    "segment: mask of another size": lambda d, ck: (_segment(d, ck, mask=_wrong_size_mask(d)), "24x40 (HxW)"),
    "segment: mask all void": lambda d, ck: (_segment(d, ck, mask=_void_mask(d)), "255 = void"),
    "segment: 00001.jpg + 00001.png": lambda d, ck: (_segment(d, ck, video=_mixed_folder(d)), "mixes image types"),
    "segment: pickled objects": lambda d, ck: (_segment(d, _pickled_object_ckpt(d)), "never loads"),
    "segment: wrong keys": lambda d, ck: (_segment(d, _wrong_keys_ckpt(d)), "wrong_keys.pth"),
    "segment: missing checkpoint": lambda d, ck: (_segment(d, d / "nothing.pth"), "not found"),
    "infer: missing first mask": lambda d, ck: (_infer(d, ck, _davis_missing_first_mask(d)), "00000.png"),
    "infer: corrupt first mask": lambda d, ck: (_infer(d, ck, _davis_corrupt_first_mask(d)), "00000.png"),
    "train: missing dataset": lambda d, ck: (_train(d, root=d / "no"), "dataset folder not found"),
    "train: ~ weights folder": lambda d, ck: _no_file(
        _train(d, weights="'~/corrvos-no-such-folder'"), str(Path("~/corrvos-no-such-folder").expanduser())
    ),
    "train: missing --init-from": lambda d, ck: (_train(d, "--init-from", str(d / "w.pth")), "weights not found"),
    "eval: missing results": lambda d, ck: (
        ["eval", "--davis-root", str(_davis_root(d / "D", ("a",), 2)), "--results", str(d / "none")],
        "none",
    ),
}


def _error_lines(err: str) -> list[str]:
    """stderr without progress-bar fragments (tqdm redraws with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()} | {
        str(p.relative_to(folder)) + "/": 0 for p in folder.rglob("*") if p.is_dir()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name: str, tmp_path: Path, ckpt: Path, capsys) -> None:
    argv, expected, *names_file = CASES[name](tmp_path, ckpt)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    lines = _error_lines(capsys.readouterr().err)
    assert rc == 2, lines
    assert len(lines) == 1, lines
    err = lines[0]
    assert "error:" in err and "Traceback" not in err
    assert expected in err, err
    assert "weights_only=False" not in err
    if not names_file or names_file[0]:
        assert str(tmp_path) in err, err
    assert _snapshot(tmp_path) == before


def test_offline_imagenet_weights_are_reported_before_anything(tmp_path: Path, monkeypatch, capsys) -> None:
    """The shipped recipes' `pretrained_backbones: true` with no torch hub copy and no network: one line naming the
    URL and the cache file to fill, before any folder is made."""
    import corrvos.training.preflight as preflight

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("CORRVOS_CACHE", str(tmp_path / "corrvos_cache"))
    monkeypatch.setattr(preflight, "_url_reachable", lambda url: False)
    _davis_root(tmp_path / "D", ("a",), 3)
    (tmp_path / "D" / "ImageSets" / "2017" / "train.txt").write_text("a\n")
    cfg = _train_cfg(tmp_path, TINY_TRAIN % ("true", tmp_path / "D"))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "resnet50-0676ba61.pth" in err and str(tmp_path / "torch_home") in err and "unreachable" in err
    assert not (tmp_path / "run").exists()
    # a cached copy in the hub folder is enough (checked by name, never downloaded here)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    for name in ("resnet50-0676ba61.pth", "resnet18-f37072fd.pth"):
        (hub / name).write_bytes(b"x")
    assert preflight.imagenet_weights_problem(True, url_ok=lambda url: False, hub_dir=hub.parent) is None


def test_every_problem_of_a_training_config_is_listed_at_once(tmp_path: Path, capsys) -> None:
    cfg = _train_cfg(
        tmp_path,
        TINY_TRAIN % ("'~/corrvos-no-such-folder'", tmp_path / "none")
        + "        - {kind: youtube, root: relative/yt}\n",
    )
    assert main(["train", "--config", str(cfg), "--out", str(_file(tmp_path))]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith("4 problems, nothing was started:")
    text = "\n".join(lines[1:])
    assert "is a file" in text and "dataset folder not found" in text and "relative/yt" in text
    assert str(Path("~/corrvos-no-such-folder").expanduser()) in text  # ~ expanded


def test_checkpoint_errors_distinguish_device_and_pickles(tmp_path: Path, monkeypatch) -> None:
    """A CUDA-saved file read without a CPU map_location on a CPU-only machine says so (and how to fix it); a file
    with pickled objects is refused without torch's advice to retry with weights_only=False."""
    import torch.serialization as serialization

    from corrvos.checkpoint_io import read_checkpoint
    from corrvos.errors import CheckpointError

    monkeypatch.setattr(serialization, "location_tag", lambda storage: "cuda:0")
    torch.save({"w": torch.ones(2)}, tmp_path / "cuda.pth")
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match=r"saved on a CUDA device.*map_location='cpu'") as info:
            read_checkpoint(tmp_path / "cuda.pth", map_location=None)
        assert "pickled" not in str(info.value)
    assert torch.equal(read_checkpoint(tmp_path / "cuda.pth")["w"], torch.ones(2))  # default: CPU
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(_pickled_object_ckpt(tmp_path))
    message = str(info.value)
    assert "torch.nn.modules.linear.Linear" in message and "never loads" in message
    assert "weights_only" not in message and len(message.splitlines()) == 1


def test_debug_flag_shows_the_traceback(tmp_path: Path, capsys) -> None:
    from corrvos.errors import CorrvosError

    with pytest.raises(CorrvosError):
        main(["--debug", "demo", "--out", str(_file(tmp_path))])


def test_internal_errors_are_one_line_with_exit_1(monkeypatch, tmp_path: Path, capsys) -> None:
    import corrvos.cli.demo as demo

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(demo, "run", boom)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error: ZeroDivisionError: a bug" in err and "--debug" in err
