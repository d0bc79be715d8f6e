"""J&F evaluation speed: corrvos (single- and multi-process) against the official DAVIS 2017 toolkit.

Generates a DAVIS-layout set (default 20 sequences x 12 frames at 480x854, 1-4 objects each: moving ellipses)
with predictions = ground truth perturbed (shifted, eroded or dilated, objects dropped in some frames, speckle
noise), then times

- ``corrvos.evaluation.evaluate_davis`` with 1 process and with ``--workers`` processes,
- the official ``evaluation_method.py --task semi-supervised`` when it has been exported to
  ``.ref/davis2017-evaluation`` (never committed; its own "Total time" is used, which excludes its imports),

each on a fresh copy of the predictions, checks that the two official CSVs are byte-identical, and prints a
table (frames/s = evaluated frames per second) and writes JSON.

Run:  python benchmarks/eval_speed.py [--sequences 20 --frames 12 --workers 2 --out benchmarks/results/eval_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from corrvos.data.io import write_label
from corrvos.evaluation import evaluate_davis

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO / ".ref" / "davis2017-evaluation"


def generate(root: Path, *, sequences: int, frames: int, size: tuple[int, int], seed: int) -> tuple[Path, Path, int]:
    """Write GT, empty JPEG placeholders (the official code lists them) and perturbed predictions.

    Returns (davis_root, results_dir, number of evaluated frames).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    davis, res = root / "DAVIS", root / "res"
    names = []
    for s in range(sequences):
        name = f"seq{s:03d}"
        names.append(name)
        n_obj = int(rng.integers(1, 5))
        objs = [
            dict(
                c=rng.uniform([0.2 * h, 0.2 * w], [0.8 * h, 0.8 * w]),
                v=rng.uniform(-6, 6, 2),
                ax=rng.uniform(0.05, 0.2, 2) * (h, w),
                ang=rng.uniform(0, 180),
            )
            for _ in range(n_obj)
        ]
        (davis / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            gt = np.zeros((h, w), np.uint8)
            pred = np.zeros((h, w), np.uint8)
            for k, o in enumerate(objs, start=1):
                cy, cx = o["c"] + t * o["v"]
                cv2.ellipse(gt, (int(cx), int(cy)), (int(o["ax"][1]), int(o["ax"][0])), o["ang"] + 3 * t, 0, 360, k, -1)
                if rng.random() < 0.1:
                    continue  # dropped in this frame
                m = (gt == k).astype(np.uint8)
                dy, dx = rng.integers(-6, 7, 2)
                m = np.roll(m, (int(dy), int(dx)), axis=(0, 1))
                op = rng.integers(0, 3)
                if op:
                    kern = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
                    m = (cv2.erode if op == 1 else cv2.dilate)(m, kern)
                pred[m > 0] = k
            noise = rng.random((h, w)) < 0.0005
            pred[noise] = rng.integers(0, n_obj + 1, int(noise.sum()))
            write_label(davis / "Annotations" / "480p" / name / f"{t:05d}.png", gt)
            write_label(res / name / f"{t:05d}.png", pred)
            (davis / "JPEGImages" / "480p" / name / f"{t:05d}.jpg").write_bytes(b"")
    (davis / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return davis, res, sequences * (frames - 2)


def run_ours(davis: Path, res: Path, copy: Path, workers: int) -> tuple[float, object]:
    shutil.copytree(res, copy)
    start = time.perf_counter()
    result = evaluate_davis(davis, copy, workers=workers, progress=False)
    return time.perf_counter() - start, result


def run_official(davis: Path, res: Path, copy: Path) -> float | None:
    shutil.copytree(res, copy)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "evaluation_method.py",
            "--task",
            "semi-supervised",
            "--set",
            "val",
            "--davis_path",
            str(davis),
            "--results_path",
            str(copy),
        ],
        cwd=OFFICIAL,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not (copy / "global_results-val.csv").is_file():
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit("the official toolkit failed")
    match = re.search(r"Total time:([0-9.eE+-]+)", proc.stdout)
    return float(match.group(1)) if match else wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--frames", type=int, default=12, help="frames per sequence (T; T-2 are scored)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval_speed.json"))
    parser.add_argument("--workdir", default=None, help="where to generate the data (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="corrvos_eval_speed_"))
    try:
        t0 = time.perf_counter()
        davis, res, n_frames = generate(
            work / "data", sequences=args.sequences, frames=args.frames, size=(args.height, args.width), seed=args.seed
        )
        print(
            f"generated {args.sequences} sequences x {args.frames} frames at {args.height}x{args.width} "
            f"({n_frames} evaluated frames) in {time.perf_counter() - t0:.1f} s"
        )
        rows = []
        t1, r1 = run_ours(davis, res, work / "ours1", 1)
        rows.append(("corrvos, 1 process", t1))
        tn, rn = run_ours(davis, res, work / "oursN", args.workers)
        rows.append((f"corrvos, {args.workers} processes", tn))
        same_ours = np.array_equal(r1.j_stats, rn.j_stats) and np.array_equal(r1.f_stats, rn.f_stats)
        n_objects = len(r1.object_names)
        official_time, identical = None, None
        if args.skip_official or not (OFFICIAL / "evaluation_method.py").is_file():
            print(
                f"official toolkit not run ({'--skip-official' if args.skip_official else f'{OFFICIAL} absent'}); "
                "export davisvideochallenge/davis2017-evaluation there to compare"
            )
        else:
            official_time = run_official(davis, res, work / "official")
            identical = all(
                (work / "official" / f).read_bytes()
                == (work / "ours1" / f).read_bytes()
                == (work / "oursN" / f).read_bytes()
                for f in ("global_results-val.csv", "per-sequence_results-val.csv")
            )
            rows.insert(0, ("official davis2017-evaluation", official_time))
        print(f"\n{'evaluator':<32}{'seconds':>9}{'frames/s':>10}{'speed-up':>10}")
        table = []
        for label, secs in rows:
            ratio = official_time / secs if official_time else float("nan")
            print(f"{label:<32}{secs:>9.2f}{n_frames / secs:>10.1f}{ratio:>9.1f}x")
            table.append(
                {
                    "evaluator": label,
                    "seconds": secs,
                    "frames_per_second": n_frames / secs,
                    "speedup_vs_official": None if official_time is None else ratio,
                }
            )
        print(
            f"\nJ&F-Mean {r1.global_scores['J&F-Mean']:.3f} over {n_objects} objects; corrvos 1 vs "
            f"{args.workers} processes identical: {same_ours}; CSVs byte-identical to the official: {identical}"
        )
        report = {
            "sequences": args.sequences,
            "frames_per_sequence": args.frames,
            "size": [args.height, args.width],
            "evaluated_frames": n_frames,
            "objects": n_objects,
            "workers": args.workers,
            "seed": args.seed,
            "results": table,
            "identical_to_official": identical,
            "single_vs_multi_identical": same_ours,
            "global": r1.global_scores,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
        if identical is False or not same_ours:
            raise SystemExit("results differ")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
