"""`corrvos pack-youtube`: zip YouTube-VOS predictions as the submission layout Annotations/<video>/<frame>.png."""

from __future__ import annotations

import argparse

HELP = "zip YouTube-VOS predictions for the evaluation server (top-level Annotations/)"
DESCRIPTION = """\
Write the YouTube-VOS submission zip: Annotations/<video>/<frame>.png, one palette PNG per frame.

With --youtube-root, every frame listed in <root>/<split>/JPEGImages/<video> must have a prediction of the same
size; only those frames are packed (extra frames from all-frames inference are left out). Frames before a
video's first reference mask (<split>/Annotations/<video>) that have no prediction, as `corrvos infer` and the
official scripts leave them, are packed as background. All missing or wrongly sized PNGs are reported at once,
with exit status 2 and no zip. Without --youtube-root, every <video>/*.png of the results folder is packed as is.

example:
  corrvos pack-youtube --results output/yt19-valid --out output/yt19-valid.zip --youtube-root data/YouTube2019
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        required=True,
        help="folder of <video>/<frame>.png predictions (or holding them under Annotations/)",
    )
    parser.add_argument("--out", required=True, help="zip file to write")
    parser.add_argument("--youtube-root", default=None, help="YouTube-VOS root, to check every frame is present")
    parser.add_argument("--split", default="valid", choices=["valid", "test"], help="split of --youtube-root")


def run(args: argparse.Namespace) -> int:
    from corrvos.evaluation import pack_youtube

    count = pack_youtube(args.results, args.out, youtube_root=args.youtube_root, split=args.split)
    print(f"wrote {count} PNGs to {args.out}")
    return 0
