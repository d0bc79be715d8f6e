"""Options shared by ``corrvos infer`` and ``corrvos segment``: the inference engine, device and checkpoint.

``add_engine_arguments`` declares them (defaults: the official values of the checkpoint's model family),
``check_engine_arguments`` validates them before any slow work, ``engine_config`` turns them into an
:class:`~corrvos.inference.config.InferenceConfig` and ``load_inference_model`` loads the checkpoint.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = [
    "ENGINE_SETTINGS",
    "add_engine_arguments",
    "check_amp",
    "check_engine_arguments",
    "check_paths_early",
    "engine_config",
    "load_inference_model",
    "skip_done_command",
]

#: the engine options' argparse names, e.g. for recording the settings a result was made with
ENGINE_SETTINGS = (
    *("preset", "top_k", "mem_every", "include_last", "deep_update_every", "disable_long_term", "enable_long_term"),
    *("min_mid_term_frames", "max_mid_term_frames", "num_prototypes", "max_long_term_elements", "long_term_buffer"),
    *("max_mem_frames", "stagger_updates", "chunk_size", "flip_aug", "amp", "fold_bn"),
)
_POSITIVE = (
    *("top_k", "mem_every", "min_mid_term_frames", "max_mid_term_frames", "num_prototypes", "max_long_term_elements"),
    *("max_mem_frames", "stagger_updates"),
)


def _flag(option: str) -> str:
    """The command-line flag of an ``InferenceConfig`` field (``internal_size`` is ``--size``)."""
    return "size" if option == "internal_size" else option.replace("_", "-")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the inference engine shared by ``infer`` and ``segment`` (defaults: the model family's)."""
    from corrvos.cpu_threads import add_threads_argument
    from corrvos.devices import device_option
    from corrvos.families import option_defaults as d
    from corrvos.families import option_users as u
    from corrvos.families import presets, titles

    g = parser.add_argument_group(
        f"memory options (defaults: the official ones of the checkpoint's model family, {titles()}; an option "
        "applies to the families named in its help)"
    )
    named = presets()
    g.add_argument(
        "--preset",
        choices=sorted({name for by_family in named.values() for name in by_family}) or None,
        default=None,
        help="a named set of the options below, under any option given explicitly: "
        + "; ".join(
            f"{name} ({family}): " + " ".join(f"--{_flag(k)} {v}" for k, v in values.items())
            for family, by_family in named.items()
            for name, values in by_family.items()
        ),
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
    long_term = g.add_mutually_exclusive_group()
    long_term.add_argument(
        "--disable-long-term",
        action="store_true",
        help=f"{u('enable_long_term')}: no long-term memory (the working memory then keeps every memory frame and "
        "grows with the video, or keeps the last --max-mem-frames where that option applies)",
    )
    long_term.add_argument(
        "--enable-long-term",
        action="store_true",
        help=f"{u('enable_long_term')}: consolidate working memory into long-term memory (defaults: "
        f"{d('enable_long_term')}; for long videos such as LVOS and BURST)",
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
    g.add_argument(
        "--long-term-buffer",
        type=int,
        default=None,
        help=f"{u('long_term_buffer')}: a long-term eviction keeps LT_max - P - this many elements "
        f"({d('long_term_buffer')})",
    )
    g.add_argument(
        "--max-mem-frames",
        type=int,
        default=None,
        help=f"{u('max_mem_frames')}: memory frames kept without long-term memory, the permanent first one "
        f"included ({d('max_mem_frames')}; the plus preset uses 10)",
    )
    g.add_argument(
        "--stagger-updates",
        type=int,
        default=None,
        help=f"{u('stagger_updates')}: sensory-memory updates by the decoder per --mem-every frames "
        f"({d('stagger_updates')})",
    )
    g.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help=f"{u('chunk_size')}: objects processed at a time (-1: all at once; {d('chunk_size')}); smaller "
        "bounds the GPU memory of videos with many objects",
    )
    g.add_argument(
        "--flip-aug",
        action="store_true",
        help=f"{u('flip_aug')}: also segment the mirror image (a second memory) and average the two; about twice "
        "the time",
    )
    parser.add_argument(
        "--device",
        default="auto",
        type=device_option,
        help="auto (cuda if available, the default), cpu, cuda or cuda:K",
    )
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
    from corrvos.families import preset_options
    from corrvos.inference.config import inference_config_for
    from corrvos.inference.memory_store import make_memory, make_recurrence

    size = getattr(args, "size", None)
    overrides: dict[str, Any] = {
        "top_k": args.top_k,
        "mem_every": args.mem_every,
        "include_last": True if args.include_last else None,
        "deep_update_every": args.deep_update_every,
        "enable_long_term": False if args.disable_long_term else True if args.enable_long_term else None,
        "min_mid_term_frames": args.min_mid_term_frames,
        "max_mid_term_frames": args.max_mid_term_frames,
        "num_prototypes": args.num_prototypes,
        "max_long_term_elements": args.max_long_term_elements,
        "long_term_buffer": args.long_term_buffer,
        "max_mem_frames": args.max_mem_frames,
        "stagger_updates": args.stagger_updates,
        "chunk_size": args.chunk_size,
        "flip_aug": True if args.flip_aug else None,
        "amp": args.amp,
    }
    try:
        preset = {} if args.preset is None else preset_options(model, args.preset)
        if size is None and "internal_size" in preset:
            size = preset.pop("internal_size")
        config = inference_config_for(model, **(preset | {k: v for k, v in overrides.items() if v is not None}))
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
        make_recurrence(model, config, make_memory(model, config))  # options the model's family refuses
    except ValueError as exc:
        raise ConfigError(f"bad inference option: {exc}") from exc
    return config


def check_engine_arguments(args: argparse.Namespace) -> None:
    """Validate the shared engine options before any slow work (ConfigError naming the option)."""
    from corrvos.errors import ConfigError

    for name in _POSITIVE:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.long_term_buffer is not None and args.long_term_buffer < 0:
        raise ConfigError(f"--long-term-buffer must be >= 0, got {args.long_term_buffer}")
    if args.chunk_size is not None and (args.chunk_size == 0 or args.chunk_size < -1):
        raise ConfigError(f"--chunk-size must be -1 (all objects) or >= 1, got {args.chunk_size}")
    size = getattr(args, "size", None)
    if size is not None and size != -1 and size < 16:
        raise ConfigError(
            f"--size must be a shorter side of at least 16 pixels, or -1 to keep the frame size; got {size}"
        )
    if args.deep_update_every is not None and (args.deep_update_every == 0 or args.deep_update_every < -1):
        raise ConfigError(f"--deep-update-every must be -1 or >= 1, got {args.deep_update_every}")


def check_paths_early(folders: dict[str, str | None], outputs: dict[str, str | None]) -> None:
    """The cheap path checks, before the slow model load: each input folder exists, no output is a file.

    Args:
        folders: option -> folder that must exist (None: option not given), e.g. {"--davis-root": "data/DAVIS"}.
        outputs: option -> output folder that may not be a file, e.g. {"--out": "results"}.

    Raises:
        DataError: naming the path and the option.
    """
    from pathlib import Path

    from corrvos.errors import DataError

    for option, folder in folders.items():
        if folder is not None and not Path(folder).is_dir():
            what = "is a file, not a folder" if Path(folder).exists() else "folder not found"
            raise DataError(folder, f"{what} ({option})")
    for option, out in outputs.items():
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise DataError(out, f"is a file, not a folder: choose another {option}")


def skip_done_command(argv: list[str]) -> str:
    """The command that continues an interrupted ``infer`` / ``segment --videos`` run: the same one with
    ``--skip-done`` (without ``--overwrite``, which would delete what was done)."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--skip-done")]
    return "corrvos " + shlex.join([*kept, "--skip-done"])


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
