"""`corrvos segment`: segment a user's video (mp4 or frame folder) from one annotated frame.

Writes ``<out>/masks/<frame>.png`` (palette PNGs with the mask's object ids) and ``<out>/overlay.mp4`` (the masks
blended over the frames). Frames are streamed: the video is never held in memory.
"""

from __future__ import annotations

import argparse

from corrvos.cli.engine import add_engine_arguments

HELP = "segment your own video (mp4 or frame folder) from a first-frame mask; writes masks + overlay.mp4"
DESCRIPTION = """\
Propagate the objects of one annotated frame through a video with a trained checkpoint.

The mask is a label-map PNG of the annotated frame (palette or 8-bit grayscale; 0 = background, 1..254 = object
ids, 255 = void / ignored, as in DAVIS), the same size as the video frames; draw it in any editor that writes
indexed PNGs, or export it from SAM / a detector. A mask saved inside the frame folder is not read as a frame.
Frames before --mask-frame are written as background.

Outputs:
  <out>/masks/<frame>.png   palette PNGs with your object ids (frame names: the folder's file names, or 00000,
                            00001, ... for a video file)
  <out>/overlay.mp4         masks blended over the frames (skip with --no-overlay)

High-resolution videos are processed with their shorter side resized to --size (default 480, as the models were
evaluated); a smaller video keeps its own size (enlarging it costs time and gains little) unless --upsample.
Memory grows with the number of memory frames, so raise --mem-every for long videos.

The masks are written to a temporary folder and renamed to <out>/masks when the video is done, so a stopped run
never leaves a partial result; an --out holding earlier results is refused unless --overwrite.

examples:
  corrvos segment --model stcn.pth --video clip.mp4 --mask clip_00000.png --out out/clip
  corrvos segment --model stcn.pth --video frames/ --mask frames_mask.png --out out/frames --device cuda --amp fp16
  corrvos segment --model XMem.pth --video long.mp4 --mask long_00000.png --out out/long --mem-every 10
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint: official STCN / VOS_Correspondence / XMem file or a corrvos checkpoint",
    )
    parser.add_argument("--video", required=True, help="video file (.mp4, .avi, .mov, .mkv, ...) or frame folder")
    parser.add_argument("--mask", required=True, help="label-map PNG of the annotated frame (same size as the frames)")
    parser.add_argument("--mask-frame", type=int, default=0, help="index of the annotated frame (default 0)")
    parser.add_argument(
        "--resize-mask",
        action="store_true",
        help="accept a mask of another size and resize it to the frame size (nearest neighbour)",
    )
    parser.add_argument("--out", required=True, help="output folder (gets masks/ and overlay.mp4)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the masks/ and overlay.mp4 of an earlier run in --out"
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
        "--fps", type=float, default=None, help="overlay frame rate (default: the video's, or 24 for a frame folder)"
    )


def _read_first_mask(args: argparse.Namespace, frame_size: tuple[int, int]):
    import cv2
    import numpy as np

    from corrvos.data.io import VOID_LABEL, read_label
    from corrvos.errors import DataError

    label = read_label(args.mask)
    if label.shape != frame_size:
        if not args.resize_mask:
            raise DataError(
                args.mask,
                f"mask is {label.shape[0]}x{label.shape[1]} (HxW) but the video frames are "
                f"{frame_size[0]}x{frame_size[1]}: draw the mask on a frame of the video, "
                "or pass --resize-mask to resize it (nearest neighbour)",
            )
        label = cv2.resize(label, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
    if not np.any((label != 0) & (label != VOID_LABEL)):
        raise DataError(args.mask, "mask has no object (every pixel is 0 = background or 255 = void)")
    return label


def _prepare_out(out, overwrite: bool):
    """The output folder, checked: earlier masks/ or overlay.mp4 are refused, or deleted with --overwrite."""
    import shutil
    from pathlib import Path

    from corrvos.errors import DataError
    from corrvos.utils import make_output_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder: choose another --out")
    earlier = [p for p in (out / "masks", out / "overlay.mp4") if p.exists()]
    if earlier and not overwrite:
        names = " and ".join(p.name for p in earlier)
        raise DataError(out, f"holds the {names} of an earlier run: use a new --out, or --overwrite to replace them")
    for p in earlier:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    partial = out / ".partial-masks"
    if partial.exists():
        shutil.rmtree(partial)
    make_output_dir(partial)
    return out, partial


def run(args: argparse.Namespace) -> int:
    import contextlib
    import shutil
    import time

    import numpy as np
    import torch
    from tqdm import tqdm

    from corrvos.cli.engine import check_engine_arguments, engine_config, load_inference_model
    from corrvos.data.io import VOID_LABEL, write_label
    from corrvos.errors import ConfigError
    from corrvos.inference import InferenceCore
    from corrvos.inference.video import open_frames, to_float_image
    from corrvos.utils import format_size
    from corrvos.visualize.overlay import VideoWriter, overlay

    check_engine_arguments(args)
    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"--alpha must lie in [0, 1], got {args.alpha}")
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    source = open_frames(args.video, exclude=(args.mask,))
    if not 0 <= args.mask_frame < len(source):
        raise ConfigError(f"--mask-frame {args.mask_frame} is outside the video's {len(source)} frames")
    first_mask = _read_first_mask(args, source.size)  # fail before the (slow) model load
    model, device = load_inference_model(args)
    config = engine_config(args, model, default_size=480, frame_size=source.size)
    out, partial = _prepare_out(args.out, args.overwrite)  # nothing is written before every check passed
    wanted = 480 if args.size is None else args.size
    if wanted != -1 and config.internal_size is None and min(source.size) < wanted:
        print(f"video is {format_size(source.size)} (HxW), smaller than --size {wanted}: processed at its own size")
    core = InferenceCore(model, config, video_length=len(source))
    objects = sorted(int(k) for k in np.unique(first_mask) if k not in (0, VOID_LABEL))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    writer = (
        contextlib.nullcontext() if args.no_overlay else VideoWriter(out / "overlay.mp4", fps=args.fps or source.fps)
    )
    frames, seconds = 0, 0.0
    n = len(source)
    try:
        with writer as video:
            for t, (name, rgb) in enumerate(tqdm(source, total=n, desc=source.path.name, unit="frame")):
                if t < args.mask_frame:
                    label = np.zeros(rgb.shape[:2], np.uint8)
                else:
                    mask = torch.from_numpy(first_mask.astype(np.int64)) if t == args.mask_frame else None
                    image = to_float_image(rgb)  # [3, H, W]
                    sync()
                    start = time.perf_counter()
                    prob = core.step(image, mask, objects if mask is not None else None, end=t == n - 1)
                    label = core.prob_to_mask(prob).to("cpu", torch.uint8).numpy()
                    sync()
                    seconds += time.perf_counter() - start
                    frames += 1
                write_label(partial / f"{name}.png", label)
                if video is not None:
                    video.write(overlay(rgb, label, alpha=args.alpha))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out / "masks")
    print(
        f"Segmented {frames} frames ({format_size(source.size)}, HxW), objects {core.object_ids}, in {seconds:.2f} s "
        f"(I/O excluded): {frames / max(seconds, 1e-9):.2f} FPS on {device}"
    )
    codec = "" if args.no_overlay else f", overlay to {out / 'overlay.mp4'} ({video.codec})"
    print(f"Masks written to {out / 'masks'}{codec}")
    return 0
