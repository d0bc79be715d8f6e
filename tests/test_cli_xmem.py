"""End to end with XMem: an official-layout XMem file through `corrvos infer` + `corrvos eval` and `corrvos segment`.

The checkpoint is a random-weight XMem saved as a plain state_dict (the layout of the released ``XMem.pth``); the
datasets are the synthetic generator's DAVIS and YouTube-VOS layouts. The CLI must take the file unchanged (the
architecture comes from its keys), apply XMem's driver conventions (YouTube-VOS all frames by default) and give the
PNGs of a direct :class:`InferenceCore` run with XMem's defaults.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.data.davis import DavisDataset
from corrvos.data.io import read_label
from corrvos.data.synthetic import generate_dataset
from corrvos.families.xmem.network import XMem
from corrvos.inference import InferenceCore, inference_config_for
from corrvos.models import load_model


@pytest.fixture(scope="module")
def xmem_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = XMem().eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(3.0)
        model.value_encoder.conv1.weight[:, 3:].mul_(100.0)
    path = tmp_path_factory.mktemp("xmem") / "XMem.pth"
    torch.save(model.state_dict(), path)  # the released file's layout: a bare state_dict
    return path


def test_infer_davis_with_xmem_then_eval(tmp_path: Path, xmem_file: Path, capsys) -> None:
    root = generate_dataset(tmp_path / "synth", sequences=2, frames=6, size=(48, 80), seed=0)
    out = tmp_path / "res"
    rc = main(
        [
            "infer",
            "--model",
            str(xmem_file),
            "--davis-root",
            str(root),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--size",
            "-1",
            "--mem-every",
            "2",
            "--max-mid-term-frames",
            "3",
            "--min-mid-term-frames",
            "2",
            "--num-prototypes",
            "4",
        ]
    )
    assert rc == 0
    assert "FPS" in capsys.readouterr().out
    # the PNGs equal a direct run with XMem's defaults and the same changed options
    model = load_model(xmem_file)
    config = inference_config_for(
        model, internal_size=None, mem_every=2, max_mid_term_frames=3, min_mid_term_frames=2, num_prototypes=4
    )
    assert config.top_k == 30 and config.enable_long_term  # XMem's eval.py defaults where not changed
    ds = DavisDataset(root, split="val")
    for name in ds.sequences:
        seq = ds.sequence(name)
        core = InferenceCore(model, config, video_length=len(seq))
        for t in range(len(seq)):
            image = torch.from_numpy(seq.read_frame(t)).permute(2, 0, 1).float().div(255)
            mask = torch.from_numpy(seq.read_mask(0).astype(np.int64)) if t == 0 else None
            label = core.prob_to_mask(core.step(image, mask, end=t == len(seq) - 1)).numpy()
            assert np.array_equal(read_label(out / name / f"{seq.frame_ids[t]}.png"), label), (name, t)
        assert core.memory.long.size > 0  # the options reached the engine: consolidation happened
    assert main(["eval", "--davis-root", str(root), "--results", str(out), "--workers", "1", "--quiet"]) == 0
    assert "J&F-Mean" in capsys.readouterr().out


def test_infer_youtube_with_xmem_runs_on_all_frames_by_default(tmp_path: Path, xmem_file: Path) -> None:
    root = generate_dataset(tmp_path / "yt", sequences=2, frames=11, size=(48, 80), seed=1, layout="youtube")
    outs = {}
    for flag in ([], ["--no-all-frames"]):
        out = tmp_path / ("default" if not flag else "sampled")
        assert (
            main(
                [
                    "infer",
                    "--model",
                    str(xmem_file),
                    "--youtube-root",
                    str(root),
                    "--out",
                    str(out),
                    "--device",
                    "cpu",
                    "--size",
                    "-1",
                    *flag,
                ]
            )
            == 0
        )
        outs["default" if not flag else "sampled"] = out / "Annotations"
    explicit = tmp_path / "explicit"
    assert (
        main(
            [
                "infer",
                "--model",
                str(xmem_file),
                "--youtube-root",
                str(root),
                "--out",
                str(explicit),
                "--device",
                "cpu",
                "--size",
                "-1",
                "--all-frames",
            ]
        )
        == 0
    )
    videos = sorted(p.name for p in outs["default"].iterdir())
    assert videos and videos == sorted(p.name for p in outs["sampled"].iterdir())
    differ = False
    for vid in videos:
        names = sorted(p.name for p in (outs["default"] / vid).iterdir())
        assert names == sorted(p.name for p in (outs["sampled"] / vid).iterdir())  # only the sampled frames saved
        for name in names:
            a = read_label(outs["default"] / vid / name)
            assert np.array_equal(a, read_label(explicit / "Annotations" / vid / name))  # default = --all-frames
            differ |= not np.array_equal(a, read_label(outs["sampled"] / vid / name))
    assert differ  # running on every frame changes the sensory memory, hence the results
    # the fully annotated train split has no train_all_frames: the default falls back to the sampled frames, and
    # the local YouTube-VOS J/F scores the result
    out = tmp_path / "train"
    assert (
        main(
            [
                "infer",
                "--model",
                str(xmem_file),
                "--youtube-root",
                str(root),
                "--set",
                "train",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--size",
                "-1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "--youtube-gt",
                str(root / "train" / "Annotations"),
                "--results",
                str(out / "Annotations"),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )


def test_segment_with_xmem(tmp_path: Path, xmem_file: Path, capsys) -> None:
    from corrvos.data.io import write_image, write_label

    root = generate_dataset(tmp_path / "synth", sequences=1, frames=5, size=(48, 80), seed=2)
    seq = DavisDataset(root, split="val").sequence("synth000")
    folder = tmp_path / "frames"
    for t in range(len(seq)):
        write_image(folder / f"{t:05d}.png", seq.read_frame(t))
    write_label(tmp_path / "mask.png", seq.read_mask(0))
    rc = main(
        [
            "segment",
            "--model",
            str(xmem_file),
            "--video",
            str(folder),
            "--mask",
            str(tmp_path / "mask.png"),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
            "--no-overlay",
            "--size",
            "-1",
            "--deep-update-every",
            "2",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "o" / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert np.array_equal(read_label(tmp_path / "o" / "masks" / "00000.png"), seq.read_mask(0))
    assert (
        main(
            [
                "segment",
                "--model",
                str(xmem_file),
                "--video",
                str(folder),
                "--mask",
                str(tmp_path / "mask.png"),
                "--out",
                str(tmp_path / "o2"),
                "--device",
                "cpu",
                "--deep-update-every",
                "0",
            ]
        )
        == 2
    )
    assert "--deep-update-every" in capsys.readouterr().err
    assert (
        main(
            [
                "segment",
                "--model",
                str(xmem_file),
                "--video",
                str(folder),
                "--mask",
                str(tmp_path / "mask.png"),
                "--out",
                str(tmp_path / "o3"),
                "--device",
                "cpu",
                "--include-last",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "include_last" in err and len(err.strip().splitlines()) == 1
