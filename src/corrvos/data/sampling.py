"""Frame sampling, the max-skip curriculum, object selection and per-item random generators for training clips.

Contents:

- :class:`SkipCurriculum`: the max-skip schedule as data (an initial value, then values switched on at fractions
  of training; each family's official curricula live in its package, ``corrvos.families.<name>``);
- :func:`sample_frames`: pick T frame indices of a video with gaps bounded by the max skip (STCN's three-frame
  chain for T = 3, XMem's "each frame within max_skip of an already chosen one" for any T), then reverse time
  with probability 0.5;
- :func:`select_objects`: choose up to N object ids in random order (STCN: a target and, when present, a second
  object; XMem: up to 3);
- :func:`item_rng`: the numpy Generator of one item, a function of (seed, epoch, index, attempt) only, so that
  DataLoader workers, DDP ranks and resumed runs all see the same clips.

The sampling rules are facts from hkchengrex/STCN:dataset/vos_dataset.py + train.py and
hkchengrex/XMem:dataset/vos_dataset.py + train.py, restated in new code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from corrvos.errors import ConfigError

__all__ = [
    "SkipCurriculum",
    "effective_max_skip",
    "item_rng",
    "sample_frames",
    "select_objects",
]

SAMPLING_METHODS = ("auto", "chain", "window")


@dataclass(frozen=True)
class SkipCurriculum:
    """Max-skip schedule: ``initial`` until ``fractions[0]`` of training, then ``values[i]`` from ``fractions[i]``.

    Attributes:
        initial: max skip at the start of training.
        fractions: increasing training fractions in (0, 1] at which the value changes.
        values: the max skip from each fraction on (same length as ``fractions``).
    """

    initial: int = 5
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.9)
    values: tuple[int, ...] = (10, 15, 20, 25, 5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        object.__setattr__(self, "values", tuple(int(v) for v in self.values))
        if len(self.fractions) != len(self.values):
            raise ConfigError(
                f"max-skip curriculum needs one value per fraction, got {len(self.fractions)} "
                f"fractions and {len(self.values)} values"
            )
        if any(b <= a for a, b in zip(self.fractions, self.fractions[1:], strict=False)) or any(
            not 0.0 < f <= 1.0 for f in self.fractions
        ):
            raise ConfigError(f"max-skip curriculum fractions must increase within (0, 1], got {self.fractions}")
        if self.initial < 1 or any(v < 1 for v in self.values):
            raise ConfigError(f"max-skip values must be >= 1, got initial {self.initial} and {self.values}")

    @classmethod
    def from_values(cls, values: Sequence[int], fractions: Sequence[float]) -> SkipCurriculum:
        """The curriculum of a stage config: ``values[i]`` from ``fractions[i-1]`` of the stage on.

        Args:
            values: ``max_skip_values``, e.g. STCN's [5, 10, 15, 20, 25, 5] (one more entry than ``fractions``).
            fractions: ``max_skip_fractions``, e.g. STCN's [0.1, 0.2, 0.3, 0.4, 0.9].

        Raises:
            ConfigError: the lengths do not match, a value is below 1 or the fractions do not increase in (0, 1].
        """
        if len(values) != len(fractions) + 1:
            raise ConfigError(
                f"max_skip_values needs exactly one more entry than max_skip_fractions, got "
                f"{len(values)} values and {len(fractions)} fractions"
            )
        if any(v < 1 for v in values):
            raise ConfigError(f"max_skip_values must be >= 1, got {list(values)}")
        return cls(int(values[0]), tuple(fractions), tuple(values[1:]))

    def at_fraction(self, progress: float) -> int:
        """Max skip after ``progress`` (0..1) of the training iterations (XMem switches by iteration)."""
        value = self.initial
        for fraction, v in zip(self.fractions, self.values, strict=True):
            if progress >= fraction:
                value = v
        return value

    def at_epoch(self, epoch: int, total_epochs: int) -> int:
        """Max skip of ``epoch`` (0-based) when switching only at epoch boundaries, as STCN does.

        The switch epochs are ``round(total_epochs * fraction)``.
        """
        value = self.initial
        for fraction, v in zip(self.fractions, self.values, strict=True):
            if epoch >= round(total_epochs * fraction):
                value = v
        return value

    def at_step(self, step: int, iterations: int) -> int:
        """Max skip at 0-based ``step`` of a stage of ``iterations`` steps.

        STCN switches at epoch boundaries (:meth:`at_epoch`); the trainer switches at the exact step, which does
        not depend on the dataset size or the process count.
        """
        return self.at_fraction(step / max(iterations, 1))


def effective_max_skip(max_skip: int, divisor: int = 1) -> int:
    """Max skip in units of annotated frames: ``max_skip // divisor``, at least 1.

    YouTube-VOS train is annotated every 5th frame, so STCN and XMem use ``divisor = 5`` there.
    """
    if max_skip < 1 or divisor < 1:
        raise ConfigError(f"max_skip and its divisor must be >= 1, got {max_skip} and {divisor}")
    return max(1, max_skip // divisor)


def item_rng(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.Generator:
    """Independent generator of one dataset item; depends only on its arguments (not on the worker or rank)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index), int(attempt)]))


def _chain_triplet(length: int, max_skip: int, rng: np.random.Generator) -> list[int]:
    """STCN's three-frame chain: a start, then two forward gaps of 1..max_skip+1, clamped to stay in the video."""
    jump = min(length, max_skip)
    first = int(rng.integers(0, length - jump + 1))
    second = min(first + 1 + int(rng.integers(0, jump + 1)), length - jump, length - 1)
    third = min(second + 1 + int(rng.integers(0, jump + 1)), length - jump // 2, length - 1)
    return [first, second, third]


def _window_sample(length: int, num_frames: int, max_skip: int, rng: np.random.Generator) -> list[int]:
    """XMem's sampler: each new frame is distinct and within ``max_skip`` of an already chosen frame; sorted."""
    jump = min(length, max_skip)
    chosen = [int(rng.integers(0, length))]
    candidates: set[int] = set()
    while len(chosen) < num_frames:
        last = chosen[-1]
        candidates.update(range(max(0, last - jump), min(length, last + jump + 1)))
        candidates.difference_update(chosen)
        pool = sorted(candidates)
        chosen.append(pool[int(rng.integers(0, len(pool)))])
    return sorted(chosen)


def sample_frames(
    length: int,
    num_frames: int,
    max_skip: int,
    rng: np.random.Generator,
    *,
    method: str = "auto",
    reverse_prob: float = 0.5,
    allow_repeats: bool = False,
) -> list[int]:
    """Indices of ``num_frames`` frames of a video of ``length`` (annotated) frames, in clip order.

    Args:
        length: number of frames available (at least ``num_frames``).
        num_frames: T.
        max_skip: maximum gap, in frames of the list (see :func:`effective_max_skip`).
        rng: source of randomness.
        method: "chain" (T = 3 only: STCN's chain with its clamping), "window" (XMem's: distinct frames, any T)
            or "auto" (chain for T = 3, window otherwise).
        reverse_prob: probability of reversing time.
        allow_repeats: keep STCN triplets that repeat a frame. STCN's clamping repeats a frame when the chain
            starts near the end of the video (1-2 % of DAVIS clips, 3-7 % of YouTube-VOS clips, about 40 % for
            a video of 6 annotated frames at max skip 1); by default such a triplet is redrawn (up to 20 times, then the
            window sampler is used), i.e. the recipe's distribution conditioned on distinct frames.

    Returns:
        T indices; increasing, or decreasing when time was reversed.
    """
    if method not in SAMPLING_METHODS:
        raise ConfigError(f"frame sampling method must be one of {SAMPLING_METHODS}, got {method!r}")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
    if length < num_frames:
        raise ValueError(f"cannot sample {num_frames} frames from a video of {length}")
    if max_skip < 1:
        raise ConfigError(f"max_skip must be >= 1, got {max_skip}")
    if method == "auto":
        method = "chain" if num_frames == 3 else "window"
    if method == "chain":
        if num_frames != 3:
            raise ConfigError(f"the 'chain' frame sampler draws exactly 3 frames, not {num_frames}; use 'window'")
        indices = _chain_triplet(length, max_skip, rng)
        for _ in range(20):
            if allow_repeats or len(set(indices)) == 3:
                break
            indices = _chain_triplet(length, max_skip, rng)
        else:
            indices = _window_sample(length, num_frames, max_skip, rng)
    else:
        indices = _window_sample(length, num_frames, max_skip, rng)
    if rng.random() < reverse_prob:
        indices = indices[::-1]
    return indices


def select_objects(object_ids: Sequence[int], max_objects: int, rng: np.random.Generator) -> list[int]:
    """Up to ``max_objects`` of ``object_ids`` in random order (slot k + 1 of the clip holds the k-th id)."""
    if max_objects < 1:
        raise ConfigError(f"max_objects must be >= 1, got {max_objects}")
    ids = sorted(int(i) for i in object_ids)
    order = rng.permutation(len(ids))
    return [ids[i] for i in order[:max_objects]]
