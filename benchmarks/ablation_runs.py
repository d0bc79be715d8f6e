"""Training runs of the ablation (``benchmarks/ablation.py``): the variants, their configs, and parallel workers.

A *variant* is a loss setting (and, in the semi-supervised study, a data setting). Every run starts from the demo
recipe :func:`corrvos.demo.recipes.demo_train_config` (random init, 64x64 crops, schedules scaled to the run's
length), so that two runs of one seed differ only by the variant:

- ``none``: L_SEG only; ``paper``: L_SEG + L_PCL + L_OCL (Algorithms S1 + S2, our default weights 0.2 / 0.1);
- ``pcl``: paper mode with ``ocl_weight = 0`` (L_SEG + L_PCL); ``ocl``: paper mode with ``pcl_weight = 0``;
- ``official``: the release's ``temp`` + ``cross_key`` (weights 0.20 / 0.04) with its ramp moved to the recipe's
  L_PCL ramp (the release's 30K -> 90K would keep it at 0 in a short run). L_SEG is the recipe's for every row
  (no release Dice 0.4), so only the correspondence terms differ;
- every run builds the auxiliary ``key_proj2`` head that ``official`` trains (``model.aux_key_head: true``): on
  STCN it is created before the decoder, so building it only for ``official`` would change the initial weights of
  the other modules. The head is not used at inference and gets no gradient outside ``official``.

A seed fixes the initial weights and the data order (``TrainConfig.seed``). Runs go to worker subprocesses, at
most ``parallel`` at a time, each with ``threads`` intra-op threads; a worker trains, segments the held-out set
with ``corrvos infer``, deletes the 210 MB checkpoint (unless asked to keep it) and writes ``run.json``.

Run as a script, this module is the worker: ``python benchmarks/ablation_runs.py JOB.json``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SEMI_VARIANTS", "VARIANTS", "Variant", "build_config", "run_jobs"]


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: loss overrides on top of the recipe and whether unlabeled videos are mixed in."""

    label: str
    loss: dict[str, Any] = field(default_factory=dict)
    unlabeled: bool = False


VARIANTS = {
    "none": Variant("L_SEG", {"mode": "none"}),
    "paper": Variant("L_SEG + L_PCL + L_OCL", {"mode": "paper"}),
    "pcl": Variant("L_SEG + L_PCL", {"mode": "paper", "ocl_weight": 0.0}),
    "ocl": Variant("L_SEG + L_OCL", {"mode": "paper", "pcl_weight": 0.0}),
    "official": Variant("L_SEG + temp + cross_key (release)", {"mode": "official"}),
}
SEMI_VARIANTS = {
    "labeled:none": Variant("few labeled, L_SEG", {"mode": "none"}),
    "labeled:paper": Variant("few labeled, paper losses", {"mode": "paper"}),
    "labeled+unlabeled:paper": Variant("few labeled + unlabeled, paper losses", {"mode": "paper"}, unlabeled=True),
    "labeled+unlabeled:official": Variant(
        "few labeled + unlabeled, release losses", {"mode": "official"}, unlabeled=True
    ),
}


def build_config(
    arch: str,
    variant: Variant,
    *,
    data_root: str | Path,
    out_dir: str | Path,
    steps: int,
    seed: int,
    batch_size: int | None = None,
    num_workers: int = 0,
    device: str = "cpu",
    unlabeled_root: str | Path | None = None,
    unlabeled_share: float = 0.5,
    recipe: str = "demo",
) -> Any:
    """The ``TrainConfig`` of one run: the demo recipe of ``arch`` with the variant's loss and data settings.

    ``batch_size`` (default: the recipe's) counts labeled clips: with unlabeled videos the batch is enlarged so
    that ``unlabeled_share`` of it is unlabeled and the labeled clips per step stay the same.
    """
    from corrvos.config import config_from_dict, config_to_dict
    from corrvos.demo import recipes
    from corrvos.families import architectures

    builder = {"demo": recipes.demo_train_config, "cpu": recipes.cpu_train_config}[recipe]
    base = builder(arch, "none", data_root=data_root, out_dir=out_dir, steps=steps, seed=seed)
    raw = config_to_dict(base)
    loss = raw["loss"]
    loss.update(variant.loss)
    loss.update(official_ramp_start=loss["pcl_ramp_start"], official_ramp_end=loss["pcl_ramp_end"])
    if "aux_key_head" in inspect.signature(architectures()[arch].model_class).parameters:
        raw["model"]["aux_key_head"] = True  # a family without the head (Cutie) has no "official" variant either
    raw.update(device=device, num_workers=num_workers)
    stage = raw["stages"][0]
    labeled = batch_size if batch_size is not None else stage["batch_size"]
    stage["batch_size"] = labeled
    if variant.unlabeled:
        if unlabeled_root is None:
            raise ValueError(f"variant {variant.label!r} needs unlabeled_root")
        total = round(labeled / (1 - unlabeled_share))
        stage["batch_size"] = total
        stage["data"]["datasets"].append({"kind": "unlabeled", "root": str(Path(unlabeled_root).resolve())})
        stage["data"]["unlabeled_share"] = (total - labeled) / total
    name = f"ablation ({arch}, {variant.label}, seed {seed})"
    return config_from_dict(raw, source=name)


def _worker(job_path: Path) -> None:
    """Train one run, segment the held-out set, write ``run.json`` next to ``job.json``."""
    job = json.loads(job_path.read_text())
    import torch

    torch.set_num_threads(int(job["threads"]))
    from corrvos.training.trainer import Trainer

    run_dir = Path(job["run_dir"])
    variant = Variant(**job["variant"])
    cfg = build_config(
        job["arch"],
        variant,
        data_root=job["data_root"],
        out_dir=run_dir / "train",
        steps=job["steps"],
        seed=job["seed"],
        batch_size=job.get("batch_size"),
        num_workers=job.get("num_workers", 0),
        device=job["device"],
        unlabeled_root=job.get("unlabeled_root"),
        unlabeled_share=job.get("unlabeled_share", 0.5),
        recipe=job.get("recipe", "demo"),
    )
    t0 = time.perf_counter()
    result = Trainer(cfg, progress=False, overwrite=True, init_from=job.get("init_from")).run()
    train_s = time.perf_counter() - t0
    if not result.finished:
        raise RuntimeError(f"training stopped by {result.stopped_by}")
    ckpt = run_dir / "train" / "checkpoints" / "main_final.pth"
    t0 = time.perf_counter()
    if not job.get("skip_infer"):  # a pre-training run (fine-tune protocol) only wants its checkpoint
        from corrvos.data.davis import DavisDataset
        from corrvos.inference.config import inference_config_for
        from corrvos.inference.split import segment_split
        from corrvos.models import load_model

        model = load_model(ckpt, map_location="cpu" if job["device"] == "cpu" else "cuda")
        out = run_dir / "results"
        shutil.rmtree(out, ignore_errors=True)
        dataset = DavisDataset(job["eval_root"], year="2017", split="val")
        # the frame size, as in training (a family default could enlarge the frames to 480 px)
        segment_split(model, dataset, out, config=inference_config_for(model, internal_size=None))
    infer_s = time.perf_counter() - t0
    if not job.get("keep_checkpoint", False):
        ckpt.unlink()
    record = {
        "train_seconds": train_s,
        "infer_seconds": infer_s,
        "seconds_per_step": train_s / job["steps"],
        "last_scalars": {k: float(v) for k, v in result.last_scalars.items()},
        "device": str(torch.cuda.get_device_name(0)) if job["device"] != "cpu" else "cpu",
        "threads": torch.get_num_threads(),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=1) + "\n")


def _describe(job: dict[str, Any], record: dict[str, Any]) -> str:
    tag = f"{job['arch']}/{job['variant_name']}/seed {job['seed']}"
    return (
        f"{tag}: {record['train_seconds']:.0f} s train ({record['seconds_per_step']:.2f} s/step), "
        f"{record['infer_seconds']:.0f} s infer"
    )


def run_jobs(
    jobs: list[dict[str, Any]],
    *,
    parallel: int,
    threads: int,
    log=print,
    worker: str | Path | None = None,
    describe=_describe,
) -> list[dict[str, Any]]:
    """Run every job in a worker subprocess, ``parallel`` at a time; returns each job's ``run.json`` record.

    ``worker``: the script run as ``python WORKER JOB.json`` (default: this module's ``_worker``); it writes
    ``run.json`` next to ``job.json``. ``describe(job, record)`` is the progress line of a finished job.
    Raises ``RuntimeError`` naming the failed runs (their ``worker.log`` holds the details).
    """
    script = str(Path(worker).resolve()) if worker is not None else str(Path(__file__).resolve())
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending = list(enumerate(jobs))
    active: dict[int, tuple[subprocess.Popen, Any, float]] = {}
    records: dict[int, dict[str, Any]] = {}
    failed: list[str] = []
    start = time.perf_counter()
    while pending or active:
        while pending and len(active) < parallel:
            i, job = pending.pop(0)
            run_dir = Path(job["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "run.json").unlink(missing_ok=True)
            job_path = run_dir / "job.json"
            job_path.write_text(json.dumps({**job, "threads": threads}, indent=1) + "\n")
            logf = open(run_dir / "worker.log", "w")  # closed when the worker ends
            proc = subprocess.Popen(
                [sys.executable, script, str(job_path)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
            )
            active[i] = (proc, logf, time.perf_counter())
        time.sleep(0.2)
        for i, (proc, logf, t0) in list(active.items()):
            if proc.poll() is None:
                continue
            logf.close()
            del active[i]
            job = jobs[i]
            tag = f"{job['arch']}/{job['variant_name']}/seed {job['seed']}"
            run_json = Path(job["run_dir"]) / "run.json"
            if proc.returncode != 0 or not run_json.is_file():
                failed.append(f"{tag} (exit {proc.returncode}; see {Path(job['run_dir']) / 'worker.log'})")
                log(f"  FAILED {tag}")
                continue
            records[i] = {**json.loads(run_json.read_text()), "wall_seconds": time.perf_counter() - t0}
            done = len(records) + len(failed)
            log(f"  [{done}/{len(jobs)}] {describe(job, records[i])}; {time.perf_counter() - start:.0f} s elapsed")
    if failed:
        raise RuntimeError("ablation runs failed: " + "; ".join(failed))
    return [records[i] for i in range(len(jobs))]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
