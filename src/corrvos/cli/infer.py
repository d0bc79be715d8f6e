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

from corrvos.cli.engine import add_engine_arguments, check_engine_arguments, engine_config, load_inference_model

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
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: new or empty, or one this command wrote (see --skip-done, --overwrite)",
    )
    done = parser.add_mutually_exclusive_group()
    done.add_argument(
        "--skip-done",
        action="store_true",
        help="continue an interrupted run of the same job into the same --out: sequences already complete are "
        "not run again (a different checkpoint, split or option is refused)",
    )
    done.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the results an earlier corrvos run wrote into --out first (only those)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize frames so that their shorter side is SIZE (>= 16) before the network; outputs are "
        "resized back (default: XMem 480 as its eval.py; STCN none for DAVIS, 480 for "
        "YouTube-VOS; -1 keeps the frame size). As the official evaluations, smaller frames are enlarged",
    )
    add_engine_arguments(parser)


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

    from corrvos.data.sequence import sequence_problems
    from corrvos.errors import ConfigError, DataError
    from corrvos.inference import InferenceCore
    from corrvos.inference.config import model_family
    from corrvos.inference.outputs import ResultsFolder

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
    results = ResultsFolder(
        out, _job(args, dataset, layout, config), sequence_root=out / "Annotations" if layout == "youtube" else out
    )
    todo = results.plan(names, skip_done=args.skip_done, overwrite=args.overwrite)
    if len(todo) < len(names):
        print(f"--skip-done: {len(names) - len(todo)} of {len(names)} sequences already complete in {out}")

    sequences, problems = {}, []  # every sequence checked before the first one runs
    for name in tqdm(todo, desc="checking inputs", unit="seq", leave=False):
        try:
            sequences[name] = dataset.sequence(name)
        except DataError as exc:
            problems.append(str(exc))
            continue
        problems.extend(sequence_problems(sequences[name]))
    if len(problems) == 1:
        raise DataError(None, problems[0])
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError(
            None, f"{len(problems)} input problem(s), nothing was run:" + "".join(f"\n  {p}" for p in shown)
        )

    results.begin()  # nothing is written before every check passed
    total_frames, total_seconds = 0, 0.0
    bar = tqdm(todo, desc=f"infer {layout}", unit="seq")
    for name in bar:
        seq = sequences.pop(name)
        core = InferenceCore(model, config, video_length=len(seq))
        with results.sequence(name) as folder:
            frames, seconds = infer_sequence(core, seq, folder)
        total_frames += frames
        total_seconds += seconds
        bar.set_postfix(fps=f"{total_frames / max(total_seconds, 1e-9):.2f}")
    fps = total_frames / max(total_seconds, 1e-9)
    print(
        f"Processed {len(todo)} sequences, {total_frames} frames in {total_seconds:.2f} s (I/O excluded): "
        f"{fps:.2f} FPS on {device}" + (f" with {args.amp} autocast" if args.amp != "none" else "")
    )
    print(f"Results written to {results.root}")
    return 0


def _job(args: argparse.Namespace, dataset: Any, layout: str, config: Any) -> dict[str, Any]:
    """What makes this run's results (compared by ``--skip-done``): checkpoint content, data, every setting."""
    import dataclasses
    from pathlib import Path

    from corrvos.inference.outputs import file_sha256

    return {
        "command": "infer",
        "checkpoint_sha256": file_sha256(args.model) if Path(args.model).is_file() else str(args.model),
        "dataset": str(Path(dataset.root).resolve()),
        "layout": layout,
        "split": getattr(dataset, "split", None),
        "year": getattr(dataset, "year", None),
        "resolution": getattr(dataset, "resolution", None),
        "all_frames": getattr(dataset, "all_frames", None),
        "fold_bn": bool(args.fold_bn),
        "inference": dataclasses.asdict(config),
    }
