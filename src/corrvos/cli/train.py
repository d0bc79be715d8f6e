"""`corrvos train`: train STCN (optionally with the correspondence losses) from a YAML experiment file.

Thin layer over :class:`corrvos.training.trainer.Trainer`: parse options -> :func:`corrvos.config.load_config`
-> ``init_distributed`` -> ``Trainer.run``. Works as a single process or under torchrun (one process per GPU, or
several gloo processes on CPU); the configured batch sizes are global.
"""

from __future__ import annotations

import argparse

from corrvos.devices import device_option

HELP = "train a model from a YAML config (stages, losses, data); resumable, torchrun-ready"
DESCRIPTION = """Train STCN / STCN+correspondence from a YAML experiment file (overrides of the defaults).

examples:
  corrvos train --config configs/synthetic_demo.yaml --out runs/demo
  corrvos train --config configs/stcn_corr_official.yaml --data-root /data --set stages.main.iterations=1000
  corrvos train --resume runs/demo                      # continue from the latest checkpoint of the run
  corrvos train --config finetune.yaml --init-from stcn_s03.pth     # fine-tune official weights
  torchrun --standalone --nproc_per_node 2 $(which corrvos) train --config configs/stcn.yaml  # global batch

--set KEY=VALUE overrides any field (dotted path; stages by name or index), e.g.
  --set stages.main.batch_size=8 --set loss.mode=none --set optim.grad_clip=1.0 --set amp=off
"""


EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
"""Exit status of a run stopped by a signal (128 + the signal number, as shells report it); 0 otherwise."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from corrvos.cpu_threads import add_threads_argument
    from corrvos.families import checkpoint_sources

    parser.add_argument("--config", metavar="FILE", help="YAML experiment file (overrides of the defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field (repeatable), e.g. stages.main.lr=1e-5",
    )
    parser.add_argument(
        "--resume",
        metavar="CKPT_OR_RUN",
        help="continue a run from a checkpoint file or a run folder (its latest step_*.pth); "
        "without --config the checkpoint's own configuration is used",
    )
    parser.add_argument(
        "--init-from",
        metavar="CKPT",
        help=f"start from these weights (official {checkpoint_sources()} file or a corrvos checkpoint, or a weight "
        "name listed by `corrvos download --list`): fine-tuning",
    )
    parser.add_argument(
        "--stages",
        metavar="NAMES",
        help="run only these stages of the config, comma-separated in config order, e.g. 'main' to fine-tune "
        "official weights (--init-from FILE) without the static pre-training",
    )
    parser.add_argument("--out", metavar="DIR", help="run folder (default: out_dir of the config)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a folder that holds an earlier one, deleting that run's config.yaml, tb/ and "
        "checkpoints/ (other files are kept); without it such a folder is refused",
    )
    parser.add_argument("--data-root", metavar="DIR", help="root of the dataset folders (default: $CORRVOS_DATA)")
    parser.add_argument(
        "--device", type=device_option, help="auto, cpu, cuda or cuda:K (default: the config's, 'auto')"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="stop after N steps of this invocation, writing a checkpoint of that step (SIGINT / SIGTERM do too, "
        "exiting with 130 / 143)",
    )
    parser.add_argument(
        "--weights-only",
        action="store_true",
        help="checkpoints (periodic, stage ends, stops) hold the weights only, about a third of the size (a full-size "
        "step file is about 650 MB): usable as --model and --init-from, not by --resume "
        "(= --set weights_only_checkpoints=true)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threads_argument(parser)


def _resolve_config(args: argparse.Namespace):
    from pathlib import Path

    from corrvos.config import apply_overrides, config_from_dict, config_to_dict, load_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    if args.device:
        overrides.append(f"device={args.device}")
    if args.init_from:
        overrides.append(f"model.init_checkpoint={args.init_from}")
    if args.weights_only:
        overrides.append("weights_only_checkpoints=true")
    if args.config or not args.resume:
        return _select_stages(load_config(args.config, overrides), args.stages)
    from corrvos.training.checkpoint import find_latest_checkpoint, load_checkpoint

    path = find_latest_checkpoint(args.resume)
    cfg = config_from_dict(load_checkpoint(path)["config"], source=str(path))
    if not args.out:
        run_dir = Path(args.resume) if Path(args.resume).is_dir() else path.parent.parent
        overrides.append(f"out_dir={run_dir}")
    if overrides:
        cfg = config_from_dict(apply_overrides(config_to_dict(cfg), overrides), source=f"{path} + --set")
    return _select_stages(cfg, args.stages)


def _select_stages(cfg, names: str | None):
    """``cfg`` with only the named stages (config order kept); ConfigError for an unknown name."""
    if not names:
        return cfg
    from corrvos.config import config_from_dict, config_to_dict
    from corrvos.errors import ConfigError

    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [s.name for s in cfg.stages]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise ConfigError(f"--stages {names!r}: unknown stage(s) {unknown}; the config has {known}")
    data = config_to_dict(cfg)
    data["stages"] = [s for s in data["stages"] if s["name"] in wanted]
    return config_from_dict(data, source=f"--stages {names}")


def run(args: argparse.Namespace) -> int:
    import logging

    from corrvos.config import config_to_yaml
    from corrvos.errors import ConfigError

    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError("--max-steps must be >= 1")
    cfg = _resolve_config(args)
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0

    from corrvos.cpu_threads import configure_threads
    from corrvos.training.distributed import init_distributed, shutdown_distributed
    from corrvos.training.preflight import check_training_inputs
    from corrvos.training.trainer import Trainer

    check_training_inputs(cfg, resuming=args.resume is not None)
    configure_threads(args.threads, workers=cfg.num_workers)  # each DataLoader worker keeps one core busy

    dist_info = init_distributed(cfg.device)
    if not dist_info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        trainer = Trainer(
            cfg, dist_info=dist_info, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite
        )
        result = trainer.run(max_steps=args.max_steps)
    finally:
        shutdown_distributed(dist_info)
    if dist_info.is_main:
        where = f"at stage {result.stage!r} step {result.step} (global step {result.global_step})"
        if result.finished:
            final = result.out_dir / "checkpoints" / f"{result.stage}_final.pth"
            print(f"finished {where}; run folder {result.out_dir}; weights for infer / segment: --model {final}")
        else:
            how = "stopped (--max-steps)" if result.stopped_by == "max_steps" else f"interrupted by {result.stopped_by}"
            saved = f"checkpoint {result.checkpoint}; " if result.checkpoint is not None else ""
            if cfg.weights_only_checkpoints:
                print(f"{how} {where}; {saved}weights only (--weights-only): a new run can start from it (--init-from)")
            else:
                print(f"{how} {where}; {saved}continue with: corrvos train --resume {result.out_dir}")
            if result.checkpoint is not None:  # a step file is a model file too
                print(f"its weights for infer / segment / visualize: --model {result.checkpoint}")
    return EXIT_CODES.get(result.stopped_by, 0)
