"""Runs of the learning-speed study (``benchmarks/learning_speed.py``): recipe factors, calibration, scoring while
training, worker subprocesses.

Run as a script, this module is the worker: ``python benchmarks/learning_speed_runs.py JOB.json`` calibrates the
recipe's seconds per step, trains for the budget with a :class:`HeldOutScorer` callback and writes ``run.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["FACTORS", "Factor", "HeldOutScorer", "build_recipe", "run_learning_jobs", "score_results"]


@dataclass(frozen=True)
class Factor:
    """One change to a recipe: ``apply(raw_config_dict, steps)`` edits the config dict in place."""

    describe: str
    apply: Callable[[dict[str, Any], int], None] = lambda raw, steps: None
    infer_size: int | None = None  # shorter side the held-out frames are segmented at (-1: their own; None: keep)


def _set(path: str, value: Any) -> Callable[[dict[str, Any], int], None]:
    """A patch setting ``path`` (``model.width``, ``stage.lr``, ``stage.data.crop_size``; ``stage`` = the only
    stage) to ``value``."""

    def apply(raw: dict[str, Any], steps: int) -> None:
        head, *rest = path.split(".")
        node = raw["stages"][0] if head == "stage" else raw[head]
        for key in rest[:-1]:
            node = node[key]
        node[rest[-1]] = value

    return apply


def _set_many(**loss: Any) -> Callable[[dict[str, Any], int], None]:
    """A patch updating ``loss`` settings."""

    def apply(raw: dict[str, Any], steps: int) -> None:
        raw["loss"].update(loss)

    return apply


def _no_bootstrap(raw: dict[str, Any], steps: int) -> None:
    raw["loss"].update(bootstrap_start=steps + 1, bootstrap_end=steps + 2)


def _no_lr_drop(raw: dict[str, Any], steps: int) -> None:
    raw["stages"][0]["lr_milestones"] = [steps + 1]


STATIC_SHARE = 0.25  # "static": the share of the steps spent on the static-image stage
WARMUP_SHARE = 0.05  # "warmup": the share of the steps the learning rate warms up over


def export_static_pairs(davis_root: str | Path, out: str | Path, *, every: int = 4) -> Path:
    """Synthetic "static images": one (frame, binary mask of one object) pair per annotated object on every
    ``every``-th frame of a DAVIS-layout set, as ``<seq>_<frame>_<id>.jpg`` / ``.png`` (the naming
    :class:`corrvos.data.static.StaticPseudoVideoDataset` reads). Written to a temporary folder and renamed, so
    parallel workers never see half a folder; an existing ``out`` is kept."""
    from corrvos.data.io import read_image, read_label, write_image

    out = Path(out)
    if out.is_dir():
        return out
    root = Path(davis_root)
    tmp = out.with_name(f"{out.name}.tmp-{time.monotonic_ns()}")
    tmp.mkdir(parents=True)
    for ann_dir in sorted((root / "Annotations" / "480p").iterdir()):
        for ann in sorted(ann_dir.glob("*.png"))[::every]:
            label = read_label(ann)  # [H, W] object ids
            image = read_image(root / "JPEGImages" / "480p" / ann_dir.name / f"{ann.stem}.jpg")
            for obj in (int(k) for k in np.unique(label) if k != 0):
                stem = tmp / f"{ann_dir.name}_{ann.stem}_{obj}"
                write_image(stem.with_suffix(".jpg"), image)
                Image.fromarray(((label == obj) * 255).astype(np.uint8)).save(stem.with_suffix(".png"))
    try:
        tmp.rename(out)
    except OSError:  # another worker renamed its copy first
        shutil.rmtree(tmp)
    return out


def _scale_schedule(raw: dict[str, Any], stage: dict[str, Any], old: int, new: int) -> None:
    """Rescale a stage's step-counted schedules (lr milestones, bootstrapped CE, loss ramps) from ``old`` steps to
    ``new``."""

    def scaled(k: int) -> int:
        return max(1, round(k * new / old))

    stage["iterations"] = new
    stage["lr_milestones"] = [scaled(m) for m in stage["lr_milestones"]]
    if stage["data"].get("finetune_iterations"):
        stage["data"]["finetune_iterations"] = scaled(stage["data"]["finetune_iterations"])
    for key in ("bootstrap_start", "bootstrap_end", "pcl_ramp_end", "ocl_ramp_end"):
        raw["loss"][key] = scaled(raw["loss"][key])


def _static_stage(raw: dict[str, Any], steps: int) -> None:
    """Prepend a static-image stage (STCN / XMem's stage 0 on synthetic frames, multi-object by XMem's pasting rule)
    of ``STATIC_SHARE`` of the steps; the main stage keeps the rest with its schedules rescaled."""
    main = raw["stages"][-1]
    video_root = Path(main["data"]["datasets"][0]["root"])
    static_root = export_static_pairs(video_root, video_root.with_name(f"{video_root.name}_static"))
    n = max(1, round(steps * STATIC_SHARE))
    static = json.loads(json.dumps(main))
    static.update(name="static", iterations=n, lr_milestones=[], lr_warmup=min(main.get("lr_warmup", 0), n))
    static["data"].update(datasets=[{"kind": "static", "root": str(static_root)}], num_frames=3, finetune_iterations=0)
    _scale_schedule(raw, main, steps, steps - n)
    raw["stages"] = [static, main]


def _warmup(raw: dict[str, Any], steps: int) -> None:
    raw["stages"][0]["lr_warmup"] = max(1, round(steps * WARMUP_SHARE))


FACTORS: dict[str, Factor] = {
    "bn": Factor("BatchNorm on batch statistics (optim.freeze_bn: false)", _set("optim.freeze_bn", False)),
    "lr3e-4": Factor("learning rate 3e-4 (demo: 1e-4)", _set("stage.lr", 3e-4)),
    "lr1e-3": Factor("learning rate 1e-3", _set("stage.lr", 1e-3)),
    "r18": Factor("ResNet-18 key encoder (model.key_encoder: resnet18)", _set("model.key_encoder", "resnet18")),
    "w32": Factor("half width: every ResNet, value and decoder width x0.5 (model.width: 32)", _set("model.width", 32)),
    "w16": Factor("quarter width (model.width: 16)", _set("model.width", 16)),
    "crop48": Factor("48x48 training crops", _set("stage.data.crop_size", 48)),
    "crop128": Factor("128x128 training crops (objects magnified ~1.9x on average)", _set("stage.data.crop_size", 128)),
    "s128": Factor("segment at a shorter side of 128 px (frames resized)", infer_size=128),
    "s160": Factor("segment at a shorter side of 160 px (frames resized)", infer_size=160),
    "s0": Factor("segment at the frames' own size", infer_size=-1),
    "b8": Factor("batch 8 (STCN demo: 4)", _set("stage.batch_size", 8)),
    "b2": Factor("batch 2", _set("stage.batch_size", 2)),
    "f5": Factor("5-frame clips (STCN demo: 3)", _set("stage.data.num_frames", 5)),
    "noboot": Factor("plain cross-entropy, no bootstrapped CE", _no_bootstrap),
    "nodrop": Factor("no learning-rate drop", _no_lr_drop),
    "dice": Factor("+ Dice on the object channels (XMem's, weight 1)", _set_many(dice_weight=1.0, dice_mode="objects")),
    "lr5e-4": Factor("learning rate 5e-4", _set("stage.lr", 5e-4)),
    "crop96": Factor("96x96 training crops (demo: 64)", _set("stage.data.crop_size", 96)),
    "paper": Factor("L_SEG + L_PCL + L_OCL (loss.mode: paper)", _set("loss.mode", "paper")),
    "warmup": Factor("linear learning-rate warm-up over the first 5 % of the steps (stage.lr_warmup)", _warmup),
    "static": Factor(
        "a static-image stage first (a quarter of the steps): single synthetic frames with one object's mask, "
        "turned into clips by the static recipe",
        _static_stage,
    ),
}


def build_recipe(recipe: str, arch: str, *, data_root: str, out_dir: str | Path, steps: int, seed: int) -> Any:
    """The ``TrainConfig`` of ``recipe`` ("demo+bn+lr1e-3", "cpu", ...) with ``steps`` steps."""
    from corrvos.config import config_from_dict, config_to_dict
    from corrvos.demo import recipes

    base, *factors = recipe.split("+")
    builder = recipes.demo_train_config if base == "demo" else recipes.cpu_train_config
    raw = config_to_dict(builder(arch, "none", data_root=data_root, out_dir=out_dir, steps=steps, seed=seed))
    for name in sorted(factors, key=lambda n: n == "static"):  # "static" copies the main stage: last
        FACTORS[name].apply(raw, steps)
    raw.update(log_interval=max(1, min(50, steps // 20)), save_interval=steps, keep_checkpoints=0)
    return config_from_dict(raw, source=f"learning-speed recipe {recipe} ({arch}, seed {seed})")


def recipe_infer_size(recipe: str) -> int | None:
    """The shorter side ``recipe`` segments at (None: the frames' own size): the base recipe's, then the factors'."""
    from corrvos.demo import recipes

    base, *factors = recipe.split("+")
    size = recipes.CPU_INFER_SIZE if base == "cpu" else None
    for name in factors:
        if FACTORS[name].infer_size is not None:
            size = None if FACTORS[name].infer_size == -1 else FACTORS[name].infer_size
    return size


def score_results(root: str | Path, results: str | Path, visible: dict[str, np.ndarray]) -> dict[str, Any]:
    """DAVIS J&F of ``results`` on all cells and on the visible cells (``ablation_stats.subset_scores``)."""
    from ablation_stats import subset_scores
    from corrvos.evaluation import evaluate_davis

    report = evaluate_davis(root, results, set_name="val", write_csv=False, progress=False)
    g = report.global_scores
    return {"all": g["J&F-Mean"], "visible": subset_scores(report.sequences, visible)["JF"]}


class HeldOutScorer:
    """Trainer callback: every ``budget / points`` seconds of training (scoring excluded) and at the last step,
    segment each held-out set with the model being trained and score it (:func:`score_results`)."""

    def __init__(
        self, sets: dict[str, dict[str, Any]], work: Path, *, budget: float, points: int, infer_size: int | None = None
    ) -> None:
        self.sets = sets
        self.infer_size = infer_size
        self.work = work
        self.marks = [budget * (k + 1) / points for k in range(points)]
        self.start = time.perf_counter()
        self.scoring = 0.0
        self.curve: list[dict[str, Any]] = []

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.scoring

    def __call__(self, trainer: Any, record: Any) -> None:
        elapsed = self.train_seconds()
        if not record.stage_done and (not self.marks or elapsed < self.marks[0]):
            return
        while self.marks and elapsed >= self.marks[0]:
            self.marks.pop(0)
        t0 = time.perf_counter()
        point: dict[str, Any] = {"step": record.global_step, "train_seconds": elapsed}
        for name, spec in self.sets.items():
            point[name] = self.score(trainer.model, name, spec)
        self.scoring += time.perf_counter() - t0
        self.curve.append(point)
        print(json.dumps(point), flush=True)
        if not self.marks and not record.stage_done:
            trainer.request_stop("time budget")  # slower than calibrated (a busy machine): stop at the budget

    def score(self, model: Any, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        from corrvos.data.davis import DavisDataset
        from corrvos.inference.config import inference_config_for
        from corrvos.inference.split import segment_split

        out = self.work / name
        shutil.rmtree(out, ignore_errors=True)
        dataset = DavisDataset(spec["root"], year="2017", split="val")
        segment_split(model, dataset, out, config=inference_config_for(model, internal_size=self.infer_size))
        return score_results(spec["root"], out, spec["visible"])


class _Calibrated(Exception):
    pass


def calibrate(job: dict[str, Any], out_dir: Path) -> tuple[float, float]:
    """(seconds per step over steps 3..7, set-up seconds before the first step) of the job's recipe."""
    from corrvos.training.trainer import Trainer

    cfg = build_recipe(
        job["recipe"], job["arch"], data_root=job["data_root"], out_dir=out_dir, steps=1000, seed=job["seed"]
    )
    times: list[float] = []

    def clock(trainer: Any, record: Any) -> None:
        times.append(time.perf_counter())
        if len(times) == 7:
            raise _Calibrated

    start = time.perf_counter()
    try:
        Trainer(cfg, progress=False, overwrite=True, callbacks=[clock]).run()
    except _Calibrated:
        pass
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    per_step = (times[6] - times[2]) / 4
    return per_step, max(times[0] - start - per_step, 0.0)


def _worker(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    import torch

    torch.set_num_threads(int(job["threads"]))
    from corrvos.training.trainer import Trainer

    run_dir = Path(job["run_dir"])
    budget = float(job["budget_seconds"])
    per_step, setup = calibrate(job, run_dir / "calibration")
    steps = max(2, int((budget - setup) / per_step))
    cfg = build_recipe(
        job["recipe"], job["arch"], data_root=job["data_root"], out_dir=run_dir / "train", steps=steps, seed=job["seed"]
    )
    sets = {
        name: {
            "root": spec["root"],
            "visible": {k: np.array(v) for k, v in json.loads(Path(spec["visible_cells"]).read_text()).items()},
        }
        for name, spec in job["eval"].items()
    }
    infer_size = recipe_infer_size(job["recipe"])
    scorer = HeldOutScorer(sets, run_dir / "results", budget=budget, points=int(job["points"]), infer_size=infer_size)
    result = Trainer(cfg, progress=False, overwrite=True, callbacks=[scorer]).run()
    if not result.finished and result.stopped_by != "time budget":
        raise RuntimeError(f"training stopped by {result.stopped_by}")
    if not job.get("keep_checkpoint", False):
        shutil.rmtree(run_dir / "train" / "checkpoints", ignore_errors=True)
    record = {
        "steps": steps,
        "steps_done": result.step,
        "stopped_by": result.stopped_by,
        "infer_size": infer_size,
        "calibrated_seconds_per_step": per_step,
        "setup_seconds": setup,
        "train_seconds": scorer.curve[-1]["train_seconds"],
        "scoring_seconds": scorer.scoring,
        "curve": scorer.curve,
        "last_scalars": {k: float(v) for k, v in result.last_scalars.items()},
        "threads": torch.get_num_threads(),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=1) + "\n")


def _describe(job: dict[str, Any], record: dict[str, Any]) -> str:
    last = record["curve"][-1]
    scores = ", ".join(f"{k} visible {last[k]['visible']:.3f}" for k in job["eval"])
    return f"{job['recipe']}/seed {job['seed']}: {record['steps']} steps in {record['train_seconds']:.0f} s; {scores}"


def run_learning_jobs(jobs: list[dict[str, Any]], *, parallel: int, threads: int) -> list[dict[str, Any]]:
    """Every job in a worker subprocess (``ablation_runs.run_jobs`` with this module as the worker)."""
    from ablation_runs import run_jobs

    return run_jobs(jobs, parallel=parallel, threads=threads, worker=__file__, describe=_describe)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
