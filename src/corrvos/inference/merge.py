"""Merge saved scores of several runs (an ensemble, or TTA runs made separately): ``corrvos merge``.

Per sequence and frame, the merged label map is the argmax of the mean of the runs' dequantised probabilities
(:mod:`corrvos.inference.scores`), objects matched by id. The mean is compared as the exact integer sum of the
uint8 scores (the same argmax as the mean of ``scores / 255``; the first channel wins ties).

:func:`check_score_folders` checks every folder against the first one from the small arrays of each file (no
score is decompressed): the same sequences, and per sequence the same frame ids, frame size and object ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrvos.errors import DataError
from corrvos.inference.scores import SCORES_NAME, ScoreFile, read_scores_header

__all__ = ["MergedSequence", "check_score_folders", "merge_sequence", "score_sequences"]


def score_sequences(folder: Path) -> list[str]:
    """Sorted names of the sequences with a ``<folder>/<sequence>/scores.npz`` (hidden folders left out)."""
    return sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / SCORES_NAME).is_file()
    )


def check_score_folders(folders: list[Path]) -> tuple[list[str], list[str]]:
    """(sequences, problems): the sequences of the first folder and every disagreement, one line each."""
    problems: list[str] = []
    listing: dict[Path, list[str]] = {}
    for folder in folders:
        if not folder.is_dir():
            problems.append(f"{folder}: scores folder not found")
        elif not score_sequences(folder):
            problems.append(f"{folder}: no <sequence>/{SCORES_NAME} (write them with `corrvos infer --save-scores`)")
        else:
            listing[folder] = score_sequences(folder)
    if problems:
        return [], problems
    ref = folders[0]
    names = listing[ref]
    for folder in folders[1:]:
        missing = sorted(set(names) - set(listing[folder]))
        extra = sorted(set(listing[folder]) - set(names))
        if missing or extra:
            problems.append(f"{folder}: sequences differ from {ref} (missing {missing[:5]}, extra {extra[:5]})")
    for name in names:
        headers: dict[Path, ScoreFile] = {}
        for folder in folders:
            path = folder / name / SCORES_NAME
            if not path.is_file():
                continue  # reported above
            try:
                headers[folder] = read_scores_header(path)
            except DataError as exc:
                problems.append(str(exc))
        if ref not in headers:
            continue
        first = headers[ref]
        for folder, other in headers.items():
            path = folder / name / SCORES_NAME
            if other.frame_ids != first.frame_ids:
                diff = sorted(set(other.frame_ids) ^ set(first.frame_ids))[:5]
                problems.append(
                    f"{path}: frame ids differ from {ref / name / SCORES_NAME} "
                    f"({len(other.frame_ids)} vs {len(first.frame_ids)} frames; e.g. {diff or 'the order'})"
                )
            if other.size != first.size:
                problems.append(f"{path}: frame size {other.size} differs from {first.size} in {ref / name}")
            if sorted(other.object_ids) != sorted(first.object_ids):
                problems.append(f"{path}: object ids {other.object_ids} differ from {first.object_ids} in {ref / name}")
    return names, problems


@dataclass
class MergedSequence:
    """Merged labels of one sequence: ``labels`` uint8 [T, H, W] (original object ids) for ``frame_ids`` [T]."""

    frame_ids: list[str]
    labels: np.ndarray


def merge_sequence(paths: list[Path]) -> MergedSequence:
    """Average the scores files of one sequence (checked by :func:`check_score_folders`) and take the argmax.

    Raises:
        DataError: a file cannot be read, or disagrees with the first one on frames, size or objects.
    """
    first = ScoreFile.load(paths[0])
    assert first.scores is not None
    ids = first.object_ids
    total = first.scores.astype(np.int32)  # [T, N+1, H, W] sum of uint8 scores
    for path in paths[1:]:
        other = ScoreFile.load(path)
        assert other.scores is not None
        if other.frame_ids != first.frame_ids or other.size != first.size or sorted(other.object_ids) != sorted(ids):
            raise DataError(path, f"frames, size or objects differ from {paths[0]}")
        order = [0, *(other.object_ids.index(k) + 1 for k in ids)]  # channels of `other` in `ids` order
        total += other.scores[:, order].astype(np.int32)
    lookup = np.asarray([0, *ids], dtype=np.uint8)
    return MergedSequence(first.frame_ids, lookup[np.argmax(total, axis=1)])  # [T, H, W]
