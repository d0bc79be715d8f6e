"""J&F evaluation: the official DAVIS 2017 semi-supervised protocol, local YouTube-VOS scoring, submission zips.

- :func:`evaluate_davis` scores DAVIS-layout predictions and writes the official CSVs (``corrvos eval``);
- :func:`evaluate_youtube` gives approximate local J/F for YouTube-VOS-layout ground truth;
- :func:`pack_youtube` writes the YouTube-VOS submission zip (``corrvos pack-youtube``);
- :func:`pack_davis` writes the DAVIS test-dev / test-challenge submission zip (``corrvos pack-davis``);
- :func:`evaluate_sequences` gives local J&F on MOSE / LVOS splits with ground truth (``corrvos eval --mose-root``);
- the metric functions (:func:`jaccard`, :func:`f_measure`, :func:`seg2bmap`, :func:`disk`,
  :func:`db_statistics`, :func:`frame_scores`) follow davisvideochallenge/davis2017-evaluation exactly.
"""

from __future__ import annotations

from corrvos.evaluation.benchmark import BenchmarkEvalResult, evaluate_sequences
from corrvos.evaluation.davis import (
    DavisEvalResult,
    SequenceScores,
    evaluate_davis,
    format_tables,
    official_csv_names,
)
from corrvos.evaluation.davis_submission import pack_davis
from corrvos.evaluation.metrics import (
    boundary_radius,
    db_statistics,
    decay_bin_bounds,
    disk,
    f_measure,
    frame_scores,
    jaccard,
    seg2bmap,
)
from corrvos.evaluation.youtube import YouTubeEvalResult, evaluate_youtube, pack_youtube

__all__ = [
    "BenchmarkEvalResult",
    "DavisEvalResult",
    "SequenceScores",
    "YouTubeEvalResult",
    "boundary_radius",
    "db_statistics",
    "decay_bin_bounds",
    "disk",
    "evaluate_davis",
    "evaluate_sequences",
    "evaluate_youtube",
    "f_measure",
    "format_tables",
    "frame_scores",
    "jaccard",
    "official_csv_names",
    "pack_davis",
    "pack_youtube",
    "seg2bmap",
]
