"""Short and stopped training runs (issue #21): a 3-step run has TensorBoard curves, its step checkpoint is a model
file for ``infer``, the size of a checkpoint is reported before it is written, and ``--weights-only`` checkpoints
hold the weights alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import paper_run_config
from corrvos.cli import main as cli_main
from corrvos.data.synthetic import generate_dataset
from corrvos.training.checkpoint import load_checkpoint
from corrvos.training.hooks import payload_megabytes, weights_of


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path):
    """Step checkpoints hold ~0.6-0.9 GB of weights and optimiser state: do not keep them in pytest's temp folders."""
    yield
    for path in tmp_path.rglob("*.pth"):
        path.unlink(missing_ok=True)


def _config(tmp_path: Path) -> Path:
    root = generate_dataset(tmp_path / "davis", sequences=4, frames=5, size=(64, 64), seed=3)
    cfg = paper_run_config(root, log_interval=10, out_dir=str(tmp_path / "run"))  # the first log used to be step 10
    cfg["stages"][0]["iterations"] = 20
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_three_step_run_has_curves_and_weights_that_infer_accepts(tmp_path: Path, capsys, caplog):
    config = _config(tmp_path)
    with caplog.at_level(logging.INFO):
        assert cli_main(["train", "--config", str(config), "--max-steps", "3", "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    step_file = tmp_path / "run" / "checkpoints" / "step_0000003.pth"
    assert f"its weights for infer / segment / visualize: --model {step_file}" in out
    assert f"--resume {tmp_path / 'run'}" in out
    logs = [r.getMessage() for r in caplog.records]
    assert "intra-op threads: 1 (from --threads" in "\n".join(logs)
    (size_line,) = [m for m in logs if m.startswith(f"writing {step_file} (about ")]
    ckpt = load_checkpoint(step_file)
    reported = float(size_line.split("(about ")[1].split(" MB")[0])
    assert reported == pytest.approx(step_file.stat().st_size / 1e6, rel=0.02)  # within 2 % of the file
    assert f"weights {payload_megabytes(weights_of(ckpt)):.0f} MB" in size_line and "--weights-only" in size_line

    # TensorBoard from step 1, and the steps since the last log written at the stop
    png = tmp_path / "curves.png"
    assert cli_main(["visualize", "curves", "--run", str(tmp_path / "run"), "--out", str(png)]) == 0
    assert png.is_file() and "(2 points)" in capsys.readouterr().out  # steps 1 and 3
    from corrvos.visualize.curves import read_run

    run = read_run(tmp_path / "run")
    assert sorted({int(s) for steps, _ in run.series.values() for s in steps}) == [1, 3]

    pred = tmp_path / "pred"
    args = ["infer", "--model", str(step_file), "--davis-root", str(tmp_path / "davis"), "--set", "val"]
    assert cli_main([*args, "--out", str(pred), "--device", "cpu", "--no-progress"]) == 0
    val = (tmp_path / "davis" / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert sorted(p.name for p in pred.iterdir() if p.is_dir()) == sorted(val)
    assert all(len(list((pred / name).glob("*.png"))) == 5 for name in val)


def test_weights_only_checkpoints_are_a_third_of_the_size_and_not_resumable(tmp_path: Path, capsys, caplog):
    config = _config(tmp_path)
    with caplog.at_level(logging.INFO):
        args = ["train", "--config", str(config), "--max-steps", "2", "--no-progress", "--weights-only"]
        assert cli_main(args) == 0
    out = capsys.readouterr().out
    step_file = tmp_path / "run" / "checkpoints" / "step_0000002.pth"
    assert "weights only (--weights-only)" in out and "--resume" not in out
    state = torch.load(step_file, map_location="cpu", weights_only=True)
    assert "optimizer" not in state and "rng" not in state and state["global_step"] == 2
    size_line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith(f"writing {step_file}"))
    assert "optimiser" not in size_line  # nothing but weights to report
    full = payload_megabytes(state["model"]) * 3  # AdamW keeps two moments per weight
    assert step_file.stat().st_size / 1e6 < 0.5 * full
    from corrvos.models import load_model

    assert load_model(step_file).training is False  # a model file
    assert cli_main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "is this a weights-only file?" in capsys.readouterr().err


def _hooks(tmp_path: Path, payload: dict, **kw):
    from corrvos.training.hooks import TrainHooks

    args = {"log_interval": 10, "image_interval": 0, "save_interval": 100, "keep_checkpoints": 3} | kw
    return TrainHooks(tmp_path, enabled=True, payload=lambda: payload, progress=False, **args)


def _payload() -> dict:
    weights = {"w": torch.zeros(1_000_000)}  # 4 MB of float32
    optimizer = {"state": {0: {"exp_avg": torch.zeros(1_000_000), "exp_avg_sq": torch.zeros(1_000_000)}}}
    return {"arch": "x", "model": weights, "optimizer": optimizer, "stage": "main", "step": 3, "global_step": 3}


def test_the_first_step_and_every_interval_are_logged(tmp_path: Path):
    hooks = _hooks(tmp_path, _payload())
    assert [g for g in range(1, 31) if hooks.is_log_step(g)] == [1, 10, 20, 30]


def test_the_size_is_reported_before_the_checkpoint_is_written(tmp_path: Path, caplog, monkeypatch):
    from corrvos.training import hooks as hooks_mod

    seen = []
    real_save = hooks_mod.save_checkpoint
    spy = lambda p, d: seen.append(list(caplog.messages)) or real_save(p, d)  # noqa: E731
    monkeypatch.setattr(hooks_mod, "save_checkpoint", spy)
    with caplog.at_level(logging.INFO, logger="corrvos.training.hooks"):
        path = _hooks(tmp_path, _payload()).save(3, final=False)
    line = f"writing {path} (about 12 MB: weights 4 MB, optimiser and other state 8 MB (`--weights-only`"
    assert seen[0][-1].startswith(line)  # logged before the file was written
    assert path.stat().st_size / 1e6 == pytest.approx(12, rel=0.01)


def test_weights_only_hooks_leave_the_optimiser_out(tmp_path: Path, caplog):
    with caplog.at_level(logging.INFO, logger="corrvos.training.hooks"):
        path = _hooks(tmp_path, _payload(), weights_only=True).save(3, final=False)
    state = torch.load(path, weights_only=True)
    assert sorted(state) == ["arch", "format_version", "global_step", "model", "stage", "step"]
    assert caplog.messages[-2:] == [f"writing {path} (about 4 MB)", f"saved {path}"]
    # at a stage end only <stage>_final.pth: a weights-only step file would be the same weights again
    final = _hooks(tmp_path, _payload(), weights_only=True).save(4, final=True, stage="main")
    assert final.name == "main_final.pth" and not (tmp_path / "checkpoints" / "step_0000004.pth").exists()
