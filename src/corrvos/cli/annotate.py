"""`corrvos annotate`: the browser tool to mask objects in a video (draw, propagate, correct, export).

The work is in :mod:`corrvos.annotate`; this module parses the options, opens the project, loads the model and
runs the server.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from corrvos.cli.engine_options import add_engine_arguments

HELP = "mask objects in a video in your browser: draw, propagate with a model, correct, export (DAVIS / training set)"
DESCRIPTION = """\
Start a local web server with one page to annotate a video: draw objects on any frame (brush, eraser, polygon,
or load a mask PNG), propagate them through the video with a model (forward, backward or both), correct any frame
and propagate again, then export DAVIS palette PNGs, per-object PNGs, an overlay MP4 or a DAVIS-layout training
set that `corrvos train` reads as it is.

The project folder (--project, default <video name>.annotate next to the video) keeps the annotations
(annotations/<frame>.png, a --mask-dir for `corrvos segment`), the propagated masks (masks/), the objects and the
settings, saved as you work; run the command again with the same --project to continue. A video file is decoded
once, in the background while you work, into <project>/frames/ (lossless PNG) for random access.

Safety: the server listens on 127.0.0.1 only, on a free port unless --port. With --host (e.g. 0.0.0.0 to reach it
from another machine) every request needs the token printed at start (in the URL, as Jupyter). The server reads
only the video and the project folder and writes only inside the project folder.

Propagation uses the same engine and options as `corrvos segment` (the memory options below), so
`corrvos segment --video V --mask-dir <project>/annotations` gives the masks of "propagate both".

keyboard shortcuts in the page: see docs/annotate.md (left/right: previous/next frame, space: play, b: brush,
e: eraser, p: polygon, [ ]: brush size, 1-9: select object, +/-: zoom, o: toggle the overlay, ctrl+z: undo)

examples:
  corrvos annotate --video clip.mp4 --model stcn.pth
  corrvos annotate --video frames/ --model XMem.pth --project work/clip.annotate --device cpu
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from corrvos.families import checkpoint_sources

    parser.add_argument("--video", required=True, help="video file (.mp4, .avi, .mov, .mkv, ...) or frame folder")
    parser.add_argument(
        "--model",
        required=True,
        help=f"checkpoint used to propagate: official {checkpoint_sources()} file, a corrvos checkpoint or a "
        "weight name of `corrvos download`",
    )
    parser.add_argument(
        "--project", help="project folder (created if new; default: <video name>.annotate next to the video)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; any other address requires the printed "
        "token)",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--no-browser", action="store_true", help="do not open the page in a web browser")
    parser.add_argument(
        "--max-upload-mb", type=float, default=32.0, help="largest accepted upload (mask PNG), in MB (default 32)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="shorter side (>= 16) used inside the network, as `segment --size` (default 480; -1 keeps the frame "
        "size); a smaller video is not enlarged unless --upsample",
    )
    parser.add_argument("--upsample", action="store_true", help="enlarge a video whose shorter side is below --size")
    add_engine_arguments(parser)


def default_project(video: str | Path) -> Path:
    """``<video name>.annotate`` next to the video (a frame folder's name, or a video file's stem)."""
    video = Path(video).resolve()
    return video.parent / f"{video.stem if video.is_file() else video.name}.annotate"


def core_factory(args: argparse.Namespace, model: Any, frame_size: tuple[int, int]) -> Any:
    """video length -> a fresh InferenceCore with the options of the command line (as `corrvos segment`)."""
    from corrvos.cli.engine_options import engine_config
    from corrvos.inference import InferenceCore

    config = engine_config(args, model, default_size=480, frame_size=frame_size)
    return lambda length: InferenceCore(model, config, video_length=length)


def run(args: argparse.Namespace) -> int:
    from corrvos.annotate.project import Project
    from corrvos.cli.engine_options import check_engine_arguments, load_inference_model
    from corrvos.errors import ConfigError

    check_engine_arguments(args)
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must lie in 0..65535, got {args.port}")
    try:
        from corrvos.annotate.server import serve
    except ImportError as exc:
        raise ConfigError(
            f"corrvos annotate needs the annotate extra ({exc.name} is missing): pip install 'corrvos[annotate]'"
        ) from exc
    project_dir = Path(args.project) if args.project else default_project(args.video)
    with Project.open(project_dir, args.video) as project:
        model, device = load_inference_model(args)
        make_core = core_factory(args, model, project.size)
        done, total = project.frames.decoded
        decoding = "" if done == total else f" (decoding the video into {project.root / 'frames'} in the background)"
        print(f"Project {project.root}: {total} frames, model {args.model} on {device}{decoding}")
        serve(
            project,
            make_core,
            host=args.host,
            port=args.port,
            open_browser=not args.no_browser,
            max_upload=int(args.max_upload_mb * 1024 * 1024),
        )
    return 0
