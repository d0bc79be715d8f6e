"""Saved per-frame probabilities ("scores") of one video, for merging ensembles later (``corrvos merge``).

File format (version 1): ``<scores dir>/<sequence>/scores.npz``, written by ``corrvos infer --save-scores`` with
``numpy.savez_compressed`` (zip + deflate; read with ``numpy.load(path)``, no pickle). Arrays:

============== ================= ==========================================================================
key            dtype, shape      meaning
============== ================= ==========================================================================
``format``     str, ()           ``"corrvos-scores"``
``version``    int32, ()         ``1``
``scores``     uint8 [T,N+1,H,W] probabilities quantised as ``round(255 * p)``: channel 0 background, channel
                                 k the object ``object_ids[k-1]``; H, W the frame size
``object_ids`` int32 [N]         object ids, ascending
``frame_ids``  str [T]           the saved frames' ids (file stems, the names of the result PNGs), in order
``size``       int32 [2]         (H, W)
============== ================= ==========================================================================

Dequantise with ``scores / 255``. The quantisation keeps the argmax: where rounding would tie the winning
channel with an earlier one, the winner is raised by one step (or, at 255, the tied channels lowered by one), so
the argmax of the saved scores equals the label map written beside them (every change stays within one step,
1/255). Sums of saved scores are exact in integers, so merging compares sums, not rounded means.
Only the frames whose PNGs are written are saved (YouTube-VOS: from the first reference mask on).
The scores folder holds a ``corrvos_results.json`` manifest like a results folder (see
:mod:`corrvos.inference.outputs`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrvos.errors import DataError
from corrvos.utils import atomic_path

__all__ = ["SCORES_FORMAT", "SCORES_NAME", "SCORES_VERSION", "ScoreFile", "quantize_scores", "read_scores_header"]

SCORES_FORMAT = "corrvos-scores"
SCORES_VERSION = 1
SCORES_NAME = "scores.npz"


def quantize_scores(prob: np.ndarray) -> np.ndarray:
    """Probabilities [..., C, H, W] in [0, 1] -> uint8 ``round(255 p)`` with the argmax over C kept (docstring)."""
    p = np.asarray(prob, dtype=np.float32)
    q = np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)  # [..., C, H, W]
    win = np.argmax(p, axis=-3)[..., None, :, :]  # [..., 1, H, W] first maximum
    q_win = np.take_along_axis(q, win, axis=-3)  # [..., 1, H, W]
    channel = np.arange(q.shape[-3]).reshape(-1, 1, 1)  # [C, 1, 1]
    tied = (q == q_win) & (channel < win)  # earlier channels that rounding made equal to the winner
    bump = tied.any(axis=-3, keepdims=True)  # [..., 1, H, W]
    raise_win = bump & (q_win < 255)
    np.put_along_axis(q, win, q_win + raise_win.astype(np.uint8), axis=-3)
    q[tied & ~raise_win] -= 1  # the winner is at 255: lower the channels it ties with
    return q


@dataclass
class ScoreFile:
    """The content of one ``scores.npz`` (see the module docstring)."""

    object_ids: list[int]
    frame_ids: list[str]
    size: tuple[int, int]
    scores: np.ndarray | None = None  # uint8 [T, N+1, H, W]; None when only the header was read

    def save(self, path: str | Path) -> None:
        """Write ``path`` atomically (compressed npz)."""
        assert self.scores is not None
        expected = (len(self.frame_ids), len(self.object_ids) + 1, *self.size)
        if self.scores.dtype != np.uint8 or self.scores.shape != expected:
            raise ValueError(f"scores must be uint8 {expected}, got {self.scores.dtype} {self.scores.shape}")
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                format=np.array(SCORES_FORMAT),
                version=np.array(SCORES_VERSION, dtype=np.int32),
                scores=self.scores,
                object_ids=np.asarray(self.object_ids, dtype=np.int32),
                frame_ids=np.asarray(self.frame_ids, dtype=str),
                size=np.asarray(self.size, dtype=np.int32),
            )

    @classmethod
    def load(cls, path: str | Path, *, header_only: bool = False) -> ScoreFile:
        """Read a ``scores.npz`` (only the small arrays with ``header_only``).

        Raises:
            DataError: the file is missing, not a corrvos scores file of a known version, or inconsistent.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "scores file not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "format" not in npz.files or str(npz["format"]) != SCORES_FORMAT:
                    raise DataError(path, f"not a {SCORES_FORMAT} file (written by `corrvos infer --save-scores`)")
                version = int(npz["version"])
                if version != SCORES_VERSION:
                    raise DataError(path, f"scores format version {version}; this corrvos reads {SCORES_VERSION}")
                ids = [int(v) for v in npz["object_ids"]]
                frame_ids = [str(v) for v in npz["frame_ids"]]
                size = tuple(int(v) for v in npz["size"])
                scores = None if header_only else npz["scores"]
        except DataError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(path, f"cannot read scores file ({exc})") from exc
        if len(size) != 2:
            raise DataError(path, f"size must be (H, W), got {size}")
        out = cls(object_ids=ids, frame_ids=frame_ids, size=(size[0], size[1]), scores=scores)
        expected = (len(frame_ids), len(ids) + 1, *out.size)
        if scores is not None and (scores.dtype != np.uint8 or scores.shape != expected):
            raise DataError(path, f"scores are {scores.dtype} {scores.shape}, expected uint8 {expected}")
        return out


def read_scores_header(path: str | Path) -> ScoreFile:
    """:meth:`ScoreFile.load` without the scores array (object ids, frame ids, size)."""
    return ScoreFile.load(path, header_only=True)
