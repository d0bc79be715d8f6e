"""The demo end to end: data, two training runs, segmentation, J&F, figures and an HTML report.

:func:`run_demo` generates a synthetic training set and a held-out evaluation set (textured objects, camera
motion, occlusions, re-appearances and unannotated distractors that share an object's colour and texture),
trains the same tiny model twice with the same seed, data and steps (loss mode ``none``: L_SEG only; ``paper``:
L_SEG + L_PCL + L_OCL), segments the evaluation videos with both through ``corrvos infer``, writes two no-model
floors (copy the first frame; empty after frame 0), scores all four with the DAVIS protocol, on all cells and on
the cells where the object is visible (:mod:`corrvos.demo.scores`), and draws the supplement's figures (loss
curves, per-frame J&F, correspondence maps, object matches, side-by-side results) into ``<out>/figures``, then
writes ``<out>/report.html``. Held-out videos are named ``heldout000``, ... and training videos ``synth000``, ...

Folder layout (``out``): ``data/{train,eval}``, ``runs/{none,paper}`` (TensorBoard log + ``main_final.pth``,
no resumable checkpoints), ``results/{none,paper,copy_first_frame,empty_after_first_frame}`` (palette PNGs),
``figures/``, ``report.html``, ``demo.json`` (settings, scores, floors, figures and timings).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corrvos.demo.scores import FLOORS, ModelScores, score_results, write_floors
from corrvos.errors import DataError
from corrvos.families import NAMES
from corrvos.utils import atomic_write_text, make_output_dir

__all__ = [
    "DEMO_MARKER",
    "EVAL_PREFIX",
    "FLOORS",
    "DemoResult",
    "DemoSettings",
    "ModelScores",
    "environment",
    "run_demo",
]

DEMO_MARKER = "demo.json"
_OWNED = ("data", "runs", "results", "figures", "baseline", "report.html", DEMO_MARKER)
MODES = {"none": "L_SEG only", "paper": "L_SEG + L_PCL + L_OCL (paper)"}
EVAL_PREFIX = "heldout"  # held-out video names, never those of training videos (synth000, ...)


@dataclass
class DemoSettings:
    """What the demo runs. The defaults take under 7 minutes on 2 CPU cores (measured; see docs/visualisation.md)."""

    out: Path = Path("demo_out")
    arch: str = field(default_factory=lambda: NAMES[0])
    """The architecture trained (default: the family table's first family)."""
    steps: int = 900
    train_sequences: int = 24
    train_frames: int = 12
    eval_sequences: int = 6
    eval_frames: int = 24
    size: tuple[int, int] = (80, 96)
    seed: int = 0
    workers: int = 2
    train_jobs: int = 2
    compare_sequences: int = 2
    progress: bool = True


@dataclass
class DemoResult:
    """What the demo produced: ``scores`` of the models by loss mode, ``floors`` by name (:data:`FLOORS`),
    figure files by kind (relative to the demo folder) and ``facts`` the figures were drawn with."""

    settings: DemoSettings
    scores: dict[str, ModelScores]
    floors: dict[str, ModelScores] = field(default_factory=dict)
    figures: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def environment() -> dict[str, Any]:
    """What the demo's numbers depend on besides its settings: the corrvos commit (``None`` outside a git checkout;
    ``dirty`` when tracked files differ from it), versions, the machine and its cores. Recorded in ``demo.json``:
    the scores are deterministic for one machine and torch build, not across them."""
    import os
    import platform
    import subprocess

    import torch

    import corrvos

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    checkout = (here.parents[2] / ".git").exists()  # src/corrvos/demo -> the repository (not an installed copy)
    commit = git("rev-parse", "--short", "HEAD") if checkout else None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "corrvos": corrvos.__version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
    }


def _prepare_folder(out: Path) -> Path:
    """Create ``out``, or clear the outputs of an earlier demo there; refuse a folder with other contents."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file() and not (out / "data").is_dir():
            raise DataError(out, "folder is not empty and holds no earlier demo: choose a new or empty --out")
        for name in _OWNED:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return make_output_dir(out)


def _train(settings: DemoSettings, mode: str, train_root: Path, threads: int | None = None) -> tuple[Path, float]:
    """Train one run of the CPU recipe; (its ``main_final.pth``, seconds). ``threads``: torch intra-op threads."""
    import torch

    from corrvos.demo.recipes import cpu_train_config
    from corrvos.training.trainer import Trainer

    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    run_dir = settings.out / "runs" / mode
    cfg = cpu_train_config(
        settings.arch, mode, data_root=train_root, out_dir=run_dir, steps=settings.steps, seed=settings.seed
    )
    progress = settings.progress and threads is None  # no bars from processes running side by side
    result = Trainer(cfg, progress=progress).run()
    if not result.finished:
        raise RuntimeError(f"demo training ({mode}) stopped by {result.stopped_by}")
    return run_dir / "checkpoints" / "main_final.pth", time.perf_counter() - start


def _train_all(settings: DemoSettings, train_root: Path) -> dict[str, tuple[Path, float]]:
    """Both runs: side by side in ``settings.train_jobs`` processes of one thread each (on a 2-core machine two
    1-thread runs finish sooner than two 2-thread runs in a row), or one after the other."""
    if settings.train_jobs <= 1:
        out = {}
        for i, mode in enumerate(MODES):
            print(f"      run {i + 1} of {len(MODES)}: {MODES[mode]}")
            out[mode] = _train(settings, mode, train_root)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    print(f"      {len(MODES)} runs side by side ({', '.join(MODES.values())}), one thread each")
    with ProcessPoolExecutor(settings.train_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {mode: pool.submit(_train, settings, mode, train_root, 1) for mode in MODES}
        return {mode: future.result() for mode, future in futures.items()}


def _infer(checkpoint: Path, eval_root: Path, out: Path, progress: bool) -> None:
    """Segment the held-out split with a trained checkpoint (the library loop of ``corrvos infer``)."""
    from corrvos.data.davis import DavisDataset
    from corrvos.demo.recipes import CPU_INFER_SIZE
    from corrvos.inference.config import inference_config_for
    from corrvos.inference.split import segment_split
    from corrvos.models import load_model

    model = load_model(checkpoint)
    # the CPU recipe's size (None: the generated size, as trained; a family default could enlarge the frames)
    config = inference_config_for(model, internal_size=CPU_INFER_SIZE)
    segment_split(model, DavisDataset(eval_root, year="2017", split="val"), out, config=config, progress=progress)


def run_demo(settings: DemoSettings) -> DemoResult:
    """Run every step of the demo (see the module docstring) and return the scores and files written."""
    from corrvos.data.synthetic import generate_dataset

    out = _prepare_folder(Path(settings.out))
    settings.out = out
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    total = 5
    print(f"[1/{total}] generating the synthetic training and evaluation videos in {out / 'data'}")
    train_root = generate_dataset(
        out / "data" / "train",
        sequences=settings.train_sequences,
        frames=settings.train_frames,
        size=settings.size,
        seed=settings.seed,
        val_fraction=0.5 / settings.train_sequences,  # one video held out, the rest for training
        progress=settings.progress,
    )
    eval_root = generate_dataset(
        out / "data" / "eval",
        sequences=settings.eval_sequences + 1,
        frames=settings.eval_frames,
        size=settings.size,
        seed=settings.seed + 1,  # other videos than the training ones
        val_fraction=(settings.eval_sequences + 0.25) / (settings.eval_sequences + 1),
        progress=settings.progress,
        prefix=EVAL_PREFIX,
    )
    seconds["data"] = time.perf_counter() - start

    print(f"[2/{total}] training {settings.arch.upper()} twice ({settings.steps} steps each, the CPU recipe)")
    checkpoints: dict[str, Path] = {}
    for mode, (ckpt, train_seconds) in _train_all(settings, train_root).items():
        checkpoints[mode] = ckpt
        seconds[f"train_{mode}"] = train_seconds

    print(
        f"[3/{total}] segmenting the {settings.eval_sequences} evaluation videos with both models; writing the "
        f"floors ({', '.join(FLOORS.values())})"
    )
    t0 = time.perf_counter()
    for mode, ckpt in checkpoints.items():
        _infer(ckpt, eval_root, out / "results" / mode, settings.progress)
    floor_results = write_floors(eval_root, out / "results", settings.progress)
    seconds["infer"] = time.perf_counter() - t0

    print(f"[4/{total}] scoring all four with the DAVIS 2017 semi-supervised protocol, all and visible cells")
    t0 = time.perf_counter()
    results = {**{m: out / "results" / m for m in checkpoints}, **floor_results}
    rows = score_results(
        eval_root,
        results,
        {m: str(c) for m, c in checkpoints.items()},
        workers=settings.workers,
        progress=settings.progress,
    )
    scores = {m: rows[m] for m in checkpoints}
    floors = {f: rows[f] for f in floor_results}
    seconds["eval"] = time.perf_counter() - t0

    print(f"[5/{total}] drawing the figures and writing the report")
    t0 = time.perf_counter()
    from corrvos.demo.figures import draw_demo_figures
    from corrvos.demo.report import comparison_sentence, write_report

    result = DemoResult(settings=settings, scores=scores, floors=floors, seconds=seconds)
    result.figures, result.facts = draw_demo_figures(out, eval_root, checkpoints, scores, floors, settings)
    seconds["figures"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    result.report = write_report(out / "report.html", result)
    record = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "headline": "J&F on visible cells (scores[mode].visible.JF); all cells: global_scores['J&F-Mean']",
        "scores": {m: asdict(s) for m, s in scores.items()},
        "floors": {f: asdict(s) for f, s in floors.items()},
        "comparison": comparison_sentence(result),
        "figures": result.figures,
        "facts": result.facts,
        "seconds": seconds,
        "environment": environment(),
    }
    atomic_write_text(out / DEMO_MARKER, json.dumps(record, indent=2) + "\n")
    return result
