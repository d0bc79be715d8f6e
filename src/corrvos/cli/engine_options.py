"""Options shared by ``corrvos infer`` and ``corrvos segment``: the inference engine, device and checkpoint.

``add_engine_arguments`` declares them (defaults: the official values of the checkpoint's model family),
``check_engine_arguments`` validates them before any slow work, ``engine_config`` turns them into an
:class:`~corrvos.inference.config.InferenceConfig` and ``load_inference_model`` loads the checkpoint.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_engine_arguments", "check_amp", "check_engine_arguments", "engine_config", "load_inference_model"]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the inference engine shared by ``infer`` and ``segment`` (defaults: the model family's)."""
    from corrvos.cpu_threads import add_threads_argument
    from corrvos.families import option_defaults as d
    from corrvos.families import option_users as u
    from corrvos.families import titles

    g = parser.add_argument_group(
        f"memory options (defaults: the official ones of the checkpoint's model family, {titles()}; an option "
        "applies to the families named in its help)"
    )
    g.add_argument(
        "--top-k",
        type=int,
        default=None,
        help=f"k of the top-k softmax: memory positions each query position reads ({d('top_k')})",
    )
    g.add_argument(
        "--mem-every",
        type=int,
        default=None,
        help=f"r: a memory frame every r frames ({d('mem_every')}; on long videos 10 is common; larger is faster)",
    )
    g.add_argument(
        "--include-last",
        action="store_true",
        help=f"{u('include_last')}: keep the previous frame as a temporary memory entry",
    )
    g.add_argument(
        "--deep-update-every",
        type=int,
        default=None,
        help=f"{u('deep_update_every')}: renew the sensory memory with the value encoder (deep update) every N "
        "frames; -1 (default) does it on every memory frame",
    )
    g.add_argument(
        "--disable-long-term",
        action="store_true",
        help=f"{u('enable_long_term')}: keep every memory frame in working memory (no consolidation into "
        "long-term memory; memory then grows with the video)",
    )
    g.add_argument(
        "--min-mid-term-frames",
        type=int,
        default=None,
        help=f"T_min, working-memory frames kept after a consolidation ({d('min_mid_term_frames')})",
    )
    g.add_argument(
        "--max-mid-term-frames",
        type=int,
        default=None,
        help=f"T_max, working-memory frames that trigger a consolidation ({d('max_mid_term_frames')}; lower saves "
        "memory)",
    )
    g.add_argument(
        "--num-prototypes",
        type=int,
        default=None,
        help=f"P, long-term prototypes made per consolidation ({d('num_prototypes')})",
    )
    g.add_argument(
        "--max-long-term-elements",
        type=int,
        default=None,
        help=f"LT_max, long-term elements kept before the least-used are dropped ({d('max_long_term_elements')}; "
        "raise it if objects disappear for a long time)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast (CUDA only)")
    parser.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold the BatchNorm layers into the convolutions (58 fewer kernels per frame; no "
        "speed gain beyond noise measured on CPU); outputs equal to float rounding, not "
        "bit-comparable with the official code, so off by default",
    )
    add_threads_argument(parser)


def engine_config(
    args: argparse.Namespace,
    model: Any,
    *,
    default_size: int | None = None,
    frame_size: tuple[int, int] | None = None,
) -> Any:
    """The :class:`~corrvos.inference.config.InferenceConfig` of the command line for ``model``'s family.

    ``--size`` (when the command has it): a positive value sets the shorter side, -1 keeps the frames' size, unset
    keeps the family default (its ``internal_size``) or else ``default_size``. With ``frame_size`` (H, W) given and no
    ``--upsample``, a video whose shorter side is below that size keeps its own size (never enlarged).
    Raises ConfigError naming a bad option.
    """
    import dataclasses

    from corrvos.errors import ConfigError
    from corrvos.inference.config import inference_config_for
    from corrvos.inference.memory_store import make_memory

    size = getattr(args, "size", None)
    overrides: dict[str, Any] = {
        "top_k": args.top_k,
        "mem_every": args.mem_every,
        "include_last": True if args.include_last else None,
        "deep_update_every": args.deep_update_every,
        "enable_long_term": False if args.disable_long_term else None,
        "min_mid_term_frames": args.min_mid_term_frames,
        "max_mid_term_frames": args.max_mid_term_frames,
        "num_prototypes": args.num_prototypes,
        "max_long_term_elements": args.max_long_term_elements,
        "amp": args.amp,
    }
    try:
        config = inference_config_for(model, **{k: v for k, v in overrides.items() if v is not None})
        if size is not None:
            config = dataclasses.replace(config, internal_size=size if size > 0 else None)
        elif config.internal_size is None and default_size is not None:
            config = dataclasses.replace(config, internal_size=default_size)
        if (
            frame_size is not None
            and config.internal_size is not None
            and min(frame_size) < config.internal_size
            and not getattr(args, "upsample", False)
        ):
            config = dataclasses.replace(config, internal_size=None)  # smaller than --size: keep, never enlarge
        make_memory(model, config)  # options the model's memory refuses
    except ValueError as exc:
        raise ConfigError(f"bad inference option: {exc}") from exc
    return config


def check_engine_arguments(args: argparse.Namespace) -> None:
    """Validate the shared engine options before any slow work (ConfigError naming the option)."""
    from corrvos.errors import ConfigError

    for name in (
        "top_k",
        "mem_every",
        "min_mid_term_frames",
        "max_mid_term_frames",
        "num_prototypes",
        "max_long_term_elements",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    size = getattr(args, "size", None)
    if size is not None and size != -1 and size < 16:
        raise ConfigError(
            f"--size must be a shorter side of at least 16 pixels, or -1 to keep the frame size; got {size}"
        )
    if args.deep_update_every is not None and (args.deep_update_every == 0 or args.deep_update_every < -1):
        raise ConfigError(f"--deep-update-every must be -1 or >= 1, got {args.deep_update_every}")


def load_inference_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Threads, device, AMP check, checkpoint loading (and ``--fold-bn``) for ``infer`` / ``segment``: (model,
    device)."""
    from corrvos.cpu_threads import configure_threads
    from corrvos.devices import resolve_device
    from corrvos.models import load_model
    from corrvos.models.fuse import fold_batchnorm

    configure_threads(args.threads)
    device = resolve_device(args.device, option="--device")
    check_amp(args.amp, device)
    model = load_model(args.model, map_location=device)
    if args.fold_bn:
        fold_batchnorm(model)
    return model.eval(), device


def check_amp(amp: str, device: Any) -> None:
    from corrvos.errors import ConfigError

    if amp != "none" and device.type != "cuda":
        raise ConfigError(f"--amp {amp}: autocast is only supported on CUDA (device is {device})")
