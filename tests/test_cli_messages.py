"""One-line messages, devices and interrupts of the CLI (issue #21, items 4 and 5).

- ``--device`` takes auto / cpu / cuda / cuda:K in every command (one validator, :mod:`corrvos.devices`);
- Ctrl-C in ``infer`` / ``segment --videos`` prints the ``--skip-done`` command, which then finishes the job;
- what used to leak internals or print several lines is one line; cheap checks run before the model load;
  ``--debug`` and ``-v`` are accepted after the command too.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import corrvos.models
from corrvos.cli import build_parser, main
from corrvos.data.io import write_label
from corrvos.devices import check_device_name, resolve_device
from corrvos.errors import ConfigError
from test_cli_infer import _davis_root, _write_mp4
from test_segment_features import _videos


def _lines(capsys) -> list[str]:
    """stderr lines without progress output: tqdm's fragments (redrawn with carriage returns) and the plain
    progress lines written when stderr is not a terminal ("a.mp4: 2/5 frame (40%), ...")."""
    err = capsys.readouterr().err
    progress = re.compile(r"\d+/\d+ .*\(\d+%\)")
    return [
        line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line and not progress.search(line)
    ]


def _one_line(capsys) -> str:
    lines = _lines(capsys)
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Make loading a checkpoint fail loudly: a check that must come first then shows it does."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the cheap checks")

    monkeypatch.setattr(corrvos.models, "load_model", refuse)


# --- devices -----------------------------------------------------------------------------------------------------


def test_device_names() -> None:
    for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert check_device_name(name, "--device") == name
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:1x", "cuda 1", "mps", ""):
        with pytest.raises(
            ConfigError, match=re.escape(f"--device {bad!r}: not a device (use auto, cpu, cuda or cuda:K)")
        ):
            check_device_name(bad, "--device")


MATCHES = ["visualize", "matches", "--model", "m", "--video", "v", "--masks", "k", "--frame", "0", "--target", "1"]


@pytest.mark.parametrize(
    "argv",
    [
        ["infer", "--model", "m", "--davis-root", "d", "--out", "o"],
        ["segment", "--model", "m", "--video", "v", "--mask", "a.png", "--out", "o"],
        ["train", "--config", "c.yaml"],
        ["visualize", "correspondence", "--model", "m", "--video", "v", "--frame", "0", "--target", "1", "--out", "o"],
        [*MATCHES, "--out", "o"],
    ],
)
def test_every_command_parses_cuda_k(argv: list[str], capsys) -> None:
    assert build_parser().parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*argv, "--device", "tpu"])
    assert exc.value.code == 2
    assert "'tpu': not a device (use auto, cpu, cuda or cuda:K)" in _one_line(capsys)


def test_cuda_k_on_a_machine_without_it_or_without_that_index(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device 'cuda:1': CUDA is not available on this machine"):
        resolve_device("cuda:1", option="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"'cuda:2': this machine has 2 CUDA device\(s\), cuda:0\.\.cuda:1"):
        resolve_device("cuda:2")


def test_segment_device_cuda_k_reaches_the_device_check(tmp_path: Path, ckpt: Path, monkeypatch, capsys) -> None:
    """Before: argparse refused 'cuda:1' ("invalid choice"); now it is a device, refused here for want of CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    videos, masks = _videos(tmp_path)
    argv = ["segment", "--model", str(ckpt), "--video", str(videos / "a.mp4"), "--mask", str(masks / "a.png"),
            "--out", str(tmp_path / "out"), "--device", "cuda:1"]  # fmt: skip
    assert main(argv) == 2
    assert "--device 'cuda:1': CUDA is not available on this machine (use --device cpu)" in _one_line(capsys)


# --- Ctrl-C --------------------------------------------------------------------------------------------------------


def _continue_command(capsys) -> list[str]:
    """The argv of the `continue with: corrvos ...` line printed after Ctrl-C."""
    line = _one_line(capsys)
    assert line.startswith("interrupted: continue with: corrvos "), line
    return shlex.split(line.removeprefix("interrupted: continue with: corrvos "))


def test_ctrl_c_in_infer_prints_the_skip_done_command_that_finishes(tmp_path: Path, ckpt: Path, monkeypatch, capsys):
    import corrvos.cli.infer as infer

    root = _davis_root(tmp_path / "DAVIS with space", seqs=("aaa", "bbb"), frames=3)
    out = tmp_path / "res"
    real, calls = infer._run_sequence, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(infer, "_run_sequence", interrupted_on_the_second)
    argv = ["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(out), "--device", "cpu",
            "--no-progress", "--overwrite"]  # fmt: skip
    assert main(argv) == 130
    again = _continue_command(capsys)
    assert again == [*argv[:-1], "--skip-done"]  # --overwrite would delete the finished sequence
    monkeypatch.setattr(infer, "_run_sequence", real)
    assert main(again) == 0
    assert "--skip-done: 1 of 2 sequences already complete" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "bbb").glob("*.png")) == ["00000.png", "00001.png", "00002.png"]


def test_ctrl_c_in_segment(tmp_path: Path, ckpt: Path, monkeypatch, capsys) -> None:
    import corrvos.cli.segment as segment

    videos, masks = _videos(tmp_path)
    out = tmp_path / "out"
    real, calls = segment._segment_video, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(segment, "_segment_video", interrupted_on_the_second)
    argv = ["segment", "--model", str(ckpt), "--videos", str(videos), "--masks", str(masks), "--out", str(out),
            "--device", "cpu", "--no-overlay"]  # fmt: skip
    assert main(argv) == 130
    again = _continue_command(capsys)
    assert again == [*argv, "--skip-done"]
    monkeypatch.setattr(segment, "_segment_video", real)
    assert main(again) == 0
    assert "--skip-done: 1 of 2 videos already complete" in capsys.readouterr().out
    # one video: nothing is kept, the same command runs again
    calls.clear()
    monkeypatch.setattr(segment, "_segment_video", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    one = ["segment", "--model", str(ckpt), "--video", str(videos / "a.mp4"), "--mask", str(masks / "a.png"),
           "--out", str(tmp_path / "one"), "--device", "cpu"]  # fmt: skip
    assert main(one) == 130
    assert _one_line(capsys) == "interrupted: nothing was written to --out; run the same command again"
    assert not (tmp_path / "one" / "masks").exists()


# --- one-line messages ---------------------------------------------------------------------------------------------


def _infer(ck: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["infer", "--model", str(ck), "--davis-root", str(root), "--out", str(out), "--device", "cpu", *extra]


def test_text_file_and_truncated_checkpoint_are_one_short_line(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    text = tmp_path / "notes.txt"
    text.write_text("pop\n")
    assert main(_infer(text, root, tmp_path / "a")) == 2
    line = _one_line(capsys)
    assert line == (
        f"corrvos infer: error: {text}: cannot read the checkpoint file: not a PyTorch weight file (it starts with "
        "b'pop\\n')"
    )
    truncated = tmp_path / "half.pth"
    data = ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert main(_infer(truncated, root, tmp_path / "b")) == 2
    line = _one_line(capsys)
    size = f"{len(data) // 2 / 1e6:.1f} MB"
    assert line == (
        f"corrvos infer: error: {truncated}: cannot read the checkpoint file: the file is truncated or corrupt "
        f"({size}; an interrupted download or copy?): download or copy it again"
    )


def test_invalid_yaml_is_one_line_with_its_position(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {arch: stcn}\nstages: [1, 2\nlr: 3\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert _one_line(capsys) == (
        f"corrvos train: error: {cfg}: invalid YAML: line 3, column 3: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence)"
    )
    good = tmp_path / "good.yaml"
    good.write_text("model: {arch: stcn}\n")
    assert main(["train", "--config", str(good), "--set", "lr=[1", "--print-config"]) == 2
    assert "--set 'lr=[1': cannot parse the value: line 1, column 3: expected ',' or ']'" in _one_line(capsys)


def test_frame_range_error_names_only_the_given_options(tmp_path: Path, capsys) -> None:
    argv = ["segment", "--model", "m.pth", "--video", "v.mp4", "--mask", "a.png", "--out", str(tmp_path / "o")]
    assert main([*argv, "--start", "2", "--stride", "0"]) == 2
    line = _one_line(capsys)
    assert line.endswith("got --start 2 --stride 0") and "None" not in line, line
    assert main([*argv, "--start", "4", "--end", "3"]) == 2
    assert _one_line(capsys).endswith("got --start 4 --end 3 --stride 1")


def test_debug_and_verbose_after_the_command(tmp_path: Path, capsys) -> None:
    bad = ["synth", "--out", str(tmp_path / "s"), "--frames", "1"]
    assert main(bad) == 2
    for flag in (["--debug"], ["-v", "--debug"]):
        with pytest.raises(ConfigError, match="--frames 1"):  # --debug: the exception itself, with its traceback
            main([*bad, *flag])
        with pytest.raises(ConfigError, match="--frames 1"):
            main([*flag, *bad])
    args = build_parser().parse_args(["visualize", "curves", "--run", "r", "--out", "c.png", "--debug", "-v"])
    assert args.debug and args.verbose
    args = build_parser().parse_args(["visualize", "curves", "--run", "r", "--out", "c.png"])
    assert not args.debug and not args.verbose


@pytest.mark.usefixtures("no_model_load")
def test_cheap_checks_come_before_the_model_load(tmp_path: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    model = str(tmp_path / "any.pth")
    assert main(_infer(Path(model), root, a_file)) == 2
    assert _one_line(capsys).endswith(f"{a_file}: is a file, not a folder: choose another --out")
    assert main(_infer(Path(model), root, tmp_path / "r", "--save-scores", str(a_file))) == 2
    assert _one_line(capsys).endswith(f"{a_file}: is a file, not a folder: choose another --save-scores")
    assert main(_infer(Path(model), tmp_path / "no_root", tmp_path / "r")) == 2
    assert _one_line(capsys).endswith(f"{tmp_path / 'no_root'}: folder not found (--davis-root)")
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames=2)
    argv = ["segment", "--model", model, "--video", str(video), "--mask", "a.png", "--out", str(a_file)]
    assert main(argv) == 2
    assert _one_line(capsys).endswith(f"{a_file}: is a file, not a folder: choose another --out")
    assert not (tmp_path / "r").exists()


@pytest.mark.usefixtures("no_model_load")
def test_visualize_correspondence_checks_points_before_the_output_folder(tmp_path: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    out = tmp_path / "figures"
    argv = ["visualize", "correspondence", "--model", "m.pth", "--video", str(root / "JPEGImages" / "480p" / "aaa"),
            "--frame", "0", "--target", "2", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--points", "10,20", "48,5"]) == 2  # frames are 48x80: y = 48 is outside
    assert _one_line(capsys).endswith("--points 48,5 lies outside frame t (48x80, HxW: y 0..47, x 0..79)")
    assert not out.exists()


def test_visualize_leaves_no_empty_folder_when_the_figure_fails(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    empty = tmp_path / "empty_masks"
    for t in range(3):
        write_label(empty / f"{t:05d}.png", np.zeros((48, 80), np.uint8))
    out = tmp_path / "figures"
    pair = ["--video", str(root / "JPEGImages" / "480p" / "aaa"), "--masks", str(empty), "--frame", "0", "--target",
            "2", "--out", str(out), "--device", "cpu"]  # fmt: skip
    expected = {
        "correspondence": f"{empty}: the mask of frame 00000.jpg holds no object",
        "matches": f"{empty / '00000.png'}: the mask holds no object",
    }
    for view in ("correspondence", "matches"):
        assert main(["visualize", view, "--model", str(ckpt), *pair]) == 2
        line = _one_line(capsys)
        assert line == f"corrvos visualize: error: {expected[view]}", line
        assert not out.exists(), view


def test_eval_on_a_read_only_results_folder_suggests_output(tmp_path: Path, monkeypatch, capsys) -> None:
    import corrvos.utils

    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    results = tmp_path / "results"
    (results / "aaa").mkdir(parents=True)
    for p in (root / "Annotations" / "480p" / "aaa").glob("*.png"):
        (results / "aaa" / p.name).write_bytes(p.read_bytes())
    argv = ["eval", "--davis-root", str(root), "--results", str(results), "--workers", "1", "--quiet"]

    def read_only(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}x1y2z3{suffix}"))

    monkeypatch.setattr(corrvos.utils.tempfile, "mkstemp", read_only)  # as a read-only folder does for root, too
    assert main(argv) == 2
    assert _one_line(capsys) == (
        f"corrvos eval: error: {results}: cannot write the score CSVs into the results folder (Permission denied): "
        "give a writable folder with --output"
    )
    monkeypatch.undo()
    monkeypatch.setattr("corrvos.cli.evaluate.os.access", lambda path, mode: Path(path) != results)
    assert main(argv) == 2  # seen before scoring where the permissions say so
    assert "(no write permission): give a writable folder with --output" in _one_line(capsys)
    assert main([*argv, "--output", str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "global_results-val.csv").is_file()


@pytest.mark.parametrize(("layout", "short", "enough"), [("davis", 2, 3), ("youtube", 10, 11), ("unlabeled", 2, 3)])
def test_synth_refuses_videos_too_short_for_eval_and_train(tmp_path: Path, layout, short, enough, capsys) -> None:
    argv = ["synth", "--sequences", "1", "--size", "16x16", "--layout", layout, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "short"), "--frames", str(short)]) == 2
    line = _one_line(capsys)
    assert f"--frames {short}: the {layout} layout needs at least {enough} frames per video" in line
    assert not (tmp_path / "short").exists()
    assert main([*argv, "--out", str(tmp_path / "ok"), "--frames", str(enough)]) == 0
    frames = sorted((tmp_path / "ok").rglob("*.jpg"))
    assert len(frames) == {"davis": 3, "youtube": 3 + 3 + 11, "unlabeled": 3}[layout], len(frames)
