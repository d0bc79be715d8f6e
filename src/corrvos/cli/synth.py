"""`corrvos synth`: generate a synthetic VOS dataset in the DAVIS or YouTube-VOS layout."""

from __future__ import annotations

import argparse
import re

from corrvos.errors import ConfigError

__all__ = ["DESCRIPTION", "HELP", "MIN_FRAMES", "add_arguments", "check_frames", "parse_size", "run"]

HELP = "generate a synthetic VOS dataset (DAVIS or YouTube-VOS layout), deterministic per seed"
DESCRIPTION = """\
Generate a complete synthetic video object segmentation dataset, the embedded default data of the demo and
the tests. Each video has a textured background seen by a panning and zooming camera, 2-4 annotated textured
objects (mid-size blobs, thin bars, tiny dots) moving on smooth trajectories with occlusions, often an object
that leaves the frame and comes back, and 1-2 unannotated distractors that share the colour and texture family
of an annotated object. In the YouTube-VOS layout, some objects first appear on later frames.

Layouts:
  davis    JPEGImages/480p/<seq>/00000.jpg, Annotations/480p/<seq>/00000.png (every frame, DAVIS palette),
           ImageSets/2017/{train,val}.txt and ImageSets/2016/{train,val}.txt; every object is in frame 0,
           ids 1..K
  youtube  train/{JPEGImages,Annotations,meta.json} (frames 0, 5, 10, ..., all annotated),
           valid/{JPEGImages,Annotations,meta.json} (frames 0, 5, 10, ...; a mask only where an object
           first appears) and valid_all_frames/JPEGImages (every frame)
  unlabeled synth000/00000.jpg, ... frame folders only (no masks, no splits): unlabeled videos for the
           label-free losses (a `{kind: unlabeled, root: OUT}` training source)

The last round(N * val-fraction) videos (at least one) form the val split, the others the train split.
Videos are named synth000, synth001, ... (--prefix changes "synth", e.g. to keep held-out videos apart).
The same arguments always give byte-identical files. OUT must be empty, new, or an earlier output of this
command (it is then regenerated).

Example:
  corrvos synth --out data/synth --sequences 8 --frames 24 --size 240x427 --seed 0
"""


def parse_size(text: str) -> tuple[int, int]:
    """Parse "HxW" (e.g. "480x854") into (H, W).

    Raises:
        ConfigError: the text is not two positive integers separated by "x".
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if match is None or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise ConfigError(f"--size must be HxW with positive integers, e.g. 480x854; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created; must be empty, new, or an earlier output of corrvos synth)",
    )
    parser.add_argument("--sequences", type=int, default=4, help="number of videos (default: %(default)s)")
    parser.add_argument(
        "--frames",
        type=int,
        default=8,
        help="frames per video, at least 3 (youtube: 11); for --layout youtube, the length of the all-frames video, "
        "of which every 5th frame is sampled (default: %(default)s)",
    )
    parser.add_argument("--size", default="96x160", help="frame size HxW, each side >= 16 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default: %(default)s)")
    parser.add_argument(
        "--layout",
        choices=("davis", "youtube", "unlabeled"),
        default="davis",
        help="dataset layout (default: %(default)s); unlabeled: <out>/synthNNN/<frame>.jpg frame folders only",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.5,
        help="fraction of the videos in the val split, in (0, 1) (default: %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default="synth",
        help="video names are PREFIX000, PREFIX001, ...: a letter, then letters, digits, '_' or '-' (default: "
        "%(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


#: the fewest --frames per layout whose videos `corrvos eval` and `corrvos train` accept: 3 annotated frames (eval
#: scores frames 1..T-2, training clips have 3 frames); YouTube-VOS annotates every 5th frame (0, 5, 10)
MIN_FRAMES = {"davis": 3, "youtube": 11, "unlabeled": 3}


def check_frames(frames: int, layout: str) -> None:
    """ConfigError when ``--frames`` is too short for ``corrvos eval`` / ``train`` to use the dataset."""
    need = MIN_FRAMES[layout]
    if frames < need:
        what = "3 annotated frames per video (every 5th frame is annotated)" if layout == "youtube" else "3 frames"
        raise ConfigError(
            f"--frames {frames}: the {layout} layout needs at least {need} frames per video, or corrvos eval and "
            f"train refuse the dataset (they need {what})"
        )


def run(args: argparse.Namespace) -> int:
    import time

    from corrvos.data.synthetic import generate_dataset

    check_frames(args.frames, args.layout)
    size = parse_size(args.size)
    start = time.perf_counter()
    out = generate_dataset(
        args.out,
        sequences=args.sequences,
        frames=args.frames,
        size=size,
        seed=args.seed,
        layout=args.layout,
        val_fraction=args.val_fraction,
        progress=not args.no_progress,
        prefix=args.prefix,
    )
    print(
        f"wrote a synthetic {args.layout} dataset ({args.sequences} videos x {args.frames} frames, "
        f"{size[0]}x{size[1]}, seed {args.seed}) to {out} in {time.perf_counter() - start:.1f} s"
    )
    return 0
