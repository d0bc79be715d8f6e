"""`corrvos segment`: segment a user's video (mp4 or frame folder), or a folder of videos, from annotated frames.

One video (``--video``): writes ``<out>/masks/<frame>.png`` (palette PNGs with the masks' object ids) and
``<out>/overlay.mp4`` (the masks blended over the frames). A folder of videos (``--videos``, XMem's "generic"
mode): the same per video in ``<out>/<video>/``, each folder renamed into place when complete, with a manifest
(:class:`~corrvos.inference.outputs.ResultsFolder`) so that ``--skip-done`` continues a stopped run. Frames are
streamed: a video is never held in memory. The engine is :func:`corrvos.inference.propagate.propagate`; the input
layouts and checks are in :mod:`corrvos.cli.segment_inputs` and :mod:`corrvos.data.user_masks`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corrvos.cli.engine_options import ENGINE_SETTINGS, add_engine_arguments
from corrvos.data.mask_formats import MASK_FORMATS

if TYPE_CHECKING:
    from corrvos.cli.segment_inputs import CheckedVideo
    from corrvos.data.mask_formats import ColourMap
    from corrvos.inference.propagate import FrameRange, PropagationStats

HELP = "segment your own video (mp4 or frame folder) or a folder of videos from masks on any frames"
DESCRIPTION = """\
Propagate the objects of annotated frames through a video with a trained checkpoint.

Masks are PNGs of the frame size (--resize-mask resizes others, nearest neighbour): 0 = background, 1..254 =
object ids, 255 = void / ignored (as in DAVIS). --mask-format:
  auto        palette or 8-bit grayscale PNG -> label map; RGB / RGBA PNG -> colour mask (default)
  palette     indexed PNG, the indices are the ids
  label       8-bit grayscale PNG, the values are the ids
  rgb         one colour per object, black = background; ids 1, 2, ... in order of first appearance (row by row)
              in the first annotated mask, or fixed by --palette-map FILE.json {"<id>": [R, G, B] or "#rrggbb"};
              the mapping is written as colour_ids.json and the result PNGs' palette has those colours
  binary      one object: a 0/255 (or 0/1) grayscale mask, pixels >= 128 are object 1 (in auto, 255 is void)
  per-object  one binary mask per object (SAM-style export): <frame>_<id>.png in a mask folder, 0/255 or 0/1
              grayscale; where objects overlap the larger id wins; an empty file removes its object on that frame
Masks must be lossless (PNG): JPEG and lossy WebP masks are refused, and so is an automatically numbered colour
mask with more than 3 tiny colours (each under max(10 pixels, 0.05% of the mask): anti-aliased edges).

Where the masks are:
  --mask FILE [--mask-frame K]   one annotated frame (default frame 0); a mask inside the frame folder is no frame
  --mask-dir DIR                 masks on any frames, named like the frames: <frame>.png (a frame folder's file
                                 stems, or 00000.png, 00001.png, ... for a video file)
  --videos DIR --masks MASKS     every video of DIR (video files or frame folders); video <name> takes the mask
                                 folder MASKS/<name>/ or the frame-0 mask MASKS/<name>.png
A mask on a later frame with a new id adds an object there (absent before); a known id is corrected (the other
objects keep their predictions outside it). Frames before the first annotated frame are propagated backwards
from it (--forward-only writes them as background). --start/--end/--stride choose the frames (end exclusive);
only those are processed and written.

Outputs (one video: in <out>; --videos: in <out>/<name>/):
  masks/<frame>.png   palette PNGs with your object ids
  overlay.mp4         masks blended over the frames (skip with --no-overlay)
  colour_ids.json     id -> colour, for colour masks

High-resolution videos are processed with their shorter side resized to --size (default 480, as the models were
evaluated); a smaller video keeps its own size unless --upsample. Raise --mem-every for long videos. Results are
written into hidden temporary folders renamed when a video is done: a stopped run never leaves a partial result.

examples:
  corrvos segment --model stcn.pth --video clip.mp4 --mask clip_00000.png --out out/clip
  corrvos segment --model stcn.pth --video frames/ --mask-dir frame_masks/ --out out/frames --stride 2
  corrvos segment --model XMem.pth --videos videos/ --masks masks/ --out out/all --skip-done
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from corrvos.families import checkpoint_sources

    parser.add_argument(
        "--model",
        required=True,
        help=f"checkpoint: official {checkpoint_sources()} file or a corrvos checkpoint",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file (.mp4, .avi, .mov, .mkv, ...) or frame folder")
    src.add_argument("--videos", help="folder of videos (video files and frame folders), each with its own masks")
    parser.add_argument("--mask", help="mask PNG of one annotated frame (same size as the frames)")
    parser.add_argument("--mask-frame", type=int, default=None, help="index of the --mask frame (default 0)")
    parser.add_argument("--mask-dir", help="folder of masks for any frames of --video, named <frame>.png")
    parser.add_argument("--masks", help="with --videos: folder holding <name>/ mask folders or <name>.png masks")
    parser.add_argument("--mask-format", default="auto", choices=MASK_FORMATS, help="how masks are read (see above)")
    parser.add_argument("--palette-map", help="rgb masks: JSON file fixing the ids of the colours")
    parser.add_argument(
        "--resize-mask",
        action="store_true",
        help="accept masks of another size and resize them to the frame size (nearest neighbour)",
    )
    parser.add_argument("--start", type=int, default=0, help="first frame to process (default 0)")
    parser.add_argument("--end", type=int, default=None, help="frame to stop before (default: the video's end)")
    parser.add_argument("--stride", type=int, default=1, help="process every STRIDE-th frame (default 1)")
    parser.add_argument(
        "--forward-only", action="store_true", help="write frames before the first annotated one as background"
    )
    parser.add_argument("--out", required=True, help="output folder")
    done = parser.add_mutually_exclusive_group()
    done.add_argument("--overwrite", action="store_true", help="replace the results of an earlier corrvos run in --out")
    done.add_argument(
        "--skip-done",
        action="store_true",
        help="with --videos: continue a stopped run of the same job; videos already complete are not run again",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="shorter side (>= 16) used inside the network (default 480, as both models were evaluated; "
        "-1 keeps the frame size); a smaller video is not enlarged unless --upsample",
    )
    parser.add_argument(
        "--upsample", action="store_true", help="enlarge a video whose shorter side is below --size (default: keep)"
    )
    add_engine_arguments(parser)
    parser.add_argument(
        "--no-overlay",
        action="store_true",
        help="do not write overlay.mp4 (H.264 or VP9, which browsers play, when this OpenCV writes them; else mp4v)",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="mask opacity in the overlay (default 0.5)")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="overlay frame rate (default: the video's, or 24 for a frame folder, divided by --stride)",
    )


def _check_options(args: argparse.Namespace) -> None:
    """Option combinations and values, before any file is read (ConfigError naming the option)."""
    from corrvos.errors import ConfigError

    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must lie in [0, 1], got {args.alpha}")
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    if args.start < 0 or args.stride < 1 or (args.end is not None and args.end <= args.start):
        end = "" if args.end is None else f" --end {args.end}"
        raise ConfigError(
            f"frame range: --start must be >= 0, --end > --start and --stride >= 1; got --start {args.start}{end} "
            f"--stride {args.stride}"
        )
    if args.videos is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("mask", "mask_dir", "mask_frame") if getattr(args, n) is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{', '.join(given)} {verb} to --video; with --videos the masks come from --masks")
        if args.masks is None:
            raise ConfigError("--videos needs --masks (a folder with <name>/ mask folders or <name>.png masks)")
        if Path(args.masks).resolve() == Path(args.videos).resolve():
            raise ConfigError("--masks must be a folder of its own, parallel to --videos")
        return
    if args.masks is not None or args.skip_done:
        raise ConfigError(f"{'--masks' if args.masks is not None else '--skip-done'} applies to --videos only")
    if (args.mask is None) == (args.mask_dir is None):
        raise ConfigError("--video needs one of --mask (one annotated frame) or --mask-dir (masks on any frames)")
    if args.mask_dir is not None and Path(args.mask_dir).resolve() == Path(args.video).resolve():
        raise ConfigError("--mask-dir must be a folder of its own, not the frame folder")
    if args.mask_dir is not None and args.mask_frame is not None:
        raise ConfigError("--mask-frame applies to --mask; the masks of --mask-dir are named like their frames")
    if args.mask is not None and args.mask_format == "per-object":
        raise ConfigError("per-object masks are files <frame>_<id>.png: give their folder with --mask-dir")


def _prepare_out(out, overwrite: bool):
    """The output folder, checked: earlier results are refused, or deleted with --overwrite."""
    import shutil

    from corrvos.errors import DataError
    from corrvos.inference.propagate import SCRATCH_PREFIX
    from corrvos.utils import make_output_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder: choose another --out")
    earlier = [p for p in (out / "masks", out / "overlay.mp4", out / "colour_ids.json") if p.exists()]
    if earlier and not overwrite:
        names = " and ".join(p.name for p in earlier)
        raise DataError(out, f"holds the {names} of an earlier run: use a new --out, or --overwrite to replace them")
    for p in earlier:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for leftover in [out / ".partial-masks", *out.glob(f"{SCRATCH_PREFIX}*")]:
        if leftover.exists():
            shutil.rmtree(leftover)
    partial = out / ".partial-masks"
    make_output_dir(partial)
    return out, partial


def _frame_range(args: argparse.Namespace) -> FrameRange:
    from corrvos.inference.propagate import FrameRange

    return FrameRange(args.start, args.end, args.stride)


def _palette_map(args: argparse.Namespace) -> ColourMap | None:
    from corrvos.data.mask_formats import ColourMap

    return None if args.palette_map is None else ColourMap.read(args.palette_map)


def _segment_video(
    model: Any, config: Any, checked: CheckedVideo, args: argparse.Namespace, folder: Path, masks: Path
) -> tuple[PropagationStats, str | None]:
    """Segment one checked video: masks into ``masks``, overlay.mp4 (and colour_ids.json) into ``folder``.

    Returns:
        (:class:`~corrvos.inference.propagate.PropagationStats`, the overlay's codec or None).
    """
    import contextlib

    from corrvos.data.io import write_label
    from corrvos.inference import InferenceCore
    from corrvos.inference.propagate import propagate
    from corrvos.utils import atomic_write_text
    from corrvos.visualize.overlay import VideoWriter, overlay

    source, annotations = checked.source, checked.annotations
    palette = None if annotations.colours is None else annotations.colours.palette()
    fps = args.fps or source.fps / args.stride
    writer = contextlib.nullcontext() if args.no_overlay else VideoWriter(folder / "overlay.mp4", fps=fps)
    with writer as video:

        def write(index: int, name: str, rgb: Any, label: Any) -> None:
            write_label(masks / f"{name}.png", label, palette)
            if video is not None:
                video.write(overlay(rgb, label, alpha=args.alpha))

        stats = propagate(
            lambda length: InferenceCore(model, config, video_length=length),
            source,
            {i: (m.label, m.objects) for i, m in annotations.masks.items()},
            write,
            frames=_frame_range(args),
            backward=not args.forward_only,
            scratch_dir=folder,
        )
    if annotations.colours is not None:
        atomic_write_text(folder / "colour_ids.json", annotations.colours.to_json())
    return stats, None if video is None else video.codec


def run(args: argparse.Namespace) -> int:
    from corrvos.cli.engine_options import check_engine_arguments, check_paths_early

    check_engine_arguments(args)
    _check_options(args)
    check_paths_early({}, {"--out": args.out})  # before the inputs are read and the (slow) model loaded
    return _run_many(args) if args.videos is not None else _run_one(args)


def interrupt_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """After Ctrl-C: how to go on (``--videos`` keeps the complete videos; one video leaves nothing in --out)."""
    from corrvos.cli.engine_options import skip_done_command

    if args.videos is not None:
        return f"continue with: {skip_done_command(argv)}"
    return "nothing was written to --out; run the same command again"


def _run_one(args: argparse.Namespace) -> int:
    import shutil

    from corrvos.cli.engine_options import engine_config, load_inference_model
    from corrvos.cli.segment_inputs import VideoInput, check_video, raise_problems
    from corrvos.utils import format_size

    masks = Path(args.mask if args.mask is not None else args.mask_dir)
    video = VideoInput(Path(args.video).name, Path(args.video), masks, args.mask_frame or 0)
    checked, problems = check_video(
        video,
        fmt=args.mask_format,
        frames=_frame_range(args),
        palette_map=_palette_map(args),
        resize=args.resize_mask,
        exclude=(masks,) if args.mask is not None else (),
    )
    raise_problems(problems)  # every input checked before the (slow) model load
    assert checked is not None
    model, device = load_inference_model(args)
    size = checked.source.size
    config = engine_config(args, model, default_size=480, frame_size=size)
    out, partial = _prepare_out(args.out, args.overwrite)  # nothing is written before every check passed
    _note_small_video(args, config, size)
    try:
        stats, codec = _segment_video(model, config, checked, args, out, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out / "masks")
    print(
        f"Segmented {stats.written} frames ({format_size(size)}, HxW), objects {stats.object_ids}: {stats.frames} "
        f"network steps in {stats.seconds:.2f} s (I/O excluded), {stats.frames / max(stats.seconds, 1e-9):.2f} FPS "
        f"on {device}"
    )
    written = "" if args.no_overlay else f", overlay to {out / 'overlay.mp4'} ({codec})"
    print(f"Masks written to {out / 'masks'}{written}")
    return 0


def _run_many(args: argparse.Namespace) -> int:
    import functools

    from corrvos.cli.engine_options import engine_config, load_inference_model
    from corrvos.cli.segment_inputs import VideoInput, check_video, find_videos, masks_of, raise_problems
    from corrvos.inference.outputs import ResultsFolder
    from corrvos.progress import progress_bar

    check = functools.partial(
        check_video,
        fmt=args.mask_format,
        frames=_frame_range(args),
        palette_map=_palette_map(args),
        resize=args.resize_mask,
    )
    videos, problems = find_videos(args.videos, skip=(Path(args.masks), Path(args.out)))
    raise_problems(problems)
    results = ResultsFolder(args.out, _job(args))
    todo = results.plan(list(videos), skip_done=args.skip_done, overwrite=args.overwrite)
    if len(todo) < len(videos):
        print(f"--skip-done: {len(videos) - len(todo)} of {len(videos)} videos already complete in {args.out}")
    inputs = {}
    for name in progress_bar(todo, desc="checking inputs", unit="video", leave=False):  # every video before any runs
        masks, problem = masks_of(name, videos[name], Path(args.masks), args.mask_format)
        if masks is None:
            problems.append(str(problem))
            continue
        inputs[name] = VideoInput(name, videos[name], masks)
        _, found = check(inputs[name])
        problems += found
    raise_problems(problems)
    model, device = load_inference_model(args)
    results.begin()  # nothing is written before every check passed
    frames, seconds = 0, 0.0
    for name in todo:
        checked, found = check(inputs[name])  # read again: the masks of every video are not kept in memory
        raise_problems(found)  # changed since the check
        assert checked is not None
        config = engine_config(args, model, default_size=480, frame_size=checked.source.size)
        _note_small_video(args, config, checked.source.size, name=name)
        with results.sequence(name) as folder:
            stats, _ = _segment_video(model, config, checked, args, folder, folder / "masks")
        frames, seconds = frames + stats.frames, seconds + stats.seconds
        print(f"{name}: {stats.frames} frames, objects {stats.object_ids}")
    print(
        f"Segmented {len(todo)} videos, {frames} frames in {seconds:.2f} s (I/O excluded): "
        f"{frames / max(seconds, 1e-9):.2f} FPS on {device}"
    )
    print(f"Results written to {results.root}")
    return 0


def _note_small_video(args: argparse.Namespace, config: Any, size: tuple[int, int], name: str = "video") -> None:
    from corrvos.utils import format_size

    wanted = 480 if args.size is None else args.size
    if wanted != -1 and config.internal_size is None and min(size) < wanted:
        print(f"{name} is {format_size(size)} (HxW), smaller than --size {wanted}: processed at its own size")


def _job(args: argparse.Namespace) -> dict[str, Any]:
    """What makes the results of ``--videos`` (compared by ``--skip-done``): checkpoint content, inputs, settings."""
    from corrvos.errors import CorrvosError
    from corrvos.inference.outputs import file_sha256
    from corrvos.weights import resolve_model_path

    try:
        model = Path(resolve_model_path(args.model))
    except CorrvosError:
        model = Path(args.model)  # reported when it is loaded
    settings = (
        *("mask_format", "resize_mask", "start", "end", "stride", "forward_only", "no_overlay", "alpha", "fps"),
        *("size", "upsample", *ENGINE_SETTINGS),
    )
    return {
        "command": "segment",
        "checkpoint_sha256": file_sha256(model) if model.is_file() else str(args.model),
        "videos": str(Path(args.videos).resolve()),
        "masks": str(Path(args.masks).resolve()),
        "palette_map": None if args.palette_map is None else file_sha256(args.palette_map),
        "settings": {name: getattr(args, name) for name in settings},
    }
