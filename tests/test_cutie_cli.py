"""Cutie files through the command line, unchanged: ``segment`` on a video, ``infer`` + ``eval`` on a DAVIS-layout
split, the weight names of ``corrvos download``, and the help texts that list the families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.data.io import read_label
from corrvos.families.cutie.network import Cutie
from test_cli_infer import _davis_root, _scene, _segment_test_mp4
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")


@pytest.fixture
def cutie_file(tmp_path: Path) -> Path:
    """A Cutie-small state_dict with random weights (keys scaled so that the random similarities stay moderate)."""
    torch.manual_seed(0)
    model = Cutie(key_encoder="resnet18").eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(0.05)
    path = tmp_path / "cutie-small.pth"
    torch.save(model.state_dict(), path)
    return path


def test_segment_takes_a_cutie_file(tmp_path: Path, cutie_file: Path, capsys) -> None:
    rc, out = _segment_test_mp4(tmp_path, cutie_file)
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert np.array_equal(read_label(out / "masks" / "00000.png"), _scene(0)[1])


def test_infer_and_eval_take_a_cutie_file(tmp_path: Path, cutie_file: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS")
    out = tmp_path / "results"
    argv = ["infer", "--model", str(cutie_file), "--davis-root", str(root), "--set", "val", "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--size", "-1"]) == 0, capsys.readouterr().err
    masks = sorted((out / "aaa").glob("*.png"))
    assert len(masks) == 4 and np.array_equal(read_label(masks[0]), read_label(root / "Annotations/480p/aaa/00000.png"))
    assert main(["eval", "--davis-root", str(root), "--results", str(out), "--set", "val"]) == 0
    assert "J&F-Mean" in capsys.readouterr().out


def _engine(argv: list[str], model: torch.nn.Module, **kwargs):
    import argparse

    from corrvos.cli.engine_options import add_engine_arguments, check_engine_arguments, engine_config

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args(argv)
    check_engine_arguments(args)
    return engine_config(args, model, **kwargs)


def test_engine_options_reach_cutie_s_config() -> None:
    from corrvos.errors import ConfigError
    from corrvos.families.stcn.network import STCN

    model = Cutie(key_encoder="resnet18")
    default = _engine([], model)
    assert (default.enable_long_term, default.top_k, default.max_mem_frames, default.internal_size) == (
        False,
        30,
        5,
        480,
    )
    argv = [
        "--enable-long-term",
        "--long-term-buffer",
        "7",
        "--chunk-size",
        "2",
        "--flip-aug",
        "--stagger-updates",
        "3",
    ]
    config = _engine(argv, model)
    assert (config.enable_long_term, config.long_term_buffer, config.chunk_size) == (True, 7, 2)
    assert (config.flip_aug, config.stagger_updates, config.count_long_term_usage) == (True, 3, True)
    plus = _engine(["--preset", "plus"], model)
    assert (plus.max_mem_frames, plus.mem_every, plus.internal_size) == (10, 3, 720)
    mixed = _engine(["--preset", "plus", "--mem-every", "4", "--size", "600"], model)  # explicit options win
    assert (mixed.max_mem_frames, mixed.mem_every, mixed.internal_size) == (10, 4, 600)
    with pytest.raises(ConfigError, match="flip_aug"):
        _engine(["--flip-aug"], STCN())
    with pytest.raises(ConfigError, match="no preset 'plus'"):
        _engine(["--preset", "plus"], STCN())
    with pytest.raises(ConfigError, match="--chunk-size"):
        _engine(["--chunk-size", "0"], model)
    with pytest.raises(SystemExit):
        _engine(["--enable-long-term", "--disable-long-term"], model)


def test_infer_runs_cutie_with_long_term_memory_flip_and_chunks(tmp_path: Path, cutie_file: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS")
    argv = ["infer", "--model", str(cutie_file), "--davis-root", str(root), "--out", str(tmp_path / "o")]
    options = ["--enable-long-term", "--flip-aug", "--chunk-size", "1", "--mem-every", "1"]
    assert main([*argv, "--device", "cpu", "--size", "-1", *options]) == 0, capsys.readouterr().err
    assert len(sorted((tmp_path / "o" / "aaa").glob("*.png"))) == 4


def test_download_lists_the_cutie_files(capsys) -> None:
    assert main(["download", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "cutie-base" in listed and "cutie-small" in listed
    assert "cutie-small-nomose" in listed


def test_help_texts_name_every_family(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    text = capsys.readouterr().out
    assert "Cutie" in text and "XMem" in text and "STCN" in text


def test_visualize_correspondence_takes_a_cutie_file(tmp_path: Path, cutie_file: Path, capsys) -> None:
    from corrvos.data.synthetic import generate_dataset

    root = generate_dataset(tmp_path / "synth", sequences=1, frames=4, size=(64, 80), seed=1)
    seq = sorted((root / "JPEGImages" / "480p").iterdir())[0]
    masks = root / "Annotations" / "480p" / seq.name
    out = tmp_path / "figs"
    argv = ["visualize", "correspondence", "--model", str(cutie_file), "--video", str(seq), "--masks", str(masks)]
    assert main([*argv, "--frame", "0", "--target", "-1", "--out", str(out), "--device", "cpu"]) == 0, (
        capsys.readouterr().err
    )
    assert len(list(out.glob("correspondence_*.png"))) == 1
