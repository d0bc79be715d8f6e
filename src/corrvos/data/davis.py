"""Reader of the DAVIS 2016 / 2017 layout (semi-supervised setting).

Layout under the DAVIS root (as the official davisvideochallenge/davis2017-evaluation reads it)::

    JPEGImages/<resolution>/<seq>/00000.jpg ...   frames (resolution "480p" or "Full-Resolution")
    Annotations/<resolution>/<seq>/00000.png ...  palette PNG label maps (train/val: every frame; test: frame 0)
    ImageSets/2017/{train,val,test-dev,test-challenge}.txt   one sequence name per line, evaluation order
    ImageSets/2016/{train,val}.txt                            the DAVIS 2016 single-object subset

Conventions:
- the sequence order is the order of the ImageSets file (blank lines and repeats ignored; a line holding a path
  such as ``/JPEGImages/480p/bear/00000.jpg ...`` counts as the sequence ``bear``);
- frames are the image files of the sequence folder sorted by name; the frame id is the file stem;
- the input annotation is the PNG of frame 0; DAVIS 2016 masks are binarised (any id > 0 becomes object 1);
- the objects are the ids present in the frame-0 annotation (void 255 excluded);
- the dataset object only reads the ImageSets file; ``sequence(name)`` lists one folder and reads the headers of
  the first frame and of the first annotation, plus that annotation (to list the objects).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from corrvos.data.io import VOID_LABEL, read_label
from corrvos.data.sequence import (
    SequenceCollection,
    VideoSequence,
    check_annotation_size,
    image_size,
    list_sequence_frames,
)
from corrvos.errors import DataError

__all__ = ["DAVIS_SPLITS", "DavisDataset", "read_sequence_list"]

logger = logging.getLogger(__name__)

# year -> ImageSets names that exist for it
DAVIS_SPLITS: dict[str, tuple[str, ...]] = {
    "2016": ("train", "val"),
    "2017": ("train", "val", "test-dev", "test-challenge"),
}


def read_sequence_list(path: str | Path) -> list[str]:
    """Sequence names of an ImageSets file, in file order.

    Raises:
        DataError: the file is missing, unreadable, or lists no sequence.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "ImageSets file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ImageSets file ({exc})") from exc
    names: list[str] = []
    for line in text.splitlines():
        token = line.strip().split()[0] if line.strip() else ""
        if "/" in token:  # DAVIS 2016 style: "/JPEGImages/480p/bear/00000.jpg /Annotations/..."
            token = Path(token).parent.name
        if token and token not in names:
            names.append(token)
    if not names:
        raise DataError(path, "ImageSets file lists no sequence")
    return names


class DavisDataset(SequenceCollection):
    """The sequences of one DAVIS split, read lazily.

    Args:
        root: the DAVIS root folder (holding ``JPEGImages``, ``Annotations``, ``ImageSets``).
        year: "2017" (multi-object) or "2016" (single-object, masks binarised).
        split: an ImageSets name: "train", "val", "test-dev" or "test-challenge" (2017 only).
        resolution: the sub-folder of ``JPEGImages`` / ``Annotations``: "480p" or "Full-Resolution".

    Raises:
        DataError: the root or ImageSets file is missing, or the year / split is unknown.
    """

    def __init__(self, root: str | Path, *, year: str = "2017", split: str = "val", resolution: str = "480p") -> None:
        self.root = Path(root)
        self.year = str(year)
        self.split = split
        self.resolution = resolution
        if not self.root.is_dir():
            raise DataError(self.root, "DAVIS root folder not found")
        if self.year not in DAVIS_SPLITS:
            raise DataError(self.root, f"unknown DAVIS year {self.year!r} (expected one of {sorted(DAVIS_SPLITS)})")
        if split not in DAVIS_SPLITS[self.year]:
            raise DataError(
                self.root,
                f"unknown DAVIS {self.year} split {split!r} (expected one of {list(DAVIS_SPLITS[self.year])})",
            )
        self.image_root = self.root / "JPEGImages" / resolution
        self.annotation_root = self.root / "Annotations" / resolution
        self.imageset_path = self.root / "ImageSets" / self.year / f"{split}.txt"
        self.sequences: list[str] = read_sequence_list(self.imageset_path)
        logger.debug("DAVIS %s %s: %d sequences in %s", self.year, split, len(self.sequences), self.root)

    def __repr__(self) -> str:
        return (
            f"DavisDataset(root={str(self.root)!r}, year={self.year!r}, split={self.split!r}, "
            f"sequences={len(self.sequences)})"
        )

    def sequence(self, name: str) -> VideoSequence:
        """The sequence ``name`` of this split.

        Raises:
            DataError: the name is not in the split, its frame folder is missing or empty, the frame-0 annotation
                is missing or unreadable, or its size differs from the frame size.
        """
        if name not in self.sequences:
            raise DataError(self.imageset_path, f"sequence {name!r} is not in this split")
        frame_dir = self.image_root / name
        frame_paths = list_sequence_frames(frame_dir, name, kind="sequence")
        frame_ids = [p.stem for p in frame_paths]
        size = image_size(frame_paths[0])

        ann_dir = self.annotation_root / name
        first = ann_dir / f"{frame_ids[0]}.png"
        if not first.is_file():
            raise DataError(first, f"first-frame annotation of sequence {name!r} not found")
        annotation_paths = {
            i: ann_dir / f"{fid}.png" for i, fid in enumerate(frame_ids) if (ann_dir / f"{fid}.png").is_file()
        }
        label = read_label(first)
        check_annotation_size(first, label.shape, size, name)
        binarize = self.year == "2016"
        ids = [1] if binarize and (label > 0).any() else [int(k) for k in np.unique(label) if k not in (0, VOID_LABEL)]
        if not ids:
            logger.warning("%s: the first-frame annotation contains no object", first)
        return VideoSequence(
            name=name,
            frame_paths=frame_paths,
            frame_ids=frame_ids,
            mask_paths={0: first},
            objects_first_frame=dict.fromkeys(ids, 0),
            frames_to_save=None,
            size=size,
            annotation_paths=annotation_paths,
            binarize=binarize,
        )
