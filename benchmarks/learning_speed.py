"""What makes corrvos's models learn per CPU-second? Held-out J&F against training wall time, one factor at a time.

Every run trains on the ablation's synthetic training set (24 videos of 12 frames at 80x96, generator seed 0) and,
while it trains, segments two held-out *stress* sets (``benchmarks/ablation_data.py``: every video has a look-alike
distractor crossing an annotated object) with the model in memory (:func:`corrvos.inference.split.segment_split`,
at the frames' own size), scored with the DAVIS protocol:

- ``like``: 8 videos of 20 frames at 80x96 (generator seed 1), like the training videos;
- ``large``: 8 videos of 20 frames at 120x160 (generator seed 5): a frame size the models were not trained at.

Reported at every scoring point: J&F over the cells where the object is visible (``visible``, as ablation.py), J&F
over all cells (``all``), and the step and training seconds. Training seconds count from the start of
``Trainer.run`` (model build and data set-up included) and exclude the scoring itself. The floors (copy the
first frame; predict nothing after frame 0) are scored once per set.

A *recipe* is a name of factors joined by ``+``, applied in order on top of a base recipe: ``demo`` (today's
demo recipe, :func:`corrvos.demo.recipes.demo_train_config`, L_SEG only) or ``cpu`` (the CPU recipe of
:func:`corrvos.demo.recipes.cpu_train_config`). For example ``demo+bn+lr1e-3`` is the demo recipe with BatchNorm
on batch statistics and a learning rate of 1e-3. ``FACTORS`` lists the factors. The step count of a run fills the
time budget: a short calibration (steps 3..7 of the recipe, not scored) measures seconds per step first, so that
the schedules (bootstrapped CE, learning-rate drop) scale to the run's real length.

Usage::

    python benchmarks/learning_speed.py --recipes demo demo+bn demo+bn+r18 --minutes 10 --seeds 1
    python benchmarks/learning_speed.py --profile long --recipes cpu --minutes 45
    python benchmarks/learning_speed.py --profile smoke

Writes ``benchmarks/results/learning_speed_<name>.json`` (every scoring point of every run, the floors, the
settings) and a PNG of visible J&F against training minutes next to it, and prints a table. Runs go to worker
subprocesses (``--parallel`` at a time, ``--threads`` each; two 1-thread workers share the 2 cores best).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_speed_report import format_table, plot_curves
from learning_speed_runs import FACTORS, run_learning_jobs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRAIN = (24, 12, (80, 96), 0)  # videos, frames, (H, W), generator seed
EVAL_SETS = {"like": (8, 20, (80, 96), 1), "large": (8, 20, (120, 160), 5)}
SMOKE_SETS = {"like": (2, 8, (64, 80), 1), "large": (2, 8, (80, 96), 5)}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=["study", "long", "smoke"], default="study", help="sizes (module docstring)")
    p.add_argument("--arch", choices=["stcn", "xmem", "cutie"], default="stcn", help="model family of every run")
    p.add_argument(
        "--recipes", nargs="+", default=["demo", "demo+bn"], help=f"base+factor+...; factors: {sorted(FACTORS)}"
    )
    p.add_argument("--seeds", type=int, default=1, help="training seeds per recipe (0..k-1 + --seed)")
    p.add_argument("--seed", type=int, default=0, help="first training seed")
    p.add_argument("--minutes", type=float, default=None, help="training budget of every run (default 10; smoke 0.2)")
    p.add_argument("--points", type=int, default=None, help="scoring points along a run (default 5; long 9)")
    p.add_argument("--parallel", type=int, default=2, help="worker processes at a time")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per worker")
    p.add_argument("--name", default=None, help="output name (default <profile>_<arch>)")
    p.add_argument("--work", type=Path, default=None, help="work folder (default runs/learning_speed_<name>)")
    p.add_argument("--json", type=Path, default=None, help="output JSON (default benchmarks/results/...)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's last checkpoint (deleted else)")
    p.add_argument(
        "--collect",
        nargs="+",
        type=Path,
        default=None,
        metavar="WORK",
        help="train nothing: gather the finished runs (run.json) of --arch from earlier work folders of the same "
        "profile into one table, plot and JSON (their data are regenerated identically and checked)",
    )
    p.add_argument(
        "--alias",
        nargs="+",
        default=[],
        metavar="OLD=NEW",
        help="with --collect: report runs of recipe OLD under the name NEW (e.g. after the cpu recipe changed)",
    )
    return p.parse_args(argv)


def _prepare(work: Path, smoke: bool) -> dict[str, Any]:
    """Write the training set, both held-out stress sets and the floors' results; their description."""
    from ablation_data import empty_after_first_frame, make_eval_set, make_train_set
    from corrvos.inference.baseline import copy_first_frame
    from learning_speed_runs import score_results

    n, frames, size, seed = (4, 8, (64, 80), 0) if smoke else TRAIN
    train = make_train_set(work / "data" / "train", sequences=n, frames=frames, size=size, seed=seed)
    info: dict[str, Any] = {
        "train": {"root": str(train), "videos": n - 1, "frames": frames, "size": size, "seed": seed}
    }
    sets: dict[str, Any] = {}
    for name, (count, length, hw, gen_seed) in (SMOKE_SETS if smoke else EVAL_SETS).items():
        es = make_eval_set(work / "data" / name, sequences=count, frames=length, size=hw, seed=gen_seed)
        cells = work / "data" / f"{name}_visible.json"
        cells.write_text(json.dumps({k: v.tolist() for k, v in es.visible.items()}))
        copied = copy_first_frame(es.root, work / "floors" / name / "copy_first_frame", progress=False)
        empty = empty_after_first_frame(es.root, es.names, work / "floors" / name / "empty")
        visible = {k: v for k, v in es.visible.items()}
        sets[name] = {
            "root": str(es.root),
            "names": es.names,
            "visible_cells": str(cells),
            "videos": len(es.names),
            "frames": length,
            "size": hw,
            "seed": gen_seed,
            "floors": {
                "copy_first_frame": score_results(es.root, copied, visible),
                "empty": score_results(es.root, empty, visible),
            },
        }
    info["eval"] = sets
    return info


def _collect(args: argparse.Namespace, info: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(jobs, run records) of the finished runs of ``args.arch`` in the ``--collect`` folders, recipes renamed by
    ``--alias``; raises SystemExit if a folder's held-out videos differ from this profile's."""
    alias = dict(a.split("=", 1) for a in args.alias)
    jobs, records = [], []
    for work in args.collect:
        for job_path in sorted(work.glob("runs/*/seed*/job.json")):
            run_path = job_path.with_name("run.json")
            job = json.loads(job_path.read_text())
            if job["arch"] != args.arch:
                continue
            if run_path.is_file():
                record = json.loads(run_path.read_text())
            else:  # a run stopped before its end: the scoring points its log printed, marked incomplete
                lines = job_path.with_name("worker.log").read_text().splitlines()
                curve = [json.loads(x) for x in lines if x.startswith('{"step"')]
                if not curve:
                    continue
                steps = curve[-1]["step"]
                per_step = curve[-1]["train_seconds"] / steps
                record = {"steps": steps, "steps_done": steps, "calibrated_seconds_per_step": per_step}
                record |= {"curve": curve, "incomplete": True}
            for name, spec in job["eval"].items():
                theirs = json.loads(Path(spec["visible_cells"]).read_text())
                if sorted(theirs) != info["eval"][name]["names"]:
                    raise SystemExit(f"{job_path}: held-out set {name!r} differs from this profile's")
            job["recipe"] = job["variant_name"] = alias.get(job["recipe"], job["recipe"])
            jobs.append(job)
            records.append(record)
    if not jobs:
        raise SystemExit(f"--collect: no finished {args.arch} run in {[str(w) for w in args.collect]}")
    return jobs, records


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    smoke = args.profile == "smoke"
    minutes = args.minutes if args.minutes is not None else (0.2 if smoke else 10.0)
    points = args.points if args.points is not None else (9 if args.profile == "long" else (2 if smoke else 5))
    name = args.name or f"{args.profile}_{args.arch}"
    work = (args.work or REPO / "runs" / f"learning_speed_{name}").resolve()
    out_json = args.json or RESULTS / f"learning_speed_{name}.json"
    for recipe in args.recipes:
        base, *factors = recipe.split("+")
        unknown = [f for f in factors if f not in FACTORS]
        if base not in ("demo", "cpu") or unknown:
            raise SystemExit(f"recipe {recipe!r}: base must be demo or cpu, factors among {sorted(FACTORS)}")
    t0 = time.perf_counter()
    print(f"[1/3] data and floors in {work / 'data'}")
    info = _prepare(work, smoke)
    jobs = [
        {
            "arch": args.arch,
            "recipe": recipe,
            "variant_name": recipe,
            "seed": args.seed + s,
            "budget_seconds": minutes * 60,
            "points": points,
            "data_root": info["train"]["root"],
            "eval": {k: {"root": v["root"], "visible_cells": v["visible_cells"]} for k, v in info["eval"].items()},
            "run_dir": str(work / "runs" / recipe.replace("+", "_") / f"seed{args.seed + s}"),
            "keep_checkpoint": args.keep_checkpoints,
        }
        for recipe in args.recipes
        for s in range(args.seeds)
    ]
    if args.collect:
        jobs, records = _collect(args, info)
        args.recipes = list(dict.fromkeys(j["recipe"] for j in jobs))
        minutes = max(j["budget_seconds"] for j in jobs) / 60
        print(f"[2/3] collected {len(jobs)} finished runs of {len(args.recipes)} recipes")
    else:
        print(f"[2/3] {len(jobs)} runs of {minutes:g} min ({args.parallel} at a time, {args.threads} thread(s) each)")
        records = run_learning_jobs(jobs, parallel=args.parallel, threads=args.threads)
    import torch

    result = {
        "profile": args.profile,
        "arch": args.arch,
        "settings": {
            "recipes": args.recipes,
            "seeds": args.seeds,
            "minutes": minutes,
            "collected_from": [str(w) for w in args.collect] if args.collect else None,
            "points": points,
            "parallel": args.parallel,
            "threads": args.threads,
            "factors": {k: FACTORS[k].describe for k in sorted(FACTORS)},
            "train_seconds": "from the start of Trainer.run (set-up included), scoring excluded",
        },
        "data": info,
        "runs": [{"recipe": j["recipe"], "seed": j["seed"], **r} for j, r in zip(jobs, records, strict=True)],
        "seconds": time.perf_counter() - t0,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
        },
    }
    print("[3/3] report")
    print(format_table(result))
    png = plot_curves(result, out_json.with_suffix(".png"))
    result["plot"] = str(png)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_json} and {png} ({result['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
