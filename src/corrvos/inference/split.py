"""Segment every sequence of a dataset split with a model in memory: :func:`segment_sequence`, :func:`segment_split`.

The streaming loop of ``corrvos infer`` (one plain pass per video, result PNGs written as frames come) as a library
function, so that code holding a model (the learning-speed benchmark scoring a run while it trains, the demo)
segments a split without a checkpoint file or a subprocess. Results go to ``<out>/<sequence>/<frame id>.png``
(the DAVIS layout :func:`corrvos.evaluation.evaluate_davis` reads). The model is put in eval mode for the call and
every module's train/eval flag is restored afterwards, so a training loop can call it between steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from corrvos.inference.config import InferenceConfig, inference_config_for

__all__ = ["eval_mode", "segment_sequence", "segment_split"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block; each submodule's own ``training`` flag is restored on exit (a training
    loop's frozen BatchNorm layers stay frozen)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def segment_sequence(core: Any, seq: Any, out_dir: str | Path, *, progress: bool = True) -> tuple[int, float]:
    """Run ``core`` over one :class:`~corrvos.data.sequence.VideoSequence` and write its result PNGs (streamed).

    Frames before the first reference mask are not written (as the official YouTube-VOS script); frames that are
    neither saved nor needed for memory are skipped without reading
    (:func:`corrvos.inference.passes.iter_probabilities`).

    Returns:
        (frames processed by the network, seconds spent in ``step`` and the argmax).
    """
    from corrvos.data.io import write_label
    from corrvos.inference.passes import PassStats, iter_probabilities

    out_dir = Path(out_dir)
    sync = torch.cuda.synchronize if core.device.type == "cuda" else (lambda: None)
    stats = PassStats()
    for t, prob in iter_probabilities(core, seq, stats=stats, progress=progress):
        start = time.perf_counter()
        label = core.prob_to_mask(prob).to("cpu", torch.uint8).numpy()  # [H, W]
        sync()
        stats.seconds += time.perf_counter() - start
        write_label(out_dir / f"{seq.frame_ids[t]}.png", label)
    return stats.frames, stats.seconds


def segment_split(
    model: nn.Module,
    dataset: Any,
    out_dir: str | Path,
    *,
    config: InferenceConfig | None = None,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[int, float]:
    """Segment ``names`` (default: every sequence) of ``dataset`` into ``out_dir/<sequence>/``.

    Args:
        model: a corrvos network (its ``family`` picks the memory); run in eval mode under ``torch.no_grad`` (not
            inference mode: a training loop may go on with the same tensors).
        dataset: a :class:`~corrvos.data.sequence.SequenceCollection` (``DavisDataset``, ``YouTubeVOSDataset``...).
        out_dir: results folder (created); existing PNGs of the same frames are overwritten.
        config: inference options (default: the family's official ones at the frames' own size).

    Returns:
        (frames processed, seconds spent in the network and the argmax).
    """
    from corrvos.inference import InferenceCore

    config = config if config is not None else inference_config_for(model, internal_size=None)
    frames, seconds = 0, 0.0
    with eval_mode(model), torch.no_grad():
        for name in names if names is not None else list(dataset.sequences):
            seq = dataset.sequence(name)
            core = InferenceCore(model, config, video_length=len(seq))
            n, s = segment_sequence(core, seq, Path(out_dir) / name, progress=progress)
            frames, seconds = frames + n, seconds + s
    return frames, seconds
