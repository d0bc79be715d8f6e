"""Does correspondence learning help? A reproducible ablation of the training losses on synthetic videos.

The same tiny model (the demo recipe: random init, 64x64 crops) is trained with each loss variant over k seeds, on
the same synthetic training set and for the same steps, then segments a held-out synthetic *stress* set (every
video has an unannotated distractor of a target's kind, colour and texture crossing an annotated object; most also
have occlusions between targets and an object that leaves the frame and comes back) and is scored with the DAVIS
2017 semi-supervised protocol (frames 1 .. T-2). Variants (``benchmarks/ablation_runs.py``): ``none`` (L_SEG),
``paper`` (+ L_PCL + L_OCL), ``pcl`` (+ L_PCL only), ``ocl`` (+ L_OCL only), ``official`` (+ the release's
temp + cross_key). A seed fixes the initial weights and the data order, so runs of one seed are paired.

Reported per variant: J&F mean ± std over seeds; the per-seed paired difference to ``none`` with a 95 % percentile
bootstrap interval of its mean (10,000 resamples of the k differences; with k = 3 the interval is the range of the
three differences, see ``ablation_stats.bootstrap_ci``) and the Student-t interval for reference; and the same on
the *crossing frames* only: the (object, frame) cells where a distractor's silhouette, dilated by 2 px, meets the
object's (``ablation_data``). J and F there are the per-frame scores of ``evaluate_davis``, averaged per object
over its crossing frames, then over objects.

``--study semi``: few labeled videos vs the same plus many unlabeled videos (``{kind: unlabeled}`` datasets,
``data.unlabeled_share``; only the label-free losses see them), same protocol; the batch is enlarged so that the
labeled clips per step are the same in every row.

A copy-the-first-frame row (no network) is scored on the same set as the trivial lower bound.

Profiles (``--steps``, ``--seeds``, ``--parallel``, ``--threads`` override them); times measured from a fresh clone
on the 2-core development machine when quiet (two 1-thread workers: STCN 1.3-1.5 s/step at batch 4, 2.3 s/step at
batch 8; XMem 3.9 s/step at batch 2; 15-20 s to segment the held-out set):

- ``smoke``: seconds (about 16 s); 2 steps, 1 seed, ``none`` and ``paper`` (the test);
- ``cpu``: two workers of 1 thread (faster than 2 threads each on a shared 2-core machine); 24 training videos,
  8 held-out stress videos of 20 frames; STCN 3 seeds x 5 variants x 100 steps (batch 4): 21 minutes; the semi
  study (3 x 3 x 100 steps): 15 minutes; XMem (``--arch xmem``) 3 x 5 x 30 steps (batch 2): 18 minutes. Each
  arch runs on its own within 45 minutes; both in one call would not;
- ``gpu``: one H200, five workers of 1 thread, 1 loader worker each; 48 training videos, 16 stress videos of 30
  frames; STCN 5 seeds x 5 variants x 500 steps at batch 8, XMem 250 steps at batch 4. Unmeasured: about 6 minutes
  per arch if a step takes <= 100 ms with five workers sharing the GPU (the H200 takes 118 ms for an fp32 STCN step
  at batch 8 and 384x384; these are 64x64 crops, bound by kernel launches).

Usage::

    python benchmarks/ablation.py --profile cpu                 # STCN rows
    python benchmarks/ablation.py --profile gpu --arch stcn xmem
    python benchmarks/ablation.py --profile smoke --study semi

Writes ``benchmarks/results/ablation[_semi]_<profile>[_<archs>].json`` (every run's scores, the summary, timings)
and a PNG next to it, and prints the table. Runs live in ``runs/ablation_<study>_<profile>[_<archs>]/`` (checkpoints
deleted after inference unless ``--keep-checkpoints``); ``--rescore`` scores them again without training.

Besides J&F on all evaluated cells and on the crossing cells, every run is scored on the cells where the object is
visible in the ground truth, and its predicted / annotated object-pixel ratio is recorded: on this set an empty
prediction after the first frame (the ``empty`` floor) earns J = F = 1 wherever an object is hidden, so J&F on all
cells can rank a model that predicts less above one that tracks better.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation_data import (
    empty_after_first_frame,
    foreground_ratio,
    make_eval_set,
    make_train_set,
    make_unlabeled_set,
)
from ablation_profiles import PROFILES, Profile
from ablation_report import format_table, plot_summary
from ablation_runs import SEMI_VARIANTS, VARIANTS, run_jobs
from ablation_stats import paired_differences, subset_scores, summarize

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CROSSING_RADIUS = 2  # pixels: a distractor within this distance of an object crosses it
DATA_SEEDS = {"train": 0, "eval": 1, "unlabeled": 2}  # the data are the same for every run and every seed


def semi_supported() -> str | None:
    """None when corrvos trains on unlabeled videos, else why not."""
    from corrvos.config import DataConfig, DatasetSpec
    from corrvos.data.synthetic import LAYOUTS

    missing = []
    if "unlabeled_share" not in {f.name for f in dataclasses.fields(DataConfig)}:
        missing.append("data.unlabeled_share (corrvos.config.DataConfig)")
    if "unlabeled" not in str(next(f.type for f in dataclasses.fields(DatasetSpec) if f.name == "kind")):
        missing.append("the 'unlabeled' dataset kind (corrvos.config.DatasetSpec)")
    if "unlabeled" not in LAYOUTS:
        missing.append("generate_dataset(layout='unlabeled') (corrvos.data.synthetic)")
    if not missing:
        return None
    return "--study semi needs unlabeled-video training, which this corrvos lacks: " + ", ".join(missing)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=list(PROFILES), default="cpu")
    p.add_argument("--study", choices=["labeled", "semi"], default="labeled")
    p.add_argument("--arch", nargs="+", choices=["stcn", "xmem", "cutie"], default=["stcn"])
    p.add_argument("--variants", nargs="+", default=None, help=f"default: the profile's; any of {list(VARIANTS)}")
    p.add_argument("--baseline", default=None, help="variant of the paired differences (default: the first)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (training seeds 0..k-1 + --seed)")
    p.add_argument("--seed", type=int, default=0, help="first training seed")
    p.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the profile's)")
    p.add_argument("--parallel", type=int, default=None, help="worker processes at a time")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument(
        "--recipe",
        choices=["cpu", "demo"],
        default="cpu",
        help="training recipe of every run: cpu (corrvos.demo.recipes.cpu_train_config, the small variant that "
        "learns on a CPU) or demo (the first demo recipe, ResNet-50 with frozen BatchNorm; the results up to "
        "2026-12 used it) (default: %(default)s)",
    )
    p.add_argument(
        "--protocol",
        choices=["scratch", "finetune"],
        default="scratch",
        help="scratch: every variant trains from random init; finetune: one L_SEG-only run (--pretrain-steps) "
        "first, then every variant and seed fine-tunes that checkpoint for --steps (the correspondence losses "
        "added to a model that already tracks) (default: %(default)s)",
    )
    p.add_argument("--pretrain-steps", type=int, default=None, help="finetune: L_SEG steps first (profile's)")
    p.add_argument(
        "--work", type=Path, default=None, help="run folder (default runs/ablation_<study>_<profile>[_<archs>])"
    )
    p.add_argument("--json", type=Path, default=None, help="output JSON (the PNG is written next to it)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's final checkpoint")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="do not train: score the results of an earlier run of the same command in --work again (its run.json "
        "timings are kept); for scores added after the runs were made",
    )
    return p.parse_args(argv)


def _arch_suffix(args: argparse.Namespace) -> str:
    """ "" for the STCN rows alone, else "_<arch>_<arch>..." (file and folder names)."""
    return "" if args.arch == ["stcn"] else "_" + "_".join(args.arch)


def _default_json(args: argparse.Namespace) -> Path:
    study = "_semi" if args.study == "semi" else ""
    protocol = "_finetune" if args.protocol == "finetune" else ""
    return RESULTS / f"ablation{study}{protocol}_{args.profile}{_arch_suffix(args)}.json"


def _prepare_data(args: argparse.Namespace, prof: Profile, work: Path) -> tuple[dict[str, Any], Any, Path | None]:
    n, frames, size = prof.eval
    eval_set = make_eval_set(
        work / "data" / "eval", sequences=n, frames=frames, size=size, seed=DATA_SEEDS["eval"], radius=CROSSING_RADIUS
    )
    n_train, frames_train, size_train = prof.train
    if args.study == "semi":
        n_train = prof.semi_labeled + 1  # one video is held out of train.txt
    train_root = make_train_set(
        work / "data" / "train", sequences=n_train, frames=frames_train, size=size_train, seed=DATA_SEEDS["train"]
    )
    unlabeled_root = None
    info: dict[str, Any] = {
        "train": {"root": str(train_root), "sequences": n_train - 1, "frames": frames_train, "size": size_train},
    }
    if args.study == "semi":
        nu, fu, su = prof.semi_unlabeled
        unlabeled_root = make_unlabeled_set(
            work / "data" / "unlabeled", sequences=nu, frames=fu, size=su, seed=DATA_SEEDS["unlabeled"]
        )
        info["unlabeled"] = {"root": str(unlabeled_root), "sequences": nu, "frames": fu, "size": su}
    info["eval"] = {
        "root": str(eval_set.root),
        "names": eval_set.names,
        "frames": frames,
        "size": size,
        "candidates": eval_set.candidates,
        "stress": eval_set.stats,
        "labels_verified": True,  # make_eval_set raises otherwise
    }
    info["seeds"] = dict(DATA_SEEDS)
    return info, eval_set, unlabeled_root


def _score_run(results: Path, eval_set: Any) -> dict[str, Any]:
    from corrvos.evaluation import evaluate_davis

    report = evaluate_davis(eval_set.root, results, set_name="val", write_csv=False, progress=False)
    g = report.global_scores
    per_seq = {}
    for seq in report.sequences:
        per_seq[seq.name] = float((seq.j.mean(axis=1) + seq.f.mean(axis=1)).mean() / 2)
    crossing = subset_scores(report.sequences, eval_set.crossing)
    other = subset_scores(report.sequences, {k: ~v for k, v in eval_set.crossing.items()})
    return {
        "jf": g["J&F-Mean"],
        "j": g["J-Mean"],
        "f": g["F-Mean"],
        "per_sequence_jf": per_seq,
        "crossing": crossing,
        "non_crossing": other,
        "visible": subset_scores(report.sequences, eval_set.visible),
        "foreground_ratio": foreground_ratio(eval_set.root, eval_set.names, results),
    }


def _earlier_record(job: dict[str, Any]) -> dict[str, Any]:
    """The ``run.json`` of an earlier run of ``job`` (``--rescore``), checked to be the same run."""
    run_dir = Path(job["run_dir"])
    run_json, job_json = run_dir / "run.json", run_dir / "job.json"
    if not run_json.is_file() or not job_json.is_file():
        raise SystemExit(f"--rescore: {run_dir} holds no finished run (run.json and job.json)")
    earlier = json.loads(job_json.read_text())
    changed = [k for k, v in job.items() if earlier.get(k) != v]
    if changed:
        raise SystemExit(f"--rescore: {job_json} was another run (differs in {changed}); run without --rescore")
    return json.loads(run_json.read_text())


# summary key -> the run score it summarises (None where nothing was selected, e.g. no crossing cell)
_METRICS = {
    "jf": lambda scores: scores["jf"],
    "crossing_jf": lambda scores: scores["crossing"]["JF"],
    "visible_jf": lambda scores: scores["visible"]["JF"],
}


def _per_seed(runs_by_seed: dict[int, dict[str, Any]], score) -> dict[int, float]:
    """seed -> ``score`` of that seed's run, leaving out the seeds where it is None."""
    values = {seed: score(run["scores"]) for seed, run in runs_by_seed.items()}
    return {seed: x for seed, x in values.items() if x is not None}


def _summarize(runs: list[dict[str, Any]], variants: list[str], baseline: str, resamples: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for arch in dict.fromkeys(r["arch"] for r in runs):
        rows: dict[str, Any] = {}
        by = {v: {r["seed"]: r for r in runs if r["arch"] == arch and r["variant"] == v} for v in variants}
        for v in variants:
            rows[v] = {"label": (VARIANTS | SEMI_VARIANTS)[v].label}
            for key, score in _METRICS.items():
                values = _per_seed(by[v], score)
                rows[v][key] = summarize([values[s] for s in sorted(values)])
            rows[v]["foreground_ratio"] = summarize([by[v][s]["scores"]["foreground_ratio"] for s in sorted(by[v])])
            rows[v]["seconds_per_step"] = float(np.mean([r["seconds"]["seconds_per_step"] for r in by[v].values()]))
            if v != baseline:
                for key, score in _METRICS.items():
                    rows[v][f"diff_{key}"] = paired_differences(
                        _per_seed(by[v], score), _per_seed(by[baseline], score), resamples=resamples
                    )
        summary[arch] = rows
    return summary


def _has_second_view(arch: str) -> bool:
    """Whether ``arch``'s network can carry the ``key_proj2`` head of the release's ("official") losses."""
    import inspect

    from corrvos.families import architectures

    return "aux_key_head" in inspect.signature(architectures()[arch].model_class).parameters


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    prof = PROFILES[args.profile]
    table = SEMI_VARIANTS if args.study == "semi" else VARIANTS
    variants = args.variants or list(prof.semi_variants if args.study == "semi" else prof.variants)
    unknown = [v for v in variants if v not in table]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown} for --study {args.study}; choose from {list(table)}")
    official = [v for v in variants if table[v].loss.get("mode") == "official"]
    headless = [a for a in args.arch if not _has_second_view(a)]
    if official and headless:
        kept = [v for v in variants if v not in official]
        raise SystemExit(
            f"{headless} have no second-view key head, so no {official} variant: pass --variants {' '.join(kept)}"
        )
    baseline = args.baseline or variants[0]
    if baseline not in variants:
        raise SystemExit(f"--baseline {baseline} is not among the variants {variants}")
    if args.study == "semi" and args.protocol == "finetune":
        raise SystemExit("--protocol finetune applies to the labeled study only")
    if args.study == "semi" and (reason := semi_supported()):
        print(reason, file=sys.stderr)
        return 3
    if prof.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--profile gpu needs CUDA")
    finetune = args.protocol == "finetune"
    n_seeds = args.seeds if args.seeds is not None else (prof.finetune_seeds if finetune else prof.seeds)
    seeds = [args.seed + i for i in range(n_seeds)]
    default_steps = prof.finetune_steps if finetune else prof.steps
    missing = [a for a in args.arch if a not in default_steps and args.steps is None]
    missing += [a for a in args.arch if finetune and a not in prof.pretrain_steps and not args.pretrain_steps]
    if missing:  # Cutie: only the smoke profile is sized so far (its CPU / GPU step counts are not calibrated)
        raise SystemExit(
            f"--profile {args.profile} has no step counts for {sorted(set(missing))} yet: pass --steps "
            "(and --pretrain-steps with --protocol finetune); the batch is then the recipe's"
        )
    steps = {a: args.steps if args.steps is not None else default_steps[a] for a in args.arch}
    pretrain = {a: args.pretrain_steps or prof.pretrain_steps.get(a) for a in args.arch} if finetune else {}
    parallel = args.parallel or prof.parallel
    threads = args.threads or prof.threads
    protocol = "_finetune" if args.protocol == "finetune" else ""
    work = (
        args.work or REPO / "runs" / f"ablation_{args.study}{protocol}_{args.profile}{_arch_suffix(args)}"
    ).resolve()
    out_json = args.json or _default_json(args)
    marker = work / "ablation_work.txt"
    if work.is_dir() and any(work.iterdir()) and not marker.is_file():
        raise SystemExit(f"{work}: not empty and not an earlier ablation folder; choose a new or empty --work")
    work.mkdir(parents=True, exist_ok=True)
    if args.rescore and not (work / "runs").is_dir():
        raise SystemExit(f"--rescore: {work / 'runs'} does not exist; run the same command without --rescore first")
    marker.write_text("written by benchmarks/ablation.py; its data/ and runs/ are replaced by the next run\n")
    if (work / "runs").is_dir() and not args.rescore:
        shutil.rmtree(work / "runs")
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()

    print(f"[1/4] data in {work / 'data'}")
    data_info, eval_set, unlabeled_root = _prepare_data(args, prof, work)
    seconds["data"] = time.perf_counter() - t_start
    print(f"      held-out stress set: {len(eval_set.names)} videos of {eval_set.candidates} candidates")

    def job_of(arch: str, v: str, seed: int, n_steps: int, run_dir: Path) -> dict[str, Any]:
        return {
            "arch": arch,
            "variant_name": v,
            "variant": dataclasses.asdict(table[v]),
            "seed": seed,
            "steps": n_steps,
            "batch_size": prof.batch.get(arch),  # None: the recipe's batch
            "num_workers": prof.num_workers,
            "device": prof.device,
            "data_root": data_info["train"]["root"],
            "eval_root": str(eval_set.root),
            "unlabeled_root": str(unlabeled_root) if unlabeled_root else None,
            "run_dir": str(run_dir),
            "keep_checkpoint": args.keep_checkpoints,
            "recipe": args.recipe,
        }

    t0 = time.perf_counter()
    init_from: dict[str, str] = {}
    for arch in pretrain:  # the fine-tune protocol: one L_SEG-only run whose weights every variant starts from
        pre = job_of(arch, variants[0], seeds[0], pretrain[arch], work / "runs" / arch / "pretrain")
        pre.update(variant_name="pretrain", variant=dataclasses.asdict(table["none"]), keep_checkpoint=True)
        pre["skip_infer"] = True
        init_from[arch] = str(Path(pre["run_dir"]) / "train" / "checkpoints" / "main_final.pth")
        if not args.rescore:
            print(f"[2/4] {arch}: L_SEG pre-training, {pretrain[arch]} steps ({parallel * threads} threads)")
            run_jobs([pre], parallel=1, threads=parallel * threads)
    seconds["pretrain"] = time.perf_counter() - t0
    jobs = []
    for arch in args.arch:
        for seed in seeds:
            for v in variants:
                run_dir = work / "runs" / arch / v.replace(":", "_").replace("+", "_") / f"seed{seed}"
                job = job_of(arch, v, seed, steps[arch], run_dir)
                if arch in init_from:
                    job["init_from"] = init_from[arch]
                jobs.append(job)
    t0 = time.perf_counter()
    if args.rescore:
        print(f"[2/4] {len(jobs)} earlier runs in {work / 'runs'} (--rescore: not trained again)")
        records = [_earlier_record(job) for job in jobs]
    else:
        print(f"[2/4] {len(jobs)} runs ({parallel} at a time, {threads} thread(s) each), steps {steps}")
        records = run_jobs(jobs, parallel=parallel, threads=threads)
    seconds["runs"] = time.perf_counter() - t0

    print("[3/4] scoring (DAVIS 2017 semi-supervised protocol, and the crossing frames)")
    t0 = time.perf_counter()
    runs = []
    for job, rec in zip(jobs, records, strict=True):
        scores = _score_run(Path(job["run_dir"]) / "results", eval_set)
        runs.append(
            {"arch": job["arch"], "variant": job["variant_name"], "seed": job["seed"], "steps": job["steps"]}
            | {"scores": scores, "seconds": rec, "run_dir": job["run_dir"]}
        )
    from corrvos.inference.baseline import copy_first_frame

    copied = copy_first_frame(eval_set.root, work / "runs" / "copy_first_frame", progress=False)
    empty = empty_after_first_frame(eval_set.root, eval_set.names, work / "runs" / "empty")
    # the trivial floors: every frame is the first-frame mask; no object on any later frame
    references = {"copy_first_frame": _score_run(copied, eval_set), "empty": _score_run(empty, eval_set)}
    seconds["scoring"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    import torch

    record = {
        "study": args.study,
        "profile": args.profile,
        "baseline": baseline,
        "settings": {
            "archs": args.arch,
            "variants": {v: dataclasses.asdict(table[v]) for v in variants},
            "seeds": len(seeds),
            "seed_values": seeds,
            "steps": steps,
            "recipe": args.recipe,
            "protocol": args.protocol,
            "pretrain_steps": pretrain,
            "batch_size": {a: prof.batch.get(a) for a in args.arch},
            "parallel": parallel,
            "threads": threads,
            "device": prof.device,
            "resamples": args.resamples,
            "ci": "95% percentile bootstrap of the mean per-seed paired difference; t interval for reference",
            "seconds_per_step": "training wall time / steps, including model build, data set-up and final save",
        },
        "crossing": {
            "radius_px": CROSSING_RADIUS,
            "definition": "cells (object, evaluated frame) where an unannotated distractor's full silhouette, "
            "dilated by a disk of radius_px, meets the object's full silhouette (before occlusion)",
        },
        "data": data_info,
        "eval": data_info["eval"],
        "runs": runs,
        "rescored": args.rescore,
        "reference": references,
        "summary": _summarize(runs, variants, baseline, args.resamples),
        "seconds": seconds,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
        },
    }
    print("[4/4] report")
    print(format_table(record))
    png = plot_summary(record, out_json.with_suffix(".png"))
    record["plot"] = str(png)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out_json} and {png} ({seconds['total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
