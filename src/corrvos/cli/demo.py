"""`corrvos demo`: the main job end to end on generated videos, on CPU: train, segment, score, draw, report.

The pipeline lives in :mod:`corrvos.demo`; ``--quick`` keeps the seconds-long check of the data, I/O and
evaluation (a copy-the-first-mask baseline, no network).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

HELP = "train STCN with and without correspondence learning on synthetic videos, score both, draw the figures"
DESCRIPTION = """\
Run the main job of corrvos end to end on generated data, on CPU, with no download:

  1. generate synthetic training and held-out evaluation videos (textured objects, camera motion, occlusions,
     objects that leave and come back, unannotated distractors that look like an annotated object)
  2. train the same small model twice with the same seed, data and steps (the CPU recipe: corrvos's ResNet-18
     half-width variant, configs/stcn_cpu.yaml): L_SEG only, and L_SEG + L_PCL + L_OCL (the paper's losses);
     by default both at once, one thread each
  3. segment the held-out videos (heldout000, ...) with both (`corrvos infer`), and write two floors that need
     no model: copy the first-frame mask, and the first-frame mask followed by empty masks
  4. score all four with the DAVIS 2017 semi-supervised protocol (`corrvos eval`), on all (object, frame) cells
     and on the visible cells (the object has a pixel in the ground truth; the headline, since an empty mask
     scores J = F = 1 on a hidden object), and print the J&F table
  5. draw the supplement's figures (loss curves, per-frame J&F, correspondence maps, object matches,
     side-by-side results) and write OUT/report.html (opens offline in any browser)

Takes under 10 minutes on 2 CPU cores with the defaults (STCN, 900 steps per run; docs/visualisation.md has the
measured time). What it can show: models that track the synthetic objects (their J&F on visible cells against
the copy-the-first-frame floor) and what each figure looks like. What it cannot: the paper's gain - one seed on a
few videos cannot separate the two losses unless the difference is large (benchmarks/ablation.py).

OUT must be new, empty, or an earlier demo folder (its outputs are replaced). Runs keep only their final
weights and TensorBoard logs (no resumable checkpoints).

--quick runs the old seconds-long check instead: data, a copy-the-first-mask baseline and its J&F (no network).

examples:
  corrvos demo                         # what `make demo` runs
  corrvos demo --steps 2000 --out demo_long
  corrvos demo --arch xmem --steps 360 # XMem: about 1.3 s per step with one thread
  corrvos demo --quick
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    from corrvos.families import NAMES

    parser.add_argument(
        "--arch", default=NAMES[0], choices=list(NAMES), help="model family to train (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=900, help="training steps per run (default: %(default)s)")
    parser.add_argument(
        "--sequences", type=int, default=None, help="training videos (default 24; --quick: videos in all, 6)"
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per training video (default 12; --quick: 20)")
    parser.add_argument("--eval-sequences", type=int, default=6, help="held-out videos (default: %(default)s)")
    parser.add_argument("--eval-frames", type=int, default=24, help="frames per held-out video (default: %(default)s)")
    parser.add_argument("--size", default=None, help="frame size HxW (default 80x96; --quick: 240x427)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of data and training (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="evaluation processes (default: %(default)s)")
    parser.add_argument(
        "--train-jobs",
        type=int,
        default=2,
        choices=[1, 2],
        help="2: train both models at once, in two processes of one thread each (fastest on 2 cores); 1: one after "
        "the other with torch's default threads and a progress bar (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long baseline check instead (no training)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="intra-op CPU threads of this process (training with --train-jobs 1, inference); --train-jobs 2 "
        "uses one per run (default: OMP_NUM_THREADS if set, else the usable cores minus the load of other "
        "processes, at least 1; logged at start)",
    )


def _quick(args: argparse.Namespace) -> int:
    from corrvos.cli.synth import parse_size
    from corrvos.data.synthetic import generate_dataset
    from corrvos.evaluation import evaluate_davis, format_tables
    from corrvos.inference.baseline import copy_first_frame
    from corrvos.utils import make_output_dir

    out = make_output_dir(args.out)
    data_root = generate_dataset(
        out / "data",
        sequences=args.sequences or 6,
        frames=args.frames or 20,
        size=parse_size(args.size or "240x427"),
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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from corrvos.errors import ConfigError

    for name in ("steps", "eval_sequences", "eval_frames", "workers"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.quick:
        return _quick(args)

    from corrvos.cpu_threads import configure_threads

    configure_threads(args.threads)

    from corrvos.cli.synth import parse_size
    from corrvos.demo.figures import row_label
    from corrvos.demo.pipeline import DemoSettings, run_demo
    from corrvos.demo.report import HONEST_NOTE, comparison_sentence

    settings = DemoSettings(
        out=Path(args.out),
        arch=args.arch,
        steps=args.steps,
        train_sequences=args.sequences or 24,
        train_frames=args.frames or 12,
        eval_sequences=args.eval_sequences,
        eval_frames=args.eval_frames,
        size=parse_size(args.size or "80x96"),
        seed=args.seed,
        workers=args.workers,
        train_jobs=args.train_jobs,
        progress=not args.no_progress,
    )
    if settings.train_sequences < 2:
        raise ConfigError("--sequences must be >= 2 (one video is held out)")
    result = run_demo(settings)
    print()
    print(_summary_table(settings.arch, {**result.scores, **result.floors}, row_label))
    print()
    print(comparison_sentence(result))
    print()
    print(HONEST_NOTE.format(steps=settings.steps))
    print(f"\nReport: {result.report} (open it in a browser); took {result.seconds['total'] / 60:.1f} min")
    return 0


def _summary_table(arch: str, rows: dict[str, Any], row_label: Callable[[str, str], str]) -> str:
    """J&F on visible cells (the headline) and on all cells, J and F, per model and floor."""
    columns = ("J&F visible", "J vis", "F vis", "J&F all", "J all", "F all")
    lines = [f"{'':<34}" + "".join(f"{c:>12}" for c in columns)]
    for name, scores in rows.items():
        v, a = scores.visible, scores.all_cells
        values = (v.get("JF"), v.get("J"), v.get("F"), a.get("JF"), a.get("J"), a.get("F"))
        cells = "".join(f"{'n/a':>12}" if x is None else f"{x:>12.3f}" for x in values)
        lines.append(f"{row_label(arch, name):<34}" + cells)
    return "\n".join(lines)
