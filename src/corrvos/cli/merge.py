"""`corrvos merge`: average the saved probabilities of several runs and write the merged palette PNGs."""

from __future__ import annotations

import argparse

HELP = "merge the --save-scores of several runs (ensemble / TTA): mean probabilities -> palette PNGs"
DESCRIPTION = """\
Average per frame the probabilities that `corrvos infer --save-scores DIR` wrote (DIR/<sequence>/scores.npz,
uint8-quantised, see corrvos.inference.scores) and write the argmax as palette PNGs with the original object
ids, in DAVIS layout: <out>/<sequence>/<frame>.png (score with `corrvos eval`, zip with `corrvos pack-davis` or
`corrvos pack-youtube`). Objects are matched by id.

Every folder is checked first (same sequences; per sequence the same frame ids, frame size and object ids); all
disagreements are reported at once with exit status 2 and nothing written. Merging one folder reproduces the
PNGs of the run that wrote it. --out follows `corrvos infer`'s rules (--skip-done, --overwrite).

example:
  corrvos infer --model a.pth --davis-root data/DAVIS/2017/trainval --out out/a --save-scores out/a-scores
  corrvos infer --model b.pth --davis-root data/DAVIS/2017/trainval --out out/b --save-scores out/b-scores --flip
  corrvos merge --scores out/a-scores out/b-scores --out out/ab
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", required=True, nargs="+", metavar="DIR", help="score folders written by --save-scores"
    )
    parser.add_argument("--out", required=True, help="output folder: new or empty, or one this command wrote")
    parser.add_argument("--sequences", nargs="+", default=None, metavar="NAME", help="only these sequences")
    done = parser.add_mutually_exclusive_group()
    done.add_argument("--skip-done", action="store_true", help="continue an interrupted merge into the same --out")
    done.add_argument("--overwrite", action="store_true", help="delete the results an earlier merge wrote first")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from corrvos.data.io import write_label
    from corrvos.errors import ConfigError
    from corrvos.evaluation.parallel import raise_problems
    from corrvos.inference.merge import check_score_folders, merge_sequence
    from corrvos.inference.outputs import ResultsFolder
    from corrvos.inference.scores import SCORES_NAME
    from corrvos.progress import progress_bar

    folders = [Path(d) for d in args.scores]
    out = Path(args.out)
    for folder in folders:
        if folder.resolve() == out.resolve():
            raise ConfigError(f"--out {out} is one of the --scores folders")
    names, problems = check_score_folders(folders)
    raise_problems(problems, folders[0])
    if args.sequences:
        unknown = [s for s in args.sequences if s not in names]
        if unknown:
            raise ConfigError(f"--sequences: {unknown} not in {folders[0]} (it has {len(names)} sequences)")
        names = [s for s in names if s in args.sequences]
    job = {"command": "merge", "scores": [str(f.resolve()) for f in folders]}
    results = ResultsFolder(out, job)
    todo = results.plan(names, skip_done=args.skip_done, overwrite=args.overwrite)
    results.begin()
    frames = 0
    for name in progress_bar(todo, desc="merge", unit="seq"):
        merged = merge_sequence([f / name / SCORES_NAME for f in folders])
        with results.sequence(name) as folder:
            for fid, label in zip(merged.frame_ids, merged.labels, strict=True):
                write_label(folder / f"{fid}.png", label)
        frames += len(merged.frame_ids)
    print(f"Merged {len(folders)} run(s): {len(todo)} sequences, {frames} frames written to {results.root}")
    return 0
