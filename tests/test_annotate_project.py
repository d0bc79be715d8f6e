"""`corrvos annotate` without a browser (issue #23 part 1): the project store, propagation and exports.

Propagated and exported masks are compared with `corrvos segment` run on the project's annotation folder with the
same random STCN (the session fixture ``ckpt``), on tiny 48x80 scenes.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from corrvos.annotate import Project, Propagator, export, run_propagation
from corrvos.annotate.engine import Cancelled
from corrvos.cli import build_parser, main
from corrvos.cli.annotate import core_factory
from corrvos.data.io import read_label, write_image, write_label
from corrvos.errors import DataError
from test_cli_infer import _scene, _write_mp4
from test_cli_xmem import xmem_file  # noqa: F401 - fixture
from test_cutie_cli import cutie_file  # noqa: F401 - fixture

N = 6  # frames


def _folder(folder: Path, frames: int = N) -> Path:
    for t in range(frames):
        write_image(folder / f"{t:05d}.png", _scene(t)[0])
    return folder


def _make_core(ckpt: Path, video: Path, size: tuple[int, int] = (48, 80)):
    from corrvos.models import load_model

    args = build_parser().parse_args(
        ["annotate", "--video", str(video), "--model", str(ckpt), "--size", "-1", "--device", "cpu"]
    )
    return core_factory(args, load_model(ckpt).eval(), size)


def _segment(ckpt: Path, video: Path, masks: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    argv = ["segment", "--model", str(ckpt), "--video", str(video), "--mask-dir", str(masks), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--size", "-1", "--no-overlay", *extra]) == 0
    return {p.stem: read_label(p) for p in sorted((out / "masks").glob("*.png"))}


def _only(label: np.ndarray, obj: int) -> np.ndarray:
    return np.where(label == obj, obj, 0).astype(np.uint8)


def test_both_equals_segment_and_the_palette_export_is_its_masks(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames")
    with Project.open(tmp_path / "proj", frames) as project:
        project.set_annotation(2, _only(_scene(2)[1], 1))  # object 1 on frame 2: frames 0-1 run backwards
        project.set_annotation(4, _only(_scene(4)[1], 2))  # object 2 appears on frame 4; object 1 keeps its prediction
        written = run_propagation(project, _make_core(ckpt, frames), "both")
        assert written == N
        ours = {name: project.propagated(i) for i, name in enumerate(project.frame_names)}
        exported = export(project, "palette")
    theirs = _segment(ckpt, frames, tmp_path / "proj" / "annotations", tmp_path / "seg")
    assert sorted(theirs) == sorted(ours)
    for name, label in theirs.items():
        assert np.array_equal(ours[name], label), name
        assert np.array_equal(read_label(exported / f"{name}.png"), label), name
    assert (ours["00000"] == 1).sum() > 20  # the backward pass ran
    assert not np.any(ours["00003"] == 2) and (ours["00005"] == 2).sum() > 20  # object 2 from frame 4 on
    assert np.any(ours["00004"] == 1)  # the annotated frame's mask is the engine's (object 1 predicted), as segment


@pytest.mark.parametrize("family_file", ["xmem_file", "cutie_file"])
def test_other_families_propagate_as_segment(tmp_path: Path, family_file: str, request) -> None:
    model = request.getfixturevalue(family_file)
    frames = _folder(tmp_path / "frames", 4)
    with Project.open(tmp_path / "proj", frames) as project:
        project.set_annotation(1, _scene(1)[1])
        assert run_propagation(project, _make_core(model, frames), "both") == 4
        ours = {name: project.propagated(i) for i, name in enumerate(project.frame_names)}
    theirs = _segment(model, frames, tmp_path / "proj" / "annotations", tmp_path / "seg")
    assert sorted(theirs) == sorted(ours)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


def test_forward_leaves_earlier_frames_and_equals_segment_from_the_first_annotation(tmp_path: Path, ckpt) -> None:
    frames = _folder(tmp_path / "frames")
    with Project.open(tmp_path / "proj", frames) as project:
        project.set_annotation(2, _scene(2)[1])
        assert run_propagation(project, _make_core(ckpt, frames), "forward") == N - 2
        assert project.propagated(0) is None and project.propagated(1) is None
        ours = {name: project.propagated(i) for i, name in enumerate(project.frame_names) if i >= 2}
    theirs = _segment(ckpt, frames, tmp_path / "proj" / "annotations", tmp_path / "seg", "--start", "2")
    assert sorted(theirs) == sorted(ours)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


def test_backward_equals_segment_on_the_reversed_video(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames")
    with Project.open(tmp_path / "proj", frames) as project:
        project.set_annotation(3, _only(_scene(3)[1], 1))
        project.set_annotation(1, _scene(1)[1])  # object 2 given on frame 1, on the way back
        assert run_propagation(project, _make_core(ckpt, frames), "backward") == 4
        assert project.propagated(4) is None and project.propagated(5) is None
        ours = [project.propagated(i) for i in range(4)]
    reversed_frames, reversed_masks = tmp_path / "rev", tmp_path / "rev_masks"
    for i in range(4):  # reversed frame j is frame 3 - j
        shutil.copy(frames / f"{3 - i:05d}.png", _mkdir(reversed_frames) / f"{i:05d}.png")
    write_label(reversed_masks / "00000.png", _only(_scene(3)[1], 1))
    write_label(reversed_masks / "00002.png", _scene(1)[1])
    theirs = _segment(ckpt, reversed_frames, reversed_masks, tmp_path / "seg")
    for i in range(4):
        assert np.array_equal(ours[i], theirs[f"{3 - i:05d}"]), i
    assert (ours[0] == 2).sum() > 20 and not np.any(ours[2] == 2)  # object 2 only from frame 1 backwards


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_cancelling_stops_before_the_next_step_and_keeps_the_frames_done(tmp_path: Path, ckpt: Path) -> None:
    frames = _folder(tmp_path / "frames")
    seen: list[tuple[int, int]] = []

    def stop_at_three(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:
            raise Cancelled

    with Project.open(tmp_path / "proj", frames) as project:
        project.set_annotation(0, _scene(0)[1])
        with pytest.raises(Cancelled):
            run_propagation(project, _make_core(ckpt, frames), "forward", on_step=stop_at_three)
        assert seen == [(0, N), (1, N), (2, N), (3, N)]
        assert [project.propagated(i) is not None for i in range(N)] == [True] * 3 + [False] * 3

        make = _make_core(ckpt, frames)
        propagator = Propagator(project, lambda n: (propagator.cancel(), make(n))[1])  # cancelled at its start
        propagator.start("both")
        status = propagator.wait(60)
        assert (status.state, status.frames_written) == ("cancelled", 0)
        with pytest.raises(DataError, match="direction"):
            propagator.start("sideways")
        propagator = Propagator(project, make)
        propagator.start("forward")
        status = propagator.wait(60)
        assert (status.state, status.done, status.total, status.frames_written) == ("done", N, N, N)


def test_project_store_saves_restores_locks_and_refuses_bad_masks(tmp_path: Path) -> None:
    frames = _folder(tmp_path / "frames", 3)
    root = tmp_path / "proj"
    with Project.open(root, frames) as project:
        with pytest.raises(DataError, match="another corrvos annotate server"):
            Project.open(root, frames)
        with pytest.raises(DataError, match=r"mask is 10x80 but the frames are 48x80"):
            project.set_annotation(1, np.ones((10, 80), np.uint8))
        assert project.annotated_frames() == []
        assert not (root / "annotations").exists()
        label = _scene(1)[1].copy()
        label[0, 0] = 7
        assert project.set_annotation(1, label) == [1, 2, 7]
        assert [o.id for o in project.objects] == [1, 2, 7]
        project.update_object(7, name="ball", colour="#00FF00")
        project.add_object()  # id 3, the smallest free one
        project.update_settings(opacity=0.25, frame=1)
        project.write_propagated(1, label)
        assert project.mask(1)[1] == "propagated"
        project.set_annotation(1, label)  # annotating again outdates the propagated mask
        assert project.propagated(1) is None and project.mask(1)[1] == "annotation"
        assert project.delete_object(2) == 1
        with pytest.raises(DataError, match="colour must be #rrggbb"):
            project.update_object(1, colour="red")
    with Project.open(root) as project:  # reopened: everything restored
        assert [(o.id, o.name, o.colour) for o in project.objects] == [
            (1, "object 1", "#800000"),
            (3, "object 3", "#808000"),
            (7, "ball", "#00ff00"),
        ]
        assert project.settings.opacity == 0.25 and project.settings.frame == 1
        expected = label.copy()
        expected[expected == 2] = 0
        assert np.array_equal(project.annotation(1), expected)
        assert project.annotated_frames() == [1]
    with pytest.raises(DataError, match="this project annotates"):
        Project.open(root, tmp_path)


def test_unreadable_video_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"clip\.mp4"):
        Project.open(tmp_path / "proj", bad)
    assert not (tmp_path / "proj").exists()


def test_video_file_project_equals_segment_on_the_video_file(tmp_path: Path, ckpt: Path) -> None:
    video = tmp_path / "clip.mp4"
    _write_mp4(video, 5)
    with Project.open(tmp_path / "proj", video) as project:
        assert project.frame_names == [f"{t:05d}" for t in range(5)]
        project.set_annotation(1, _scene(1)[1])
        run_propagation(project, _make_core(ckpt, video), "both")
        ours = {name: project.propagated(i) for i, name in enumerate(project.frame_names)}
    theirs = _segment(ckpt, video, tmp_path / "proj" / "annotations", tmp_path / "seg")
    assert sorted(theirs) == sorted(ours)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


def test_a_video_file_is_decoded_lazily_in_the_background(tmp_path: Path, monkeypatch) -> None:
    from corrvos.data.video import VideoFileSource

    video = tmp_path / "clip.mp4"
    _write_mp4(video, 5)
    expected = [rgb for _, rgb in VideoFileSource(video)]
    gate, original = threading.Event(), VideoFileSource.__iter__

    def gated(self):  # the decoder stops before frame 2 until the gate opens
        for k, item in enumerate(original(self)):
            if k == 2:
                gate.wait(30)
            yield item

    monkeypatch.setattr(VideoFileSource, "__iter__", gated)
    with Project.open(tmp_path / "proj", video) as project:  # returns before the video is decoded
        assert np.array_equal(project.frame(1), expected[1])
        assert project.frames.decoded == (2, 5) and not project.frames.complete
        with pytest.raises(DataError, match=r"frame 3 is not decoded after 0\.2 s"):
            project.frames.read(3, timeout=0.2)
        gate.set()
        assert np.array_equal(project.frame(4), expected[4])
        assert len(project.source) == 5 and project.frames.complete  # source waits for the end
    monkeypatch.setattr(VideoFileSource, "__iter__", None)  # reopened: the decoded frames, no decoding
    with Project.open(tmp_path / "proj") as project:
        assert project.frames.complete and np.array_equal(project.frame(3), expected[3])


def test_per_object_overlay_and_training_set_exports(tmp_path: Path) -> None:
    from corrvos.data.clips import davis_clip_dataset
    from corrvos.data.davis import DavisDataset

    frames = _folder(tmp_path / "my clip", 4)
    with Project.open(tmp_path / "proj", frames) as project:
        for t in range(4):
            project.set_annotation(t, _scene(t)[1]) if t != 2 else project.write_propagated(t, _scene(t)[1])
        project.set_annotation(3, np.zeros((48, 80), np.uint8))  # drawn empty: exported as background
        per_object = export(project, "per-object")
        for t in range(4):
            for obj in (1, 2):
                got = cv2.imread(str(per_object / f"{t:05d}_{obj}.png"), cv2.IMREAD_UNCHANGED)
                expected = np.zeros((48, 80)) if t == 3 else np.where(_scene(t)[1] == obj, 255, 0)
                assert np.array_equal(got, expected), (t, obj)
        root = export(project, "training-set")
        assert sorted(p.name for p in (root / "JPEGImages" / "480p").iterdir()) == ["my_clip"]
        seq = DavisDataset(root, split="train").sequence("my_clip")
        assert len(seq) == 4 and seq.object_ids == [1, 2]
        assert np.array_equal(read_label(root / "Annotations/480p/my_clip/00002.png"), _scene(2)[1])
        clips = davis_clip_dataset(root, split="train", num_frames=3, max_skip=1)
        assert len(clips) == 1 and clips[0] is not None  # the training loader draws a clip from it
        video = export(project, "overlay")
        cap = cv2.VideoCapture(str(video))
        count = 0
        while cap.read()[0]:
            count += 1
        cap.release()
        assert count == 4
        project.delete_annotation(1)
        with pytest.raises(DataError, match=r"frame 00001 \(index 1\) has no mask yet"):
            export(project, "palette")
        assert not (tmp_path / "proj" / "exports" / "masks").exists()
        with pytest.raises(DataError, match="sequence name"):
            export(project, "training-set", name="../up")


def test_cli_help_explains_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    text = capsys.readouterr().out
    for option in ("--video", "--model", "--project", "--host", "--port", "--no-browser", "--max-upload-mb", "--size"):
        assert option in text, option
    assert "keyboard shortcuts" in text and "token" in text


def test_cli_opens_the_default_project_and_serves_it(tmp_path: Path, ckpt: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("starlette")
    import corrvos.annotate.server as server

    frames = _folder(tmp_path / "clip", 2)
    served = {}

    def fake_serve(project, make_core, **options) -> None:
        served.update(options, root=project.root, core=make_core(2))

    monkeypatch.setattr(server, "serve", fake_serve)
    argv = ["annotate", "--video", str(frames), "--model", str(ckpt), "--device", "cpu", "--no-browser"]
    assert main([*argv, "--max-upload-mb", "2"]) == 0
    assert served["root"] == tmp_path / "clip.annotate" and (tmp_path / "clip.annotate" / "project.json").is_file()
    assert (served["host"], served["port"], served["open_browser"], served["max_upload"]) == (
        "127.0.0.1",
        0,
        False,
        2 << 20,
    )
    assert served["core"].config.internal_size is None  # a 48x80 video is not enlarged to 480, as in segment

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video")
    assert main(["annotate", "--video", str(bad), "--model", str(ckpt), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("corrvos annotate: error:") and "bad.mp4" in err and "\n" not in err
    assert main([*argv, "--port", "70000"]) == 2
    assert "--port must lie in 0..65535" in capsys.readouterr().err
