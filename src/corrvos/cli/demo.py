"""`corrvos demo`: the quick start on embedded synthetic data, end to end on CPU.

Generates a small synthetic DAVIS-layout dataset, predicts it with the copy-first-frame baseline, scores the
predictions with the official DAVIS 2017 semi-supervised protocol (``corrvos eval``) and prints the J&F table.
"""

from __future__ import annotations

import argparse

HELP = "run the quick-start demo on generated synthetic videos (CPU, seconds)"
DESCRIPTION = """\
Run the quick-start demo end to end on generated data:

  1. generate a synthetic DAVIS-layout dataset (textured backgrounds, camera motion, occlusions, distractors)
  2. predict the val split with the copy-first-frame baseline
  3. score the predictions with the DAVIS 2017 semi-supervised protocol and print the J&F table

Everything is written under --out (dataset in OUT/data, predictions and CSVs in OUT/baseline).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    parser.add_argument("--sequences", type=int, default=6, help="number of synthetic videos (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=20, help="frames per video (default: %(default)s)")
    parser.add_argument("--size", default="240x427", help="frame size HxW (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (default: %(default)s)")


def run(args: argparse.Namespace) -> int:

    from corrvos.cli.synth import parse_size
    from corrvos.data.synthetic import generate_dataset
    from corrvos.evaluation import evaluate_davis, format_tables
    from corrvos.inference.baseline import copy_first_frame
    from corrvos.utils import make_output_dir

    out = make_output_dir(args.out)
    data_root = generate_dataset(
        out / "data",
        sequences=args.sequences,
        frames=args.frames,
        size=parse_size(args.size),
        seed=args.seed,
        layout="davis",
    )
    print(f"[1/3] synthetic DAVIS-layout dataset: {data_root}")
    results = copy_first_frame(data_root, out / "baseline", split="val")
    print(f"[2/3] copy-first-frame baseline predictions: {results}")
    report = evaluate_davis(data_root, results, set_name="val", workers=args.workers)
    print("[3/3] J&F (DAVIS 2017 semi-supervised protocol) of the copy-first-frame baseline:")
    print(format_tables(report))
    return 0
