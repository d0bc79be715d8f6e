"""`corrvos eval`: J&F of DAVIS-layout predictions with the official DAVIS 2017 semi-supervised protocol.

Writes ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` into the results folder (the
official names, columns and formatting) plus corrvos' full-precision CSVs, and prints the two tables.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "J&F of DAVIS-layout predictions (official DAVIS 2017 protocol, same CSVs)"
DESCRIPTION = """\
Score predictions <results>/<sequence>/<frame>.png against a DAVIS ground truth with the official DAVIS 2017
semi-supervised protocol (davisvideochallenge/davis2017-evaluation): frames 1..T-2, objects 1..max(first GT
frame), J and F (boundary tolerance ceil(0.008 * diagonal)), Mean / Recall / Decay, means over objects.

Writes global_results-<set>.csv and per-sequence_results-<set>.csv (identical to the official files) and
corrvos_*-full-<set>.csv (full precision, per object and per frame) into the results folder, or --output.
Unlike the official script: any bad input (missing or unreadable PNG, size mismatch, predicted id above the
number of objects) is reported for all sequences at once with exit status 2 and no CSV; existing CSVs are
recomputed unless --reuse is given; Decay stays correct past 255 evaluated frames.

With --youtube-gt, objects are scored on the annotated frames after their first appearance, and J, F and
J&F means over objects are written to corrvos_youtube_*.csv (approximate; use the server for final numbers).

With --mose-root or --lvos-root (and --set), each object of the split's videos is scored DAVIS-style on every
annotated frame after its reference frame (LVOS: up to the end of its meta frame_range); J/F Mean, Recall,
Decay per object and their means go to corrvos_<mose|lvos>_*-<set>.csv (approximate: MOSE valid and LVOS test
are scored by their servers; the LVOS toolkit also scores the reference frame). MOSE valid has no ground truth.

example:
  corrvos eval --davis-root data/DAVIS/2017/trainval --set val --results output/davis17-val --workers 4
  corrvos eval --lvos-root data/LVOS --set valid --results output/lvos-val
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--davis-root", help="DAVIS folder with ImageSets/ and Annotations/480p/")
    parser.add_argument(
        "--youtube-gt",
        default=None,
        help="instead of --davis-root: a folder of <video>/<frame>.png YouTube-VOS-layout ground "
        "truth; gives approximate local J/F per object (the server's protocol is not public)",
    )
    parser.add_argument(
        "--mose-root", default=None, help="instead of --davis-root: a MOSE folder (<set>/JPEGImages, ...)"
    )
    parser.add_argument(
        "--lvos-root", default=None, help="instead of --davis-root: an LVOS v1 folder (<set>/<set>_meta.json, ...)"
    )
    parser.add_argument(
        "--set",
        dest="set_name",
        default=None,
        help="subset to score: DAVIS train/val/test-dev/test-challenge (default val); MOSE train (default); "
        "LVOS train/valid (default valid)",
    )
    parser.add_argument(
        "--year",
        default="2017",
        choices=["2016", "2017"],
        help="2017: multi-object (default); 2016: ImageSets/2016, GT and predictions binarised",
    )
    parser.add_argument("--results", required=True, help="folder of predicted sequence folders")
    parser.add_argument("--output", default=None, help="folder for the CSVs (default: the results folder)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes scoring sequences in parallel (default: min(4, CPUs))",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="if both official CSVs already exist in the output folder, print them instead of "
        "recomputing (the official script always does this)",
    )
    parser.add_argument(
        "--compat-uint8-decay",
        action="store_true",
        help="reproduce the official uint8 Decay bins (NaN or wrong past 255 evaluated frames)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no per-object table")


def _print_tables(
    global_header: list[str],
    global_row: list[float],
    per_object: list[tuple[str, float, float]],
    set_name: str,
    quiet: bool,
) -> None:
    from corrvos.evaluation.tables import format_text_table

    print(f"--------------------------- Global results for {set_name} ---------------------------")
    print(format_text_table(global_header, [global_row]))
    if not quiet:
        print(f"\n---------- Per sequence results for {set_name} ----------")
        print(format_text_table(["Sequence", "J-Mean", "F-Mean"], per_object))


def _reuse(out_dir: Path, set_name: str, quiet: bool) -> bool:
    import csv

    from corrvos.evaluation import official_csv_names

    g_path, s_path = (out_dir / name for name in official_csv_names(set_name))
    if not (g_path.is_file() and s_path.is_file()):
        return False
    print(f"Using precomputed results from {g_path} and {s_path} (--reuse)")
    with open(g_path, newline="") as f:
        header, row = list(csv.reader(f))[:2]
    with open(s_path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    nan = float("nan")
    _print_tables(
        header,
        [float(v) if v else nan for v in row],
        [(r[0], float(r[1] or nan), float(r[2] or nan)) for r in rows],
        set_name,
        quiet,
    )
    return True


def _run_youtube(args: argparse.Namespace) -> int:
    from corrvos.evaluation import evaluate_youtube
    from corrvos.evaluation.tables import format_text_table

    result = evaluate_youtube(
        args.youtube_gt, args.results, workers=args.workers, output_dir=args.output, progress=not args.quiet
    )
    print("---------- YouTube-VOS-layout results (approximate, local protocol) ----------")
    print(format_text_table(list(result.global_scores), [list(result.global_scores.values())]))
    if not args.quiet:
        rows = [
            (f"{v.name}_{k}", float(j), float(f))
            for v in result.videos
            for k, j, f in zip(v.objects, v.j, v.f, strict=True)
        ]
        print()
        print(format_text_table(["Object", "J-Mean", "F-Mean"], rows))
    print(f"results saved in {result.csv_paths['global']} and {result.csv_paths['per_object']}")
    return 0


def _run_benchmark(args: argparse.Namespace) -> int:
    from corrvos.evaluation.benchmark import evaluate_sequences
    from corrvos.evaluation.tables import format_text_table

    if args.mose_root is not None:
        from corrvos.data.mose import MoseDataset

        benchmark, dataset = "mose", MoseDataset(args.mose_root, split=args.set_name or "train")
    else:
        from corrvos.data.lvos import LvosDataset

        benchmark, dataset = "lvos", LvosDataset(args.lvos_root, split=args.set_name or "valid")
    result = evaluate_sequences(
        dataset,
        args.results,
        benchmark=benchmark,
        workers=args.workers,
        output_dir=args.output,
        progress=not args.quiet,
    )
    print(f"---------- {benchmark.upper()} {result.split} results (approximate, local protocol) ----------")
    print(format_text_table(list(result.global_scores), [list(result.global_scores.values())]))
    if not args.quiet:
        rows = [
            (n, float(j[0]), float(f[0]))
            for n, j, f in zip(result.object_names, result.j_stats, result.f_stats, strict=True)
        ]
        print()
        print(format_text_table(["Object", "J-Mean", "F-Mean"], rows))
    print(f"results saved in {result.csv_paths['global']} and {result.csv_paths['per_object']}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Score the results; a results folder the CSVs cannot be written into (read-only) points to ``--output``."""
    from corrvos.errors import DataError

    results = Path(args.results)
    problem = "cannot write the score CSVs into the results folder ({}): give a writable folder with --output"
    writes_into_results = args.output is None and not args.reuse  # --reuse may only read the CSVs there
    if writes_into_results and results.is_dir() and not os.access(results, os.W_OK):  # before the slow scoring
        raise DataError(results, problem.format("no write permission"))
    try:
        return _run(args)
    except PermissionError as exc:
        written = None if exc.filename is None else Path(exc.filename).resolve().parent
        if args.output is not None or written is None or results.resolve() not in (written, *written.parents):
            raise
        raise DataError(results, problem.format(exc.strerror or exc)) from exc


def _run(args: argparse.Namespace) -> int:
    import time

    from corrvos.errors import ConfigError
    from corrvos.evaluation import evaluate_davis, format_tables

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    start = time.time()
    roots = [args.davis_root, args.youtube_gt, args.mose_root, args.lvos_root]
    if sum(r is not None for r in roots) != 1:
        raise ConfigError("give exactly one of --davis-root, --youtube-gt, --mose-root and --lvos-root")
    if args.youtube_gt is not None:
        return _run_youtube(args)
    if args.mose_root is not None or args.lvos_root is not None:
        return _run_benchmark(args)
    args.set_name = args.set_name or "val"
    out_dir = Path(args.output) if args.output else Path(args.results)
    if args.reuse and _reuse(out_dir, args.set_name, args.quiet):
        return 0
    result = evaluate_davis(
        args.davis_root,
        args.results,
        set_name=args.set_name,
        year=args.year,
        workers=args.workers,
        uint8_decay=args.compat_uint8_decay,
        output_dir=out_dir,
        progress=not args.quiet,
    )
    for key in ("global", "per_sequence"):
        print(f"{'Global' if key == 'global' else 'Per-sequence'} results saved in {result.csv_paths[key]}")
    print(format_tables(result, per_object=not args.quiet))
    print(
        f"\nTotal time: {time.time() - start:.1f} s ({len(result.sequences)} sequences, "
        f"{len(result.object_names)} objects, {args.workers} worker(s))"
    )
    return 0
