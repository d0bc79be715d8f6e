"""Reader of the MOSE layout (complex video object segmentation, Ding et al. 2023), DAVIS-like per split.

Layout under the MOSE root (as the MOSE download unpacks, and as Cutie / XMem forks read it)::

    train/JPEGImages/<video>/00000.jpg 00001.jpg ...   every frame
    train/Annotations/<video>/00000.png ...            a label map for every frame (ground truth)
    valid/JPEGImages/<video>/00000.jpg ...
    valid/Annotations/<video>/00000.png                only the first frame's mask (the rest is scored by the
                                                       server)

Conventions: the sequences are the sub-folders of ``<split>/JPEGImages``, sorted by name; the objects are the ids
of the first frame's annotation (void 255 excluded), all given on frame 0 as in DAVIS (reading a sequence is
:meth:`corrvos.data.davis.DavisDataset.sequence`, with its checks and messages); every annotation PNG present
is ground truth for ``corrvos eval --mose-root`` (so ``train`` can be scored locally, ``valid`` cannot).
"""

from __future__ import annotations

import logging
from pathlib import Path

from corrvos.data.davis import DavisDataset
from corrvos.errors import DataError

__all__ = ["MOSE_SPLITS", "MoseDataset", "split_videos"]

logger = logging.getLogger(__name__)

MOSE_SPLITS = ("train", "valid")


def split_videos(image_root: Path) -> list[str]:
    """Sorted names of the video folders of ``image_root`` (hidden folders left out).

    Raises:
        DataError: the folder is missing or holds no video folder.
    """
    if not image_root.is_dir():
        raise DataError(image_root, "frame folder not found")
    names = sorted(p.name for p in image_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(image_root, "no video folder found")
    return names


class MoseDataset(DavisDataset):
    """The videos of one MOSE split, read lazily (frame-0 masks, every object present on frame 0).

    Args:
        root: the MOSE root (holding ``train/``, ``valid/``).
        split: ``train`` or ``valid`` (another split folder with the same layout is accepted with a warning).

    Raises:
        DataError: the root, split folder or ``<split>/JPEGImages`` is missing or empty.
    """

    def __init__(self, root: str | Path, *, split: str = "valid") -> None:  # no ImageSets: not super().__init__
        self.root = Path(root)
        self.year = "2017"  # multi-object label maps, never binarised (DavisDataset.sequence reads this)
        self.split = split
        self.resolution = None
        if not self.root.is_dir():
            raise DataError(self.root, "MOSE root folder not found")
        split_root = self.root / split
        if not split_root.is_dir():
            raise DataError(split_root, f"MOSE split folder not found (splits: {list(MOSE_SPLITS)})")
        if split not in MOSE_SPLITS:
            logger.warning("%s: %r is not a MOSE split %s; reading it with the same layout", root, split, MOSE_SPLITS)
        self.image_root = split_root / "JPEGImages"
        self.annotation_root = split_root / "Annotations"
        self.imageset_path = self.image_root  # named by DavisDataset.sequence for an unknown sequence
        self.sequences = split_videos(self.image_root)
        logger.debug("MOSE %s: %d videos in %s", split, len(self.sequences), self.root)

    def __repr__(self) -> str:
        return f"MoseDataset(root={str(self.root)!r}, split={self.split!r}, sequences={len(self.sequences)})"
