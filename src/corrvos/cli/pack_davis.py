"""`corrvos pack-davis`: zip DAVIS predictions as the evaluation server's submission (<sequence>/<frame>.png)."""

from __future__ import annotations

import argparse

HELP = "zip DAVIS test-dev / test-challenge predictions for the evaluation server (checked for completeness)"
DESCRIPTION = """\
Write the DAVIS 2017 submission zip: the sequence folders at the root of the zip (no enclosing folder),
<sequence>/<frame>.png for every frame of JPEGImages/480p/<sequence> of every sequence of
ImageSets/2017/<set>.txt, as the CodaLab server expects.

Checked before anything is written, all problems listed at once (exit status 2, no zip): a missing sequence
folder or frame, an unreadable or RGB PNG, a PNG whose size differs from its frame, an object id above the
largest id of the sequence's first-frame annotation. Extra folders and PNGs are left out with a warning.
The zip is written atomically.

example:
  corrvos infer --model stcn.pth --davis-root data/DAVIS/2017/test-dev --set test-dev --mem-every 3 --out out/td
  corrvos pack-davis --results out/td --davis-root data/DAVIS/2017/test-dev --set test-dev --out out/td.zip
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="folder of <sequence>/<frame>.png predictions")
    parser.add_argument(
        "--davis-root", required=True, help="DAVIS folder of the split (ImageSets/, JPEGImages/480p, Annotations/480p)"
    )
    parser.add_argument(
        "--set",
        dest="set_name",
        default="test-dev",
        choices=["test-dev", "test-challenge", "val", "train"],
        help="split to pack (default: test-dev)",
    )
    parser.add_argument("--year", default="2017", choices=["2016", "2017"], help="ImageSets year (default: 2017)")
    parser.add_argument("--out", required=True, help="zip file to write, e.g. submission.zip")


def run(args: argparse.Namespace) -> int:
    from corrvos.evaluation import pack_davis

    count = pack_davis(args.results, args.out, davis_root=args.davis_root, set_name=args.set_name, year=args.year)
    print(f"wrote {count} PNGs to {args.out}")
    return 0
