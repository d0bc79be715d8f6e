"""The trainer: parameter groups, optimiser, MultiStepLR, frozen BatchNorm, AMP, clipping, finite-loss check, stages.

``Trainer(cfg).run()`` trains the stages of a :class:`corrvos.config.TrainConfig` in order. Each stage builds a
fresh optimiser and lr schedule and counts its steps from 0 (the loss ramps use the stage step, as the release
does with ``--load_network``); a single-object stage followed by a multi-object one widens the value encoder's
first convolution with an orthogonally initialised "others" channel, as STCN's ``load_network`` does.

One step (rule 10 of the style guide: the task computes the loss, the trainer applies the step, hooks do the
side effects): task.step -> all processes agree the loss is finite (else the step is skipped everywhere, logged,
and training stops after ``optim.max_nonfinite`` in a row) -> backward (scaled for fp16) -> optional gradient
clipping -> optimiser and scheduler step -> hooks. Everything random in a step is seeded from (seed, stage, step,
rank), and the data order from (seed, stage, sample position), so a run resumed from a checkpoint continues
exactly (bit-identical weights on CPU; on CUDA with ``deterministic: true``).

Parameter groups (wenguanwang/VOS_Correspondence:model/model.py, :func:`corrvos.models.params.optimizer_groups`):
0 = key/value-encoder parameters outside layer2/layer3 (stem, layer1, the value encoder's fuser) at
``encoder_lr_scale`` x lr; 1 = encoder layer2 and layer3 at ``encoder_deep_lr_scale`` x lr; 2 = everything else
(key heads, decoder, projection head) at lr.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from corrvos.config import StageConfig, TrainConfig, config_to_dict, stage_loss_config
from corrvos.errors import ConfigError, CorrvosError
from corrvos.families import family_of
from corrvos.models.params import optimizer_groups
from corrvos.training import checkpoint as ckpt_io
from corrvos.training.data import build_stage_dataset, build_stage_loader
from corrvos.training.distributed import (
    DistInfo,
    all_reduce_flag,
    all_reduce_gradients,
    all_reduce_mean,
    any_process,
    init_distributed,
)
from corrvos.training.hooks import StepRecord, TrainHooks
from corrvos.training.model_setup import (
    build_network,
    build_projection_head,
    freeze_batchnorm,
    load_init_weights,
    resolve_amp,
    widen_to_multi_object,
)
from corrvos.training.run_control import StopSignals, check_run_folder
from corrvos.training.schedules import derive_seed, lr_factor
from corrvos.training.task import CorrespondenceTask, step_scalars
from corrvos.training.unroll import UnrollPolicy, build_unroller
from corrvos.utils import make_output_dir

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "freeze_batchnorm", "resolve_amp"]

logger = logging.getLogger(__name__)


def _build_scheduler(
    optimizer: torch.optim.Optimizer, stage: StageConfig, gamma: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """MultiStepLR over ``stage.lr_milestones``; with ``stage.lr_warmup`` a LambdaLR of the same milestones times
    the linear warm-up (:func:`~corrvos.training.schedules.lr_factor`)."""
    if stage.lr_warmup <= 0:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, stage.lr_milestones, gamma)
    milestones, warmup = list(stage.lr_milestones), stage.lr_warmup

    def factor(step: int) -> float:
        return lr_factor(step, warmup=warmup, milestones=milestones, gamma=gamma)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingDivergedError(CorrvosError, FloatingPointError):
    """Too many non-finite losses in a row."""


@dataclass
class TrainResult:
    """Where a :meth:`Trainer.run` call stopped.

    ``stopped_by`` is None when every stage finished, "max_steps" after ``run(max_steps=...)``, or the name of the
    signal ("SIGINT", "SIGTERM") that interrupted the run; ``checkpoint`` is the step checkpoint that holds the
    state where it stopped (``--resume`` continues exactly from it).
    """

    out_dir: Path
    stage: str
    step: int
    global_step: int
    finished: bool
    last_scalars: dict[str, float] = field(default_factory=dict)
    stopped_by: str | None = None
    checkpoint: Path | None = None


class Trainer:
    """Train the stages of ``cfg`` (see the module docstring).

    Args:
        cfg: the run's configuration.
        out_dir: run folder (default ``cfg.out_dir``): ``config.yaml``, ``tb/``, ``checkpoints/``.
        dist_info: from :func:`corrvos.training.distributed.init_distributed` (called here when None).
        resume: checkpoint file or run folder to continue from (its latest ``step_*.pth``).
        init_from: weights to start from (official or corrvos file; overrides ``cfg.model.init_checkpoint``).
        progress: show a progress bar on rank 0.
        overwrite: delete an earlier run's files (``config.yaml``, ``tb/``, ``checkpoints/``) from ``out_dir`` instead
            of refusing to start there; other files (e.g. a generated ``synthetic_data/``) are kept.
        callbacks: called as ``callback(trainer, record)`` after every step, after the hooks (e.g. scoring held-out
            videos with ``trainer.model`` during the run; :func:`corrvos.inference.split.eval_mode` restores the
            train/eval flags). A callback may call :meth:`request_stop`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        dist_info: DistInfo | None = None,
        resume: str | Path | None = None,
        init_from: str | Path | None = None,
        progress: bool = True,
        overwrite: bool = False,
        callbacks: Sequence[Callable[[Trainer, StepRecord], None]] = (),
    ) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self._stop_request: str | None = None
        self.overwrite = overwrite
        self._signals = StopSignals()
        self.out_dir = Path(out_dir if out_dir is not None else cfg.out_dir).expanduser()
        self.dist = dist_info if dist_info is not None else init_distributed(cfg.device)
        self.device = self.dist.device
        self.resume_path = ckpt_io.find_latest_checkpoint(resume) if resume is not None else None
        self.init_from = init_from if init_from is not None else cfg.model.init_checkpoint
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.progress = progress
        self.model: nn.Module | None = None
        self.proj_head: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.stage_index, self.step, self.global_step = 0, 0, 0
        self.hooks = TrainHooks(
            self.out_dir,
            enabled=self.dist.is_main,
            log_interval=cfg.log_interval,
            image_interval=cfg.image_interval,
            save_interval=cfg.save_interval,
            keep_checkpoints=cfg.keep_checkpoints,
            payload=self._payload,
            weights_only=cfg.weights_only_checkpoints,
            progress=progress,
        )

    # ------------------------------------------------------------------------------------------ model set-up
    def _build_model(self, single_object: bool, *, pretrained: bool = False) -> nn.Module:
        return build_network(self.cfg, single_object, pretrained=pretrained)

    def _ensure_proj_head(self, loss_cfg) -> None:
        if loss_cfg.uses_projection_head and self.proj_head is None:
            self.proj_head = build_projection_head(self.cfg, loss_cfg)

    # ------------------------------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict[str, Any]:
        from corrvos.models import arch_of

        stage = self.cfg.stages[self.stage_index]
        return {
            "arch": arch_of(self.model),
            "model_args": self.model.init_args(),
            "single_object": bool(self.model.single_object),
            "model": self.model.state_dict(),
            "extra": {"proj_head": self.proj_head.state_dict()} if self.proj_head is not None else {},
            "config": config_to_dict(self.cfg),
            "stage": stage.name,
            "stage_index": self.stage_index,
            "step": self.step,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": ckpt_io.scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": ckpt_io.capture_rng_state(),
        }

    def _restore(self) -> dict[str, Any] | None:
        if self.resume_path is None:
            return None
        ckpt = ckpt_io.load_checkpoint(self.resume_path)
        names = [s.name for s in self.cfg.stages]
        if ckpt["stage"] not in names or names.index(ckpt["stage"]) != ckpt.get("stage_index", -1):
            raise ConfigError(
                f"{self.resume_path}: stage {ckpt['stage']!r} does not match the configured stages {names}"
            )
        if ckpt["config"] != config_to_dict(self.cfg):
            logger.warning(
                "%s: the configuration differs from the checkpoint's; resuming with the new one", self.resume_path
            )
        self.stage_index, self.step, self.global_step = ckpt["stage_index"], ckpt["step"], ckpt["global_step"]
        self.model = self._build_model(single_object=bool(ckpt["single_object"]))
        self.model.load_state_dict(ckpt["model"], strict=True)
        if "proj_head" in ckpt.get("extra", {}):
            self._ensure_proj_head(stage_loss_config(self.cfg, self.cfg.stages[self.stage_index]))
            if self.proj_head is None:
                raise ConfigError(f"{self.resume_path}: has a projection head but the stage's loss uses none")
            self.proj_head.load_state_dict(ckpt["extra"]["proj_head"])
        ckpt_io.restore_rng_state(ckpt["rng"])
        logger.info("resuming %s at stage %r step %d", self.resume_path, ckpt["stage"], self.step)
        if self.step >= self.cfg.stages[self.stage_index].iterations:
            self.stage_index, self.step = self.stage_index + 1, 0
            return None
        return ckpt

    # ------------------------------------------------------------------------------------------ the run
    def run(self, *, max_steps: int | None = None) -> TrainResult:
        """Train until the last stage ends or ``max_steps`` steps were done by this call."""
        cfg = self.cfg
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # warn_only: an op without a deterministic CUDA kernel (e.g. grid_sample's backward in official mode)
            # warns instead of stopping the run; such a run is then not guaranteed to resume bit-exactly
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.manual_seed(derive_seed(cfg.seed, "global", self.dist.rank) & 0x7FFFFFFF)
        check_run_folder(
            self.out_dir, resuming=self.resume_path is not None, overwrite=self.overwrite, dist_info=self.dist
        )
        make_output_dir(self.out_dir)
        if self.dist.is_main:
            from corrvos.config import config_to_yaml
            from corrvos.utils import atomic_write_text

            atomic_write_text(self.out_dir / "config.yaml", config_to_yaml(cfg))
        resume_state = self._restore()
        if self.resume_path is not None:
            self.hooks.purge_step = self.global_step + 1  # events after the checkpoint belong to the stopped run
        if self.model is None:
            self.model = self._build_model(single_object=cfg.stages[0].single_object, pretrained=not self.init_from)
            if self.init_from:
                load_init_weights(cfg, self.model, self.init_from)
        done, last = 0, {}
        self.stopped_by = None
        try:
            with self._signals:
                while self.stage_index < len(cfg.stages):
                    stage = cfg.stages[self.stage_index]
                    if max_steps is not None and done >= max_steps:
                        self.stopped_by = self.stopped_by or "max_steps"
                    if self.stopped_by is not None:
                        return self._stopped(stage.name, last)
                    finished_stage, done, last = self._run_stage(stage, resume_state, done, max_steps)
                    resume_state = None
                    if not finished_stage:
                        return self._stopped(stage.name, last)
                    self.stage_index, self.step = self.stage_index + 1, 0
        finally:
            self.hooks.close()
        return TrainResult(self.out_dir, cfg.stages[-1].name, cfg.stages[-1].iterations, self.global_step, True, last)

    def _stopped(self, stage: str, last: dict[str, float]) -> TrainResult:
        checkpoint = self.out_dir / "checkpoints" / f"step_{self.global_step:07d}.pth"
        return TrainResult(
            self.out_dir,
            stage,
            self.step,
            self.global_step,
            False,
            last,
            stopped_by=self.stopped_by,
            checkpoint=checkpoint if checkpoint.is_file() else None,
        )

    def _setup_stage(self, stage: StageConfig, resume_state: dict[str, Any] | None):
        cfg = self.cfg
        if self.model.single_object and not stage.single_object:
            self.model = widen_to_multi_object(cfg, self.model)
        elif stage.single_object and not self.model.single_object:
            raise ConfigError(f"stage {stage.name!r} is single-object but the model is already multi-object")
        loss_cfg = stage_loss_config(cfg, stage)
        self._ensure_proj_head(loss_cfg)
        self.model.to(self.device)
        if self.proj_head is not None:
            self.proj_head.to(self.device)
        policy = UnrollPolicy(num_ref_frames=stage.data.num_ref_frames, deep_update_prob=cfg.model.deep_update_prob)
        unroller = build_unroller(self.model, policy=policy, second_view=loss_cfg.mode == "official")
        if self.dist.distributed:
            unroller = DistributedDataParallel(
                unroller,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
                find_unused_parameters=True,
            )
        extra = [self.proj_head] if self.proj_head is not None else []
        owner = family_of(self.model)
        groups = optimizer_groups(
            self.model,
            extra,
            lr=stage.lr,
            encoder_scale=cfg.optim.encoder_lr_scale,
            deep_scale=cfg.optim.encoder_deep_lr_scale,
            encoders=owner.encoders,
            deep_layers=owner.encoder_deep_layers,
            no_decay=owner.no_decay,
        )
        opt_cls = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(groups, lr=stage.lr, weight_decay=cfg.optim.weight_decay, eps=cfg.optim.eps)
        self.scheduler = _build_scheduler(self.optimizer, stage, cfg.optim.gamma)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        if resume_state is not None:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            ckpt_io.load_scheduler_state(self.scheduler, resume_state["scheduler"])
            if self.scaler is not None and resume_state.get("scaler"):
                self.scaler.load_state_dict(resume_state["scaler"])
        task = CorrespondenceTask(
            unroller,
            loss_cfg,
            proj_head=self.proj_head,
            amp_dtype=self.amp_dtype,
            segmentation=owner.segmentation_loss,
        )
        dataset = build_stage_dataset(cfg, stage, out_dir=self.out_dir, dist_info=self.dist)
        finetune = None
        if stage.data.finetune_iterations > 0:
            finetune = build_stage_dataset(cfg, stage, out_dir=self.out_dir, dist_info=self.dist, finetune=True)
        loader = build_stage_loader(
            dataset, cfg=cfg, stage=stage, dist_info=self.dist, start_step=self.step, finetune_dataset=finetune
        )
        return unroller, task, loader

    def _params(self) -> list[nn.Parameter]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return params

    def _sync_extra_grads(self) -> None:
        """All-reduce (mean) the gradients of the modules DDP does not wrap (the projection head)."""
        if self.proj_head is not None:
            all_reduce_gradients(list(self.proj_head.parameters()), self.dist)

    def _run_stage(self, stage: StageConfig, resume_state, done: int, max_steps: int | None):
        cfg = self.cfg
        unroller, task, loader = self._setup_stage(stage, resume_state)
        unroller.train()
        if cfg.optim.freeze_bn:
            freeze_batchnorm(unroller)
        if self.proj_head is not None:
            self.proj_head.train()
        self.hooks.before_stage(stage.name, self.step, stage.iterations, self.global_step)
        nonfinite, last = 0, {}
        for batch in loader:
            batch = batch.to(self.device, non_blocking=True)
            seed = derive_seed(cfg.seed, stage.name, self.step, self.dist.rank)
            result = task.step(batch, step=self.step, seed=seed)
            loss = result["loss"]
            finite = all_reduce_flag(bool(torch.isfinite(loss).item()), self.dist)
            self.optimizer.zero_grad(set_to_none=True)
            # the learning rates this step trains with (read before the scheduler moves to the next step's)
            scalars: dict[str, float] = {
                f"lr/{group.get('name', 'group')}": float(group["lr"]) for group in self.optimizer.param_groups
            }
            if finite:
                nonfinite = 0
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                self._sync_extra_grads()
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(self._params(), max_norm)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                scalars["grad_norm"] = float(grad_norm)
            else:
                nonfinite += 1
                logger.warning(
                    "stage %r step %d: non-finite loss (%s), step skipped (%d in a row)",
                    stage.name,
                    self.step,
                    float(loss.detach()),
                    nonfinite,
                )
                if nonfinite >= cfg.optim.max_nonfinite:
                    raise TrainingDivergedError(
                        f"stage {stage.name!r} step {self.step}: {nonfinite} non-finite losses in a row; lower the "
                        f"learning rate, enable optim.grad_clip or resume from an earlier checkpoint"
                    )
            with warnings.catch_warnings():  # a skipped step still advances the schedule (as a skipped fp16 step)
                warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                self.scheduler.step()
            self.step += 1
            self.global_step += 1
            done += 1
            scalars.update(step_scalars(result, batch, finite))
            self.hooks.accumulate(scalars)
            record = StepRecord(stage.name, self.step, self.global_step, stage_done=self.step == stage.iterations)
            if self.hooks.is_log_step(self.global_step) or record.stage_done:
                record.scalars = all_reduce_mean(self.hooks.interval_means(), self.dist)
                last = record.scalars
            if self.hooks.is_image_step(self.global_step):
                record.frames, record.labels = batch.frames[0], batch.labels[0]
                record.logits = result["outputs"].logits[0]
            self.hooks.after_step(record)
            for callback in self.callbacks:
                callback(self, record)
            if self._should_stop(done, max_steps) and not record.stage_done:
                self._save_stop_checkpoint()
                return False, done, last
        self.hooks.save(self.global_step, final=True, stage=stage.name)
        self.hooks.after_stage()
        return True, done, last

    def _should_stop(self, done: int, max_steps: int | None) -> bool:
        """Whether to stop after this step: ``max_steps`` reached, or a signal on any process (all agree)."""
        if any_process(self._signals.received is not None, self.dist):
            self.stopped_by = self._signals.received or "a signal on another process"
        elif any_process(self._stop_request is not None, self.dist):
            self.stopped_by = self._stop_request or "a callback on another process"
        elif max_steps is not None and done >= max_steps:
            self.stopped_by = "max_steps"
        return self.stopped_by is not None

    def request_stop(self, reason: str = "callback") -> None:
        """Stop after the current step, as ``--max-steps`` does (the step's checkpoint is written)."""
        self._stop_request = reason

    def _save_stop_checkpoint(self) -> None:
        """The scalars since the last log, then the checkpoint of the step just done (unless the periodic save of
        this step already wrote it)."""
        if self.hooks.pending():  # every rank agrees: all accumulate every step
            self.hooks.log_scalars(self.global_step, all_reduce_mean(self.hooks.interval_means(), self.dist))
        if not (self.out_dir / "checkpoints" / f"step_{self.global_step:07d}.pth").is_file():
            self.hooks.save(self.global_step, final=False)
