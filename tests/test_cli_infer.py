"""End-to-end tests of `corrvos infer` (DAVIS and YouTube-VOS layouts) and `corrvos segment` (mp4 and folder).

A real STCN with random weights (key projection scaled down so that the unsubtracted top-k exponentials stay
finite) is saved in the official state_dict layout; tiny datasets are written into tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from corrvos.cli import main
from corrvos.data.io import read_label, write_image, write_label
from corrvos.inference import InferenceConfig, InferenceCore
from corrvos.visualize.overlay import VideoWriter, colorize, overlay

H, W = 48, 80


def _scene(t: int, ids: tuple[int, ...] = (1, 2)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = (rng.random((H, W, 3)) * 120).astype(np.uint8)
    label = np.zeros((H, W), np.uint8)
    boxes = {1: (5, 20, 5 + 2 * t, 25 + 2 * t), 2: (25, 42, 40 + t, 60 + t), 3: (30, 45, 5, 20)}
    colours = {1: (230, 30, 30), 2: (30, 40, 230), 3: (30, 220, 40)}
    for obj in ids:
        y0, y1, x0, x1 = boxes[obj]
        rgb[y0:y1, x0:x1] = colours[obj]
        label[y0:y1, x0:x1] = obj
    return rgb, label


def _davis_root(root: Path, seqs=("aaa", "bbb"), frames: int = 4) -> Path:
    for s in seqs:
        for t in range(frames):
            rgb, label = _scene(t)
            write_image(root / "JPEGImages" / "480p" / s / f"{t:05d}.jpg", rgb)
            write_label(root / "Annotations" / "480p" / s / f"{t:05d}.png", label)
    for year in ("2016", "2017"):
        (root / "ImageSets" / year).mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / year / "val.txt").write_text("\n".join(seqs) + "\n")
    return root


def test_colorize_and_overlay() -> None:
    label = np.array([[0, 1], [2, 0]], np.uint8)
    col = colorize(label)
    assert col[0, 1].tolist() == [128, 0, 0] and col[1, 0].tolist() == [0, 128, 0] and col[0, 0].tolist() == [0, 0, 0]
    frame = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(frame, label, alpha=0.5, contour=False)
    assert out[0, 0].tolist() == [100, 100, 100] and out[0, 1].tolist() == [114, 50, 50]


def test_infer_davis_then_eval(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS")
    out = tmp_path / "results"
    rc = main(
        [
            "infer",
            "--model",
            str(ckpt),
            "--davis-root",
            str(root),
            "--set",
            "val",
            "--out",
            str(out),
            "--mem-every",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert "FPS" in capsys.readouterr().out
    for s in ("aaa", "bbb"):
        files = sorted(p.name for p in (out / s).iterdir())
        assert files == [f"{t:05d}.png" for t in range(4)]
        assert np.array_equal(read_label(out / s / "00000.png"), _scene(0)[1])  # the reference mask is echoed
    # the PNGs equal a direct InferenceCore run on the same frames
    from corrvos.models import load_model

    model = load_model(ckpt)
    core = InferenceCore(model, InferenceConfig(mem_every=2))
    for t in range(4):
        rgb = cv2.cvtColor(cv2.imread(str(root / "JPEGImages/480p/aaa" / f"{t:05d}.jpg")), cv2.COLOR_BGR2RGB)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        prob = core.step(image, torch.from_numpy(_scene(0)[1]).long() if t == 0 else None, end=t == 3)
        pred = read_label(out / "aaa" / f"{t:05d}.png")
        assert set(np.unique(pred).tolist()) <= {0, 1, 2}
        assert np.array_equal(pred, core.prob_to_mask(prob).numpy())
    try:
        import corrvos.evaluation  # noqa: F401
    except ImportError:  # pragma: no cover - the evaluator is developed in parallel
        pytest.skip("corrvos.evaluation not available")
    rc = main(["eval", "--davis-root", str(root), "--set", "val", "--results", str(out), "--workers", "1", "--quiet"])
    assert rc == 0
    assert (out / "global_results-val.csv").is_file()


def test_infer_youtube_object_appearing_later(tmp_path: Path, ckpt: Path) -> None:
    root = tmp_path / "YouTube"
    vid = "v1"
    names = [f"{5 * t:05d}" for t in range(5)]
    for t, name in enumerate(names):
        rgb, label = _scene(t, ids=(1, 3) if t >= 2 else (3,))
        write_image(root / "valid" / "JPEGImages" / vid / f"{name}.jpg", rgb)
        if t == 1:
            write_label(root / "valid" / "Annotations" / vid / f"{name}.png", np.where(label == 3, 3, 0))
        if t == 2:
            write_label(root / "valid" / "Annotations" / vid / f"{name}.png", np.where(label == 1, 1, 0))
    meta = {
        "videos": {
            vid: {"objects": {"3": {"category": "x", "frames": names[1:]}, "1": {"category": "y", "frames": names[2:]}}}
        }
    }
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "yv_out"
    rc = main(
        [
            "infer",
            "--model",
            str(ckpt),
            "--youtube-root",
            str(root),
            "--out",
            str(out),
            "--size",
            "32",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    files = sorted(p.name for p in (out / "Annotations" / vid).iterdir())
    assert files == [f"{n}.png" for n in names[1:]]  # nothing before the first reference mask
    first = read_label(out / "Annotations" / vid / f"{names[1]}.png")
    assert first.shape == (H, W) and set(np.unique(first).tolist()) <= {0, 3}
    later = read_label(out / "Annotations" / vid / f"{names[2]}.png")
    assert (later[_scene(2, ids=(1,))[1] == 1] == 1).mean() > 0.9  # object 1 appears on its reference frame


def _write_mp4(path: Path, frames: int = 5) -> None:
    with VideoWriter(path, fps=10) as video:
        for t in range(frames):
            video.write(_scene(t)[0])


def test_segment_mp4(tmp_path: Path, ckpt: Path, capsys) -> None:
    rc, out = _segment_test_mp4(tmp_path, ckpt)
    assert rc == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert np.array_equal(read_label(out / "masks" / "00000.png"), _scene(0)[1])
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 5
    assert "objects [1, 2]" in capsys.readouterr().out


def test_segment_frame_folder_and_mask_errors(tmp_path: Path, ckpt: Path, capsys) -> None:
    folder = tmp_path / "frames"
    for t in range(3):
        write_image(folder / f"f{t:03d}.png", _scene(t)[0])
    small = tmp_path / "small.png"
    write_label(small, _scene(0)[1][:40, :60])
    args = [
        "segment",
        "--model",
        str(ckpt),
        "--video",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--device",
        "cpu",
        "--no-overlay",
        "--size",
        "-1",
    ]
    assert main([*args, "--mask", str(small)]) == 2
    err = capsys.readouterr().err
    assert str(small) in err and "--resize-mask" in err
    assert main([*args, "--mask", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main([*args, "--mask", str(small), "--resize-mask", "--mask-frame", "1", "--forward-only"]) == 0
    masks = sorted(p.name for p in (tmp_path / "o" / "masks").iterdir())
    assert masks == ["f000.png", "f001.png", "f002.png"]
    assert not read_label(tmp_path / "o" / "masks" / "f000.png").any()  # before the annotated frame
    assert not (tmp_path / "o" / "overlay.mp4").exists()


def test_infer_and_eval_on_synthetic_davis(tmp_path: Path, ckpt: Path, capsys) -> None:
    synthetic = pytest.importorskip("corrvos.data.synthetic")
    pytest.importorskip("corrvos.evaluation")
    root = synthetic.generate_dataset(tmp_path / "synth", sequences=2, frames=4, size=(48, 80), seed=0)
    out = tmp_path / "res"
    assert main(["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(out), "--device", "cpu"]) == 0
    names = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    for name in names:
        gt0 = read_label(root / "Annotations" / "480p" / name / "00000.png")
        assert np.array_equal(read_label(out / name / "00000.png"), gt0)
        for png in (out / name).iterdir():
            assert set(np.unique(read_label(png)).tolist()) <= set(np.unique(gt0).tolist())
    assert main(["eval", "--davis-root", str(root), "--results", str(out), "--workers", "1", "--quiet"]) == 0
    assert "J&F-Mean" in capsys.readouterr().out


def test_video_writer_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, fps=5) as video:
        video.write(_scene(0)[0])
        raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())  # no partial file, no temporary left behind
    with VideoWriter(path, fps=5) as video:
        for t in range(3):
            video.write(overlay(*_scene(t)))
        with pytest.raises(ValueError, match="size"):
            video.write(np.zeros((10, 10, 3), np.uint8))
    assert path.is_file() and path.stat().st_size > 0


def test_infer_davis_void_in_first_mask_is_not_an_object(tmp_path: Path, ckpt: Path, capsys) -> None:
    """DAVIS 255 (void) in the frame-0 annotation is ignored, as documented: it must not become object 255."""
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    first = _scene(0)[1].copy()
    first[:3] = 255  # a void band
    write_label(root / "Annotations" / "480p" / "aaa" / "00000.png", first)
    out = tmp_path / "results"
    assert main(["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(out), "--device", "cpu"]) == 0
    for t in range(3):
        assert set(np.unique(read_label(out / "aaa" / f"{t:05d}.png")).tolist()) <= {0, 1, 2}
    assert np.array_equal(read_label(out / "aaa" / "00000.png"), np.where(first == 255, 0, first))
    assert main(["eval", "--davis-root", str(root), "--results", str(out), "--workers", "1", "--quiet"]) == 0


def test_infer_youtube_train_split_gives_only_new_objects(tmp_path: Path, ckpt: Path) -> None:
    """On a fully annotated split (YouTube-VOS train), the mask of a frame where a new object appears also shows
    the known objects; only the new object may be taken from it, the others stay predictions (no GT leak)."""
    root = tmp_path / "YouTube"
    vid = "v1"
    names = [f"{5 * t:05d}" for t in range(4)]
    scenes = [_scene(t, ids=(1, 3) if t >= 2 else (3,)) for t in range(4)]
    for name, (rgb, label) in zip(names, scenes, strict=True):
        write_image(root / "train" / "JPEGImages" / vid / f"{name}.jpg", rgb)
        write_label(root / "train" / "Annotations" / vid / f"{name}.png", label)  # every object, every frame
    meta = {
        "videos": {
            vid: {"objects": {"3": {"category": "x", "frames": names}, "1": {"category": "y", "frames": names[2:]}}}
        }
    }
    (root / "train" / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "yv_out"
    assert (
        main(
            [
                "infer",
                "--model",
                str(ckpt),
                "--youtube-root",
                str(root),
                "--set",
                "train",
                "--out",
                str(out),
                "--size",
                "-1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    # independent run: frame 0 gives object 3, frame 2 gives only object 1's mask
    from corrvos.models import load_model

    core = InferenceCore(load_model(ckpt))
    for t, name in enumerate(names):
        rgb = cv2.cvtColor(cv2.imread(str(root / "train" / "JPEGImages" / vid / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        label = scenes[t][1]
        mask = {0: np.where(label == 3, 3, 0), 2: np.where(label == 1, 1, 0)}.get(t)
        prob = core.step(
            torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,
            None if mask is None else torch.from_numpy(mask).long(),
            end=t == 3,
        )
        expected = core.prob_to_mask(prob).numpy()
        assert np.array_equal(read_label(out / "Annotations" / vid / f"{name}.png"), expected), name
    # object 3 is predicted, not copied from the ground truth, on frame 2
    assert not np.array_equal(read_label(out / "Annotations" / vid / f"{names[2]}.png"), scenes[2][1])


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path: Path, ckpt: Path, capsys) -> None:
    root = _davis_root(tmp_path / "DAVIS", seqs=("aaa",), frames=3)
    blocker = tmp_path / "out"
    blocker.write_text("")
    assert (
        main(["infer", "--model", str(ckpt), "--davis-root", str(root), "--out", str(blocker), "--device", "cpu"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("corrvos infer: error: ") and str(blocker) in err
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames=2)
    mask = tmp_path / "first.png"
    write_label(mask, _scene(0)[1])
    assert (
        main(
            [
                "segment",
                "--model",
                str(ckpt),
                "--video",
                str(video),
                "--mask",
                str(mask),
                "--out",
                str(blocker),
                "--device",
                "cpu",
                "--size",
                "-1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("corrvos segment: error: ") and str(blocker) in err


def test_segment_rejects_bad_fps_before_work(tmp_path: Path, ckpt: Path, capsys) -> None:
    video = tmp_path / "clip.mp4"
    _write_mp4(video, frames=2)
    mask = tmp_path / "first.png"
    write_label(mask, _scene(0)[1])
    out = tmp_path / "seg"
    assert (
        main(
            [
                "segment",
                "--model",
                str(ckpt),
                "--video",
                str(video),
                "--mask",
                str(mask),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--size",
                "-1",
                "--fps",
                "-5",
            ]
        )
        == 2
    )
    assert "--fps" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_segment_fold_bn_runs_and_echoes_the_first_mask(tmp_path: Path, ckpt: Path) -> None:
    rc, out = _segment_test_mp4(tmp_path, ckpt, "--no-overlay", "--fold-bn")
    assert rc == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert np.array_equal(read_label(out / "masks" / "00000.png"), _scene(0)[1])


def _segment_test_mp4(tmp_path: Path, ckpt: Path, *extra: str) -> tuple[int, Path]:
    """Run ``corrvos segment`` on the 5-frame test mp4 with its frame-0 mask; returns (exit status, out folder)."""
    video = tmp_path / "clip.mp4"
    _write_mp4(video)
    mask = tmp_path / "first.png"
    write_label(mask, _scene(0)[1])
    out = tmp_path / "seg"
    rc = main(
        [
            "segment",
            "--model",
            str(ckpt),
            "--video",
            str(video),
            "--mask",
            str(mask),
            "--out",
            str(out),
            "--size",
            "-1",
            "--device",
            "cpu",
            *extra,
        ]
    )
    return rc, out


@pytest.mark.parametrize("arch", ["stcn", "xmem"])
def test_segment_and_infer_take_a_small_variant_file_unchanged(tmp_path: Path, arch: str, capsys) -> None:
    """corrvos's small variant (the CPU recipe's network) saved as a bare state_dict: segment reads its sizes from
    the shapes and runs as with an official file."""
    import torch

    from corrvos.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, key_encoder="resnet18", width=32).eval()
    path = tmp_path / "small.pth"
    torch.save(model.state_dict(), path)
    rc, out = _segment_test_mp4(tmp_path, path)
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(5)]
    assert np.array_equal(read_label(out / "masks" / "00000.png"), _scene(0)[1])
