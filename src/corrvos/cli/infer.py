"""`corrvos infer`: run a checkpoint on a DAVIS or YouTube-VOS split and write the result PNGs.

DAVIS layout: ``<out>/<sequence>/<frame id>.png`` (ready for ``corrvos eval``). YouTube-VOS layout:
``<out>/Annotations/<video>/<frame id>.png`` for the frames to save (ready for ``corrvos pack-youtube``).
Palette PNGs carry the original object ids. The FPS printed counts the frames the network processed and the time
spent in ``InferenceCore.step`` and the argmax (file reading and writing excluded), as the official STCN scripts.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

HELP = "segment a DAVIS or YouTube-VOS split with a checkpoint (result PNGs + FPS)"
DESCRIPTION = """\
Run semi-supervised video object segmentation on every sequence of a DAVIS or YouTube-VOS split: the reference
masks of the split are given to the model (DAVIS: frame 0; YouTube-VOS: the frame where each object first
appears) and the other frames are predicted with the checkpoint's own inference procedure: STCN (top-k memory
read, a memory frame every --mem-every frames) or XMem (sensory, working and long-term memory; the XMem options
below). Every option defaults to the official evaluation's value for that model.

Outputs are palette PNGs with the original object ids:
  DAVIS:       <out>/<sequence>/<frame>.png               (score with `corrvos eval --results <out>`)
  YouTube-VOS: <out>/Annotations/<video>/<frame>.png      (zip with `corrvos pack-youtube`)
The FPS printed excludes file reading and writing.

examples:
  corrvos infer --model stcn.pth --davis-root data/DAVIS/2017/trainval --set val --out output/d17-val
  corrvos infer --model stcn.pth --youtube-root data/YouTube2019 --set valid --all-frames --out output/y19
  corrvos infer --model XMem.pth --davis-root data/DAVIS/2017/trainval --set val --out output/xmem-d17-val
"""

_log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint: official STCN / VOS_Correspondence / XMem file or a corrvos checkpoint; the "
        "architecture is read from the file",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--davis-root", help="DAVIS folder with JPEGImages/, Annotations/, ImageSets/")
    src.add_argument("--youtube-root", help="YouTube-VOS folder with <set>/JPEGImages, <set>/meta.json, ...")
    parser.add_argument(
        "--set",
        dest="set_name",
        default=None,
        help="split: DAVIS train/val/test-dev/test-challenge (default val); "
        "YouTube-VOS valid/test/train (default valid)",
    )
    parser.add_argument("--year", default=None, help="DAVIS 2017 (default) or 2016; YouTube-VOS 2019 (default) or 2018")
    parser.add_argument("--resolution", default="480p", help="DAVIS frame folder: 480p (default) or Full-Resolution")
    parser.add_argument(
        "--all-frames",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="YouTube-VOS: run on <set>_all_frames (every frame) and save only the sampled frames "
        "(default: on for XMem as its eval.py when the folder exists, off for STCN)",
    )
    parser.add_argument("--sequences", nargs="+", default=None, metavar="NAME", help="only these sequences")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize frames so that their shorter side is SIZE before the network; outputs are "
        "resized back (default: XMem 480 as its eval.py; STCN none for DAVIS, 480 for "
        "YouTube-VOS; -1 disables)",
    )
    add_engine_arguments(parser)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the inference engine shared by ``infer`` and ``segment`` (defaults: the model family's)."""
    g = parser.add_argument_group("memory options (defaults: the official ones of the checkpoint's model, STCN / XMem)")
    g.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="k of the top-k softmax: memory positions each query position reads (STCN 20, XMem 30)",
    )
    g.add_argument(
        "--mem-every",
        type=int,
        default=None,
        help="r in the XMem paper: a memory frame every r frames (default 5; the STCN author uses 3 on "
        "DAVIS test-dev; XMem uses 10 on long videos; larger is faster)",
    )
    g.add_argument(
        "--include-last", action="store_true", help="STCN only: keep the previous frame as a temporary memory entry"
    )
    g.add_argument(
        "--deep-update-every",
        type=int,
        default=None,
        help="XMem: renew the sensory memory with the value encoder (deep update) every N frames; "
        "-1 (default) does it on every memory frame",
    )
    g.add_argument(
        "--disable-long-term",
        action="store_true",
        help="XMem: keep every memory frame in working memory (no consolidation into long-term memory; "
        "memory then grows with the video)",
    )
    g.add_argument(
        "--min-mid-term-frames",
        type=int,
        default=None,
        help="XMem: T_min in the paper, working-memory frames kept after a consolidation (default 5)",
    )
    g.add_argument(
        "--max-mid-term-frames",
        type=int,
        default=None,
        help="XMem: T_max in the paper, working-memory frames that trigger a consolidation (default 10; "
        "lower saves memory)",
    )
    g.add_argument(
        "--num-prototypes",
        type=int,
        default=None,
        help="XMem: P in the paper, long-term prototypes made per consolidation (default 128)",
    )
    g.add_argument(
        "--max-long-term-elements",
        type=int,
        default=None,
        help="XMem: LT_max in the paper, long-term elements kept before the least-used are dropped "
        "(default 10000; raise it if objects disappear for a long time)",
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


def engine_config(args: argparse.Namespace, model: Any, *, default_size: int | None = None) -> Any:
    """The :class:`~corrvos.inference.config.InferenceConfig` of the command line for ``model``'s family.

    ``--size`` (when the command has it): a positive value sets the shorter side, -1 (or 0) keeps the frames' size,
    unset keeps the family default (XMem 480) or else ``default_size``. Raises ConfigError naming a bad option.
    """
    import dataclasses

    from corrvos.errors import ConfigError
    from corrvos.inference.config import inference_config_for, model_family
    from corrvos.inference.memory_bank import make_memory

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
        make_memory(model_family(model), config)  # options the model's memory refuses
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
    if args.deep_update_every is not None and (args.deep_update_every == 0 or args.deep_update_every < -1):
        raise ConfigError(f"--deep-update-every must be -1 or >= 1, got {args.deep_update_every}")


def load_inference_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Device, AMP check, checkpoint loading (and ``--fold-bn``) for ``infer`` / ``segment``: (model, device)."""
    from corrvos.devices import resolve_device
    from corrvos.models import load_model
    from corrvos.models.fuse import fold_batchnorm

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


def _open_dataset(args: argparse.Namespace, family: str) -> tuple[Any, str]:
    from corrvos.errors import ConfigError
    from corrvos.inference.config import DRIVER_DEFAULTS

    if args.davis_root is not None:
        from corrvos.data.davis import DavisDataset

        if args.all_frames:
            raise ConfigError("--all-frames applies to YouTube-VOS only")
        ds = DavisDataset(
            args.davis_root, year=args.year or "2017", split=args.set_name or "val", resolution=args.resolution
        )
        return ds, "davis"
    from pathlib import Path

    from corrvos.data.youtube_vos import YouTubeVOSDataset

    split = args.set_name or "valid"
    all_frames = args.all_frames
    if all_frames is None:  # the model's driver convention, where the download has every frame
        all_frames = DRIVER_DEFAULTS.get(family, {}).get("youtube_all_frames", False)
        if all_frames and not (Path(args.youtube_root) / f"{split}_all_frames" / "JPEGImages").is_dir():
            _log.warning("%s has no %s_all_frames/JPEGImages: running on the sampled frames", args.youtube_root, split)
            all_frames = False
    ds = YouTubeVOSDataset(args.youtube_root, year=args.year or "2019", split=split, all_frames=all_frames)
    return ds, "youtube"


def infer_sequence(core: Any, seq: Any, out_dir: Any, *, progress: bool = True) -> tuple[int, float]:
    """Run ``core`` over one :class:`~corrvos.data.sequence.VideoSequence` and write its result PNGs.

    Frames before the first reference mask are not written (as the official YouTube-VOS script); frames that are
    neither saved nor needed for memory are skipped without reading.

    Returns:
        (frames processed by the network, seconds spent in ``step`` and the argmax).
    """
    import time

    import torch
    from tqdm import tqdm

    from corrvos.data.io import write_label

    sync = torch.cuda.synchronize if core.device.type == "cuda" else (lambda: None)
    first_mask = min(seq.mask_paths) if seq.mask_paths else len(seq)
    frames, seconds = 0, 0.0
    n = len(seq)
    for t in tqdm(range(n), desc=seq.name, unit="frame", leave=False, disable=not progress):
        end = t == n - 1
        has_mask = t in seq.mask_paths
        save = seq.should_save(t) and t >= first_mask
        if not has_mask and not save and not core.next_frame_needed(end=end):
            core.skip_frame()
            continue
        image = torch.from_numpy(seq.read_frame(t)).permute(2, 0, 1).float().div(255)  # [3, H, W]
        mask = torch.from_numpy(seq.read_mask(t).astype("int64")) if has_mask else None
        # only the objects this mask introduces: DAVIS void (255) is no object, and on a fully annotated split
        # (YouTube-VOS train) the known objects of this frame must stay predictions
        objects = seq.objects_at(t) if has_mask else None
        sync()
        start = time.perf_counter()
        prob = core.step(image, mask, objects, end=end)
        label = core.prob_to_mask(prob).to("cpu", torch.uint8).numpy() if save else None
        sync()
        seconds += time.perf_counter() - start
        frames += 1
        if label is not None:
            write_label(out_dir / f"{seq.frame_ids[t]}.png", label)
    return frames, seconds


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from corrvos.errors import ConfigError
    from corrvos.inference import InferenceCore
    from corrvos.inference.config import model_family
    from corrvos.utils import make_output_dir

    check_engine_arguments(args)
    model, device = load_inference_model(args)
    dataset, layout = _open_dataset(args, model_family(model))
    names = list(dataset.sequences)
    if args.sequences:
        unknown = [s for s in args.sequences if s not in names]
        if unknown:
            raise ConfigError(f"--sequences: {unknown} not in the split (it has {len(names)} sequences)")
        names = [s for s in names if s in args.sequences]
    config = engine_config(args, model, default_size=480 if layout == "youtube" else None)
    out = Path(args.out)
    out_root = out / "Annotations" if layout == "youtube" else out
    make_output_dir(out_root)

    total_frames, total_seconds = 0, 0.0
    bar = tqdm(names, desc=f"infer {layout}", unit="seq")
    for name in bar:
        seq = dataset.sequence(name)
        core = InferenceCore(model, config, video_length=len(seq))
        frames, seconds = infer_sequence(core, seq, out_root / name)
        total_frames += frames
        total_seconds += seconds
        bar.set_postfix(fps=f"{total_frames / max(total_seconds, 1e-9):.2f}")
    fps = total_frames / max(total_seconds, 1e-9)
    print(
        f"Processed {len(names)} sequences, {total_frames} frames in {total_seconds:.2f} s (I/O excluded): "
        f"{fps:.2f} FPS on {device}" + (f" with {args.amp} autocast" if args.amp != "none" else "")
    )
    print(f"Results written to {out_root}")
    return 0
