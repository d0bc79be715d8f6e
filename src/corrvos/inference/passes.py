"""Passes over a video: the plain streaming pass every ``corrvos infer`` makes (:func:`iter_probabilities`), and
test-time augmentation, whole-video passes (mirrored, at several sizes) whose probabilities are averaged.

As hkchengrex/XMem:eval.py (``--flip``, ``--size``, ``--save_scores``) and its multi-scale merging, re-expressed:

- a pass (:class:`TTAPass`) runs a fresh :class:`~corrvos.inference.InferenceCore` over the *whole* video, with
  every frame and reference mask mirrored left-right (``flip``) and/or resized to another shorter side
  (``internal_size``); its [N+1, H, W] probabilities are brought back to the frame (un-mirrored; resized to the
  frame size by the core, bilinearly) for every saved frame;
- the passes of a video are independent, so running them one after the other equals running them in lockstep;
- the merged probabilities are the plain mean of the passes, computed exactly as
  ``(((p_1 + p_2) + p_3) + ...) / P`` in float32 on the CPU, and the labels are their argmax (first channel wins
  ties, as ``torch.argmax``).

Memory: the running sum holds every saved frame of the video at frame size on the CPU, float32:
``4 * T * (N+1) * H * W`` bytes (a DAVIS 480p video of 80 frames with 3 objects: about 525 MB). A single pass
without TTA streams instead (:func:`iter_probabilities`), one frame at a time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from corrvos.data.sequence import VideoSequence
from corrvos.inference.config import InferenceConfig
from corrvos.inference.core import InferenceCore, channel_argmax

__all__ = ["PassStats", "SequenceProbs", "TTAPass", "iter_probabilities", "run_passes", "tta_passes"]


@dataclass(frozen=True)
class TTAPass:
    """One whole-video pass: mirrored or not, at one internal size (None: the frame size; see ``--size -1``)."""

    flip: bool = False
    internal_size: int | None = None


def tta_passes(sizes: Sequence[int | None], *, flip: bool = False) -> list[TTAPass]:
    """The passes of ``--scales`` x ``--flip``: for each size the plain pass, then its mirrored one."""
    return [TTAPass(flip=f, internal_size=s) for s in sizes for f in ((False, True) if flip else (False,))]


@dataclass
class PassStats:
    """Frames the network processed and seconds spent in ``step`` (added to by every pass)."""

    frames: int = 0
    seconds: float = 0.0


@dataclass
class SequenceProbs:
    """Averaged probabilities of the saved frames of one video.

    Attributes:
        object_ids: [N] ascending; channel k+1 of ``probs`` is ``object_ids[k]``.
        frames: [T] frame indices in the sequence (the saved frames from the first reference mask on).
        probs: float32 [T, N+1, H, W] on the CPU, channel 0 background.
        stats: work done by all passes.
    """

    object_ids: list[int]
    frames: list[int]
    probs: Tensor
    stats: PassStats = field(default_factory=PassStats)

    def labels(self, index: int) -> np.ndarray:
        """uint8 [H, W] label map (original object ids) of the ``index``-th saved frame: argmax of ``probs``."""
        lookup = torch.tensor([0, *self.object_ids], dtype=torch.int64)
        return lookup[channel_argmax(self.probs[index])].to(torch.uint8).numpy()


def iter_probabilities(
    core: InferenceCore,
    seq: VideoSequence,
    *,
    flip: bool = False,
    stats: PassStats | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, Tensor]]:
    """Run ``core`` over ``seq`` and yield ``(frame index, [N+1, H, W] probabilities)`` of every saved frame.

    Frames before the first reference mask are not yielded (as the official YouTube-VOS script); frames that are
    neither saved nor needed for memory are skipped without reading. With ``flip`` every frame and mask is
    mirrored left-right before ``step`` and the probabilities are mirrored back. Probabilities stay on the
    core's device. ``stats`` receives the frames processed and the seconds spent in ``step`` (synchronised).
    """
    from corrvos.progress import progress_bar

    sync = torch.cuda.synchronize if core.device.type == "cuda" else (lambda: None)
    stats = stats if stats is not None else PassStats()
    first_mask = min(seq.mask_paths) if seq.mask_paths else len(seq)
    n = len(seq)
    for t in progress_bar(range(n), desc=seq.name, unit="frame", leave=False, disable=not progress):
        end = t == n - 1
        has_mask = t in seq.mask_paths
        save = seq.should_save(t) and t >= first_mask
        if not has_mask and not save and not core.next_frame_needed(end=end):
            core.skip_frame()
            continue
        image = torch.from_numpy(seq.read_frame(t)).permute(2, 0, 1).float().div(255)  # [3, H, W]
        label = seq.read_mask(t) if has_mask else None  # uint8 [H, W]
        if flip:
            image = image.flip(-1)
            label = None if label is None else np.ascontiguousarray(label[:, ::-1])
        mask = None if label is None else torch.from_numpy(label.astype("int64"))
        # only the objects this mask introduces: DAVIS void (255) is no object, and on a fully annotated split
        # (YouTube-VOS train, LVOS) the known objects of this frame must stay predictions
        objects = seq.objects_at(t) if has_mask else None
        sync()
        start = time.perf_counter()
        prob = core.step(image, mask, objects, end=end)  # [N+1, H, W]
        if flip:
            prob = prob.flip(-1)
        sync()
        stats.seconds += time.perf_counter() - start
        stats.frames += 1
        if save:
            yield t, prob


def run_passes(
    model: nn.Module,
    config: InferenceConfig,
    seq: VideoSequence,
    passes: Sequence[TTAPass],
    *,
    progress: bool = True,
) -> SequenceProbs:
    """Run every pass over the whole video and average their probabilities per saved frame (module docstring).

    Each pass uses ``config`` with its own ``internal_size``. Raises ValueError if the passes disagree on the
    objects or the saved frames (they cannot: every pass sees the same masks).
    """
    if not passes:
        raise ValueError("run_passes needs at least one pass")
    stats = PassStats()
    object_ids = seq.object_ids  # every object the video introduces, ascending (the core's channel order)
    total = torch.zeros((len(_saved(seq)), len(object_ids) + 1, *seq.size), dtype=torch.float32)  # [T, N+1, H, W]
    frames: list[int] = []
    for number, tta in enumerate(passes):
        core = InferenceCore(model, dataclasses.replace(config, internal_size=tta.internal_size), video_length=len(seq))
        these: list[int] = []
        for t, prob in iter_probabilities(core, seq, flip=tta.flip, stats=stats, progress=progress):
            prob = _all_objects(prob.to("cpu", torch.float32), core.object_ids, object_ids)  # [N+1, H, W]
            if number == 0:
                total[len(these)] = prob
            else:
                total[len(these)] += prob
            these.append(t)
        if number == 0:
            frames = these
        if core.object_ids != object_ids or these != frames:
            raise ValueError(f"{seq.name}: TTA pass {tta} disagrees with the video on objects or frames")
    total = total[: len(frames)].div_(len(passes))  # the mean, [T, N+1, H, W]
    return SequenceProbs(object_ids=object_ids, frames=frames, probs=total, stats=stats)


def _all_objects(prob: Tensor, known: list[int], every: list[int]) -> Tensor:
    """[K+1, H, W] probabilities of the ``known`` objects -> [N+1, H, W] over ``every`` object (0 for the others).

    Objects that appear later (YouTube-VOS, LVOS) have no channel before their reference frame: probability 0.
    """
    if known == every:
        return prob
    out = prob.new_zeros((len(every) + 1, *prob.shape[1:]))  # [N+1, H, W]
    out[[0, *(every.index(k) + 1 for k in known)]] = prob
    return out


def _saved(seq: VideoSequence) -> list[int]:
    """Indices of the frames :func:`iter_probabilities` yields (saved, from the first reference mask on)."""
    first_mask = min(seq.mask_paths) if seq.mask_paths else len(seq)
    return [t for t in range(first_mask, len(seq)) if seq.should_save(t)]
