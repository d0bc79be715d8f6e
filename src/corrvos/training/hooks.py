"""Side effects of training, on rank 0 only: TensorBoard scalars and image panels, the progress bar, checkpoints.

The trainer computes and applies steps; after each step it hands a :class:`StepRecord` to :class:`TrainHooks`.
Scalars are averaged over the log interval (and, by the trainer, over processes) and written under ``train/``:
every loss term, the total loss, the learning rate of each parameter group, the foreground IoU, the gradient
norm, seconds per step and the count of skipped (non-finite) steps. Image panels show, for the first clip of the
batch, the frames, the ground truth and the prediction as colour overlays.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from corrvos.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from corrvos.training.checkpoint import save_checkpoint

__all__ = ["StepRecord", "TrainHooks", "clip_panel", "payload_megabytes", "weights_of"]

logger = logging.getLogger(__name__)

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)


@dataclass
class StepRecord:
    """What the trainer reports after one step."""

    stage: str
    step: int
    """Steps done in the stage (after this one)."""
    global_step: int
    scalars: dict[str, float] = field(default_factory=dict)
    """Per-step scalars (loss terms, lr, IoU, ...), already averaged over processes at log steps."""
    stage_done: bool = False
    """This step ended the stage (the trainer then writes the stage-final checkpoint itself)."""
    frames: Tensor | None = None
    """[T, 3, H, W] normalised frames of clip 0 (only on image steps)."""
    labels: Tensor | None = None
    """[T, H, W] ground-truth class map of clip 0."""
    logits: Tensor | None = None
    """[T-1, N+1, H, W] predicted logits of clip 0."""


def clip_panel(frames: Tensor, labels: Tensor, logits: Tensor) -> np.ndarray:
    """Image panel of one clip: rows = frames, ground truth overlay, prediction overlay (frame 0: GT).

    Args:
        frames: [T, 3, H, W] ImageNet-normalised frames.
        labels: [T, H, W] ground-truth class map.
        logits: [T-1, N+1, H, W] predictions of frames 1..T-1.

    Returns:
        [3, 3H, T*W] uint8 CHW image for TensorBoard.
    """
    from corrvos.visualize.overlay import overlay

    rgb = frames.detach().float().cpu().permute(0, 2, 3, 1).numpy()  # [T, H, W, 3]
    rgb = np.clip((rgb * _STD + _MEAN) * 255.0, 0, 255).astype(np.uint8)
    gt = labels.detach().cpu().numpy().astype(np.int64)  # [T, H, W]
    pred = np.concatenate([gt[:1], logits.detach().float().argmax(dim=1).cpu().numpy()])  # [T, H, W]
    rows = [
        np.concatenate(list(rgb), axis=1),  # [H, T*W, 3]
        np.concatenate([overlay(r, g, contour=False) for r, g in zip(rgb, gt, strict=True)], axis=1),
        np.concatenate([overlay(r, p, contour=False) for r, p in zip(rgb, pred, strict=True)], axis=1),
    ]
    return np.ascontiguousarray(np.concatenate(rows, axis=0).transpose(2, 0, 1))  # [3, 3H, T*W]


def weights_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The model part of a checkpoint payload (what ``<stage>_final.pth`` holds): loadable as ``--model``."""
    kept = ("arch", "model_args", "single_object", "model", "config", "stage", "step", "global_step")
    weights = {k: payload[k] for k in kept if k in payload}
    head = payload.get("extra", {}).get("proj_head")
    if head is not None:  # L_OCL's trained PROJ (small), for `corrvos visualize matches`
        weights["extra"] = {"proj_head": head}
    return weights


def payload_megabytes(payload: Any) -> float:
    """Bytes of the tensors in a (nested) checkpoint payload, in MB (1e6 bytes): about its size on disk."""
    if isinstance(payload, Tensor):
        return payload.numel() * payload.element_size() / 1e6
    if isinstance(payload, dict):
        return sum(payload_megabytes(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(payload_megabytes(v) for v in payload)
    return 0.0


class TrainHooks:
    """Logging, progress and checkpointing; every method is a no-op on ranks other than 0.

    Args:
        out_dir: run folder (``tb/`` and ``checkpoints/`` are created in it).
        enabled: True on rank 0.
        log_interval, image_interval, save_interval: in steps (global step counter).
        keep_checkpoints: periodic checkpoints kept (those written by this process; stage ends are kept); 0 writes
            no resumable checkpoint except when a run is stopped (SIGINT / SIGTERM / --max-steps): stage ends then
            leave only the ``<stage>_final.pth`` weights.
        payload: callable returning the checkpoint dict (from the trainer).
        weights_only: every checkpoint holds the weights and the position only (no optimiser, scheduler or RNG
            states: about a third of the size, loadable as ``--model`` but not resumable).
        progress: show progress (a bar on a terminal, plain lines in a log: :mod:`corrvos.progress`).
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        enabled: bool,
        log_interval: int,
        image_interval: int,
        save_interval: int,
        keep_checkpoints: int,
        payload: Callable[[], dict[str, Any]],
        weights_only: bool = False,
        progress: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.log_interval, self.image_interval = log_interval, image_interval
        self.save_interval, self.keep = save_interval, keep_checkpoints
        self.purge_step: int | None = None
        """Set by the trainer when resuming: TensorBoard events at or after this global step are discarded."""
        self.payload = payload
        self.weights_only = weights_only
        self.progress = progress
        self._writer = None
        self._bar = None
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._periodic: list[Path] = []
        self._last_time = time.perf_counter()
        self._last_logged = 0

    # -- queries the trainer uses to decide what to gather ------------------------------------------------
    def is_log_step(self, global_step: int) -> bool:
        """Every ``log_interval`` steps, and step 1 (a short run has curves and a ``tb/`` folder too)."""
        return global_step % self.log_interval == 0 or global_step == 1

    def pending(self) -> bool:
        """Scalars were accumulated since the last log (the same answer on every rank)."""
        return bool(self._counts)

    def is_image_step(self, global_step: int) -> bool:
        return self.image_interval > 0 and global_step % self.image_interval == 0

    def is_save_step(self, global_step: int) -> bool:
        return self.keep > 0 and global_step % self.save_interval == 0

    # -- life cycle -----------------------------------------------------------------------------------------
    def _tb(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run drops the events the stopped run logged after its checkpoint, so curves do not overlap
            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=self.purge_step)
        return self._writer

    def before_stage(self, stage: str, start_step: int, iterations: int, global_step: int) -> None:
        if not self.enabled:
            return
        logger.info("stage %r: steps %d..%d", stage, start_step, iterations)
        if self.progress:
            from corrvos.progress import progress_bar

            self._bar = progress_bar(total=iterations, initial=start_step, desc=f"train[{stage}]", dynamic_ncols=True)
        self._last_time = time.perf_counter()
        self._last_logged = global_step

    def accumulate(self, scalars: dict[str, float]) -> None:
        """Add one step's local scalars to the running sums (every rank calls it; cheap)."""
        for key, value in scalars.items():
            self._sums[key] += value
            self._counts[key] += 1

    def interval_means(self) -> dict[str, float]:
        """Means over the steps since the last log, then reset (called on every rank at log steps)."""
        means = {k: v / self._counts[k] for k, v in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return means

    def after_step(self, record: StepRecord) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
        g = record.global_step
        if record.scalars:
            self.log_scalars(g, record.scalars)
        if record.frames is not None and record.labels is not None and record.logits is not None:
            panel = clip_panel(record.frames, record.labels, record.logits)
            self._tb().add_image(f"train/{record.stage}/clip", panel, g, dataformats="CHW")
        if self.is_save_step(g) and not record.stage_done:
            self.save(g, final=False)

    def log_scalars(self, global_step: int, scalars: dict[str, float]) -> None:
        """Write interval means under ``train/`` (and the seconds per step since the last log)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        writer = self._tb()
        for key, value in scalars.items():
            writer.add_scalar(f"train/{key}", value, global_step)
        steps = max(global_step - self._last_logged, 1)
        writer.add_scalar("train/seconds_per_step", (now - self._last_time) / steps, global_step)
        self._last_time, self._last_logged = now, global_step
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{scalars.get('loss', float('nan')):.4f}", iou=f"{scalars.get('iou', float('nan')):.3f}"
            )

    def _write(self, path: Path, payload: dict[str, Any]) -> Path:
        """Report the size (a stop of a full-size STCN run writes about 650 MB), then save atomically."""
        total, weights = payload_megabytes(payload), payload_megabytes(weights_of(payload))
        hint = ""
        if total - weights > 1:
            hint = (
                f": weights {weights:.0f} MB, optimiser and other state {total - weights:.0f} MB "
                f"(`--weights-only` / weights_only_checkpoints: true writes the weights only, not resumable)"
            )
        logger.info("writing %s (about %.0f MB%s)", path, total, hint)
        return save_checkpoint(path, payload)

    def save(self, global_step: int, *, final: bool, stage: str | None = None) -> Path | None:
        """Write ``checkpoints/step_<global_step>.pth`` (and ``<stage>_final.pth`` weights at stage ends)."""
        if not self.enabled:
            return None
        folder = self.out_dir / "checkpoints"
        payload = self.payload()
        if self.weights_only:
            payload = weights_of(payload)
        # keep_checkpoints 0 or weights only: at stage ends only <stage>_final.pth (a stop still writes a step file)
        skip_step = final and (self.keep == 0 or self.weights_only)
        path = None if skip_step else self._write(folder / f"step_{global_step:07d}.pth", payload)
        if final:
            final_path = self._write(folder / f"{stage}_final.pth", weights_of(payload))
            path = path or final_path
        elif self.keep > 0 and path not in self._periodic:
            self._periodic.append(path)
            while len(self._periodic) > self.keep:
                old = self._periodic.pop(0)
                old.unlink(missing_ok=True)
        logger.info("saved %s", path)
        return path

    def after_stage(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.after_stage()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
