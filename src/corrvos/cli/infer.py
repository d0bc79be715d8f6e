"""`corrvos infer`: run a checkpoint on a DAVIS, YouTube-VOS, MOSE or LVOS split and write the result PNGs.

DAVIS layout: ``<out>/<sequence>/<frame id>.png`` (ready for ``corrvos eval``; MOSE and LVOS too). YouTube-VOS
layout: ``<out>/Annotations/<video>/<frame id>.png`` for the frames to save (ready for ``corrvos pack-youtube``).
Palette PNGs carry the original object ids. The FPS printed counts the frames the network processed and the time
spent in ``InferenceCore.step`` and the argmax (file reading and writing excluded), as the official STCN scripts.
Test-time augmentation (``--flip``, ``--scales``) and ``--save-scores`` go through
:mod:`corrvos.inference.passes` and :mod:`corrvos.inference.scores`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from corrvos.cli.engine_options import (
    add_engine_arguments,
    check_engine_arguments,
    check_paths_early,
    engine_config,
    load_inference_model,
    skip_done_command,
)

HELP = "segment a DAVIS, YouTube-VOS, MOSE or LVOS split with a checkpoint (result PNGs + FPS; TTA, scores)"
DESCRIPTION = """\
Run semi-supervised video object segmentation on every sequence of a DAVIS, YouTube-VOS, MOSE or LVOS split: the
reference masks of the split are given to the model (DAVIS, MOSE: frame 0; YouTube-VOS, LVOS: the frame where
each object first appears) and the other frames are predicted with the checkpoint's own inference procedure:
STCN (top-k memory read, a memory frame every --mem-every frames) or XMem (sensory, working and long-term
memory; the XMem options below). Every option defaults to the official evaluation's value for that model.

Outputs are palette PNGs with the original object ids:
  DAVIS, MOSE, LVOS: <out>/<sequence>/<frame>.png        (score with `corrvos eval --results <out>`)
  YouTube-VOS:       <out>/Annotations/<video>/<frame>.png (zip with `corrvos pack-youtube`)
The FPS printed excludes file reading and writing (and counts the frames of every TTA pass).

Test-time augmentation, as XMem's eval.py: --flip adds a second whole-video pass on the mirrored video,
--scales S1 S2 ... runs one pass per shorter side (each pass's probabilities are resized to the frame size);
the probabilities of all passes are averaged per frame before the argmax. --save-scores DIR writes each
sequence's probabilities to DIR/<sequence>/scores.npz for `corrvos merge`.

examples:
  corrvos infer --model stcn.pth --davis-root data/DAVIS/2017/trainval --set val --out output/d17-val
  corrvos infer --model stcn.pth --youtube-root data/YouTube2019 --set valid --all-frames --out output/y19
  corrvos infer --model XMem.pth --davis-root data/DAVIS/2017/trainval --set val --out output/xmem-d17-val
  corrvos infer --model XMem.pth --davis-root data/DAVIS/2017/trainval --flip --scales 480 600 --out output/tta
  corrvos infer --model XMem.pth --lvos-root data/LVOS --set valid --mem-every 10 --out output/lvos-val
"""

_log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from corrvos.families import cards, checkpoint_sources, option_defaults

    all_frames_families = " / ".join(c.title for c in cards().values() if c.driver_defaults.get("youtube_all_frames"))
    parser.add_argument(
        "--model",
        required=True,
        help=f"checkpoint: official {checkpoint_sources()} file or a corrvos checkpoint; the architecture is read "
        "from the file",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--davis-root", help="DAVIS folder with JPEGImages/, Annotations/, ImageSets/")
    src.add_argument("--youtube-root", help="YouTube-VOS folder with <set>/JPEGImages, <set>/meta.json, ...")
    src.add_argument("--mose-root", help="MOSE folder with <set>/JPEGImages/<video>, <set>/Annotations/<video>")
    src.add_argument(
        "--lvos-root", help="LVOS v1 folder with <set>/JPEGImages/<video>, <set>/Annotations, <set>/<set>_meta.json"
    )
    parser.add_argument(
        "--set",
        dest="set_name",
        default=None,
        help="split: DAVIS train/val/test-dev/test-challenge (default val); "
        "YouTube-VOS valid/test/train, MOSE train/valid, LVOS train/valid/test (default valid)",
    )
    parser.add_argument("--year", default=None, help="DAVIS 2017 (default) or 2016; YouTube-VOS 2019 (default) or 2018")
    parser.add_argument("--resolution", default="480p", help="DAVIS frame folder: 480p (default) or Full-Resolution")
    parser.add_argument(
        "--all-frames",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="YouTube-VOS: run on <set>_all_frames (every frame) and save only the sampled frames "
        f"(default: the official driver's convention of the model's family: on for {all_frames_families or 'none'} "
        "when the folder exists, off for the others)",
    )
    parser.add_argument("--sequences", nargs="+", default=None, metavar="NAME", help="only these sequences")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
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
        f"resized back (default: the family's official size, {option_defaults('internal_size')}; a family "
        "without one (None) runs DAVIS at the frame size and YouTube-VOS, MOSE and LVOS at 480; -1 keeps the frame "
        "size). As the official evaluations, smaller frames are enlarged",
    )
    tta = parser.add_argument_group("test-time augmentation and scores")
    tta.add_argument(
        "--flip", action="store_true", help="add a pass on the mirrored video; average the probabilities (2x time)"
    )
    tta.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=None,
        metavar="SIZE",
        help="one pass per shorter side SIZE (as --size; -1 = frame size), probabilities averaged at the frame size "
        "(replaces --size; with --flip, each scale is also run mirrored)",
    )
    tta.add_argument(
        "--save-scores",
        default=None,
        metavar="DIR",
        help="also write each sequence's probabilities to DIR/<sequence>/scores.npz (uint8, see "
        "corrvos.inference.scores) for `corrvos merge`; DIR follows --out's rules",
    )
    add_engine_arguments(parser)


def _open_dataset(args: argparse.Namespace, model: Any) -> tuple[Any, str]:
    from corrvos.errors import ConfigError
    from corrvos.inference.config import driver_defaults

    if args.davis_root is not None:
        from corrvos.data.davis import DavisDataset

        if args.all_frames:
            raise ConfigError("--all-frames applies to YouTube-VOS only")
        ds = DavisDataset(
            args.davis_root, year=args.year or "2017", split=args.set_name or "val", resolution=args.resolution
        )
        return ds, "davis"
    if args.mose_root is not None or args.lvos_root is not None:
        from corrvos.data.lvos import LvosDataset
        from corrvos.data.mose import MoseDataset

        if args.all_frames:
            raise ConfigError("--all-frames applies to YouTube-VOS only")
        if args.mose_root is not None:
            return MoseDataset(args.mose_root, split=args.set_name or "valid"), "mose"
        return LvosDataset(args.lvos_root, split=args.set_name or "valid"), "lvos"
    from pathlib import Path

    from corrvos.data.youtube_vos import YouTubeVOSDataset

    split = args.set_name or "valid"
    all_frames = args.all_frames
    if all_frames is None:  # the model's driver convention, where the download has every frame
        all_frames = driver_defaults(model).get("youtube_all_frames", False)
        if all_frames and not (Path(args.youtube_root) / f"{split}_all_frames" / "JPEGImages").is_dir():
            _log.warning("%s has no %s_all_frames/JPEGImages: running on the sampled frames", args.youtube_root, split)
            all_frames = False
    ds = YouTubeVOSDataset(args.youtube_root, year=args.year or "2019", split=split, all_frames=all_frames)
    return ds, "youtube"


def _run_sequence(
    model: Any, config: Any, seq: Any, out_dir: Any, passes: list[Any], scores_dir: Any | None, progress: bool = True
) -> tuple[int, float]:
    """One sequence: streamed (one plain pass, no scores) or through :func:`~corrvos.inference.passes.run_passes`."""
    import time

    import numpy as np

    from corrvos.data.io import write_label
    from corrvos.inference import InferenceCore
    from corrvos.inference.passes import TTAPass, run_passes
    from corrvos.inference.scores import SCORES_NAME, ScoreFile, quantize_scores
    from corrvos.inference.split import segment_sequence

    if scores_dir is None and passes == [TTAPass(False, config.internal_size)]:
        return segment_sequence(InferenceCore(model, config, video_length=len(seq)), seq, out_dir, progress=progress)
    merged = run_passes(model, config, seq, passes, progress=progress)
    start = time.perf_counter()
    labels = [merged.labels(i) for i in range(len(merged.frames))]  # argmax of the mean [H, W] each
    seconds = merged.stats.seconds + time.perf_counter() - start
    for t, label in zip(merged.frames, labels, strict=True):
        write_label(out_dir / f"{seq.frame_ids[t]}.png", label)
    if scores_dir is not None:
        ScoreFile(
            object_ids=merged.object_ids,
            frame_ids=[seq.frame_ids[t] for t in merged.frames],
            size=tuple(seq.size),
            scores=np.stack([quantize_scores(p) for p in merged.probs.numpy()])  # uint8 [T, N+1, H, W]
            if merged.frames
            else np.zeros(merged.probs.shape, np.uint8),
        ).save(scores_dir / SCORES_NAME)
    return merged.stats.frames, seconds


def _check_tta(args: argparse.Namespace) -> None:
    """ConfigError for a bad --scales value, or --scales with --size (before any slow work)."""
    from corrvos.errors import ConfigError

    if args.scales is None:
        return
    if args.size is not None:
        raise ConfigError("give either --size or --scales (a pass per size), not both")
    bad = [s for s in args.scales if s != -1 and s < 16]
    if bad or len(set(args.scales)) != len(args.scales):
        raise ConfigError(f"--scales must be distinct shorter sides >= 16 or -1 (the frame size), got {args.scales}")


def _tta(args: argparse.Namespace, config: Any) -> list[Any]:
    """The passes of --flip / --scales: each scale (or the configured size) plain, then mirrored with --flip."""
    from corrvos.inference.passes import tta_passes

    sizes = [config.internal_size] if args.scales is None else [s if s > 0 else None for s in args.scales]
    return tta_passes(sizes, flip=args.flip)


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from pathlib import Path

    from corrvos.data.sequence import sequence_problems
    from corrvos.errors import ConfigError, DataError
    from corrvos.inference.outputs import ResultsFolder
    from corrvos.progress import progress_bar

    check_engine_arguments(args)
    _check_tta(args)
    roots = ("--davis-root", "--youtube-root", "--mose-root", "--lvos-root")
    check_paths_early(
        {r: getattr(args, r[2:].replace("-", "_")) for r in roots},
        {"--out": args.out, "--save-scores": args.save_scores},
    )  # before the (slow) model load
    model, device = load_inference_model(args)
    dataset, layout = _open_dataset(args, model)
    names = list(dataset.sequences)
    if args.sequences:
        unknown = [s for s in args.sequences if s not in names]
        if unknown:
            raise ConfigError(f"--sequences: {unknown} not in the split (it has {len(names)} sequences)")
        names = [s for s in names if s in args.sequences]
    config = engine_config(args, model, default_size=None if layout == "davis" else 480)
    passes = _tta(args, config)
    out = Path(args.out)
    job = _job(args, dataset, layout, config)
    results = ResultsFolder(out, job, sequence_root=out / "Annotations" if layout == "youtube" else out)
    todo = results.plan(names, skip_done=args.skip_done, overwrite=args.overwrite)
    scores = None
    if args.save_scores is not None:
        scores_top = Path(args.save_scores).resolve()
        if scores_top in (out.resolve(), *out.resolve().parents) or out.resolve() in scores_top.parents:
            raise ConfigError(f"--save-scores {args.save_scores} and --out {out} must not contain each other")
        scores = ResultsFolder(scores_top, {**job, "scores": 1})
        planned = set(scores.plan(names, skip_done=args.skip_done, overwrite=args.overwrite)) | set(todo)
        todo = [s for s in names if s in planned]  # a sequence missing from either folder is run again
    if len(todo) < len(names):
        print(f"--skip-done: {len(names) - len(todo)} of {len(names)} sequences already complete in {out}")

    sequences, problems = {}, []  # every sequence checked before the first one runs
    for name in progress_bar(todo, desc="checking inputs", unit="seq", leave=False, disable=args.no_progress):
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
    if scores is not None:
        scores.begin()
    total_frames, total_seconds = 0, 0.0
    bar = progress_bar(todo, desc=f"infer {layout}", unit="seq", disable=args.no_progress)
    for name in bar:
        seq = sequences.pop(name)
        with results.sequence(name) as folder, scores.sequence(name) if scores else nullcontext() as score_folder:
            frames, seconds = _run_sequence(model, config, seq, folder, passes, score_folder, not args.no_progress)
        total_frames += frames
        total_seconds += seconds
        bar.set_postfix(fps=f"{total_frames / max(total_seconds, 1e-9):.2f}")
    fps = total_frames / max(total_seconds, 1e-9)
    print(
        f"Processed {len(todo)} sequences, {total_frames} frames in {total_seconds:.2f} s (I/O excluded): "
        f"{fps:.2f} FPS on {device}"
        + (f" with {args.amp} autocast" if args.amp != "none" else "")
        + (f", {len(passes)} TTA passes per video" if len(passes) > 1 else "")
    )
    print(f"Results written to {results.root}" + (f", scores to {scores.root}" if scores else ""))
    return 0


def interrupt_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """After Ctrl-C: the command that continues the run (complete sequences are kept, see ``--skip-done``)."""
    return f"continue with: {skip_done_command(argv)}"


def _job(args: argparse.Namespace, dataset: Any, layout: str, config: Any) -> dict[str, Any]:
    """What makes this run's results (compared by ``--skip-done``): checkpoint content, data, every setting."""
    import dataclasses
    from pathlib import Path

    from corrvos.inference.outputs import file_sha256
    from corrvos.weights import resolve_model_path

    model_file = Path(resolve_model_path(args.model)).expanduser()  # a weight name -> its cached file
    job = {
        "command": "infer",
        "checkpoint_sha256": file_sha256(model_file),
        "dataset": str(Path(dataset.root).resolve()),
        "layout": layout,
        "split": getattr(dataset, "split", None),
        "year": getattr(dataset, "year", None),
        "resolution": getattr(dataset, "resolution", None),
        "all_frames": getattr(dataset, "all_frames", None),
        "fold_bn": bool(args.fold_bn),
        "inference": dataclasses.asdict(config),
    }
    if args.flip or args.scales is not None:  # only then, so that earlier manifests still match
        job["tta"] = {"flip": bool(args.flip), "scales": args.scales}
    return job
