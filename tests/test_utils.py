"""Small shared helpers: atomic writes (nothing half-written under the final name, usual permissions, cleanup on
failure) and device selection."""

from __future__ import annotations

import os
import stat

import pytest

from corrvos.utils import atomic_path, atomic_write_text


def test_atomic_write_text_and_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_output_folder_blocked_by_a_file_is_a_data_error(tmp_path):
    """A file where an output folder must go is a user error naming the path (the CLI prints it, exit 2)."""
    from corrvos.errors import DataError
    from corrvos.utils import make_output_dir

    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as exc:
        atomic_write_text(blocker / "seq" / "out.txt", "x")
    assert str(blocker) in str(exc.value) and "not a folder" in str(exc.value)
    with pytest.raises(DataError, match="not a folder"):
        make_output_dir(blocker / "masks")
    assert make_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    assert blocker.read_text() == "not a folder"


def test_cli_output_path_that_is_a_file(tmp_path, capsys):
    from corrvos.cli import main

    blocker = tmp_path / "out"
    blocker.write_text("")
    root = tmp_path / "ds"
    assert (
        main(["synth", "--out", str(root), "--sequences", "2", "--frames", "4", "--size", "16x16", "--no-progress"])
        == 0
    )
    capsys.readouterr()
    from corrvos.inference.baseline import copy_first_frame

    copy_first_frame(root, tmp_path / "res", progress=False)
    assert (
        main(
            [
                "eval",
                "--davis-root",
                str(root),
                "--results",
                str(tmp_path / "res"),
                "--output",
                str(blocker),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("corrvos eval: error: ") and str(blocker) in err and "Traceback" not in err


def test_resolve_device_names_the_option_on_errors(monkeypatch: pytest.MonkeyPatch):
    import torch

    from corrvos.devices import resolve_device
    from corrvos.errors import ConfigError

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device 'gpu0': not a device"):
        resolve_device("gpu0", option="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"--device 'cuda:1': CUDA is not available .*use --device cpu"):
        resolve_device("cuda:1", option="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")  # unindexed without a local rank
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)  # one GPU per torchrun process
    assert resolve_device("cuda:0", local_rank=3) == torch.device("cuda", 0)
