"""The DAVIS 2017 submission zip (test-dev / test-challenge on CodaLab; any split).

Layout the DAVIS evaluation server expects (davisvideochallenge/davis2017-evaluation:evaluation_codalab.py): the
sequence folders directly at the root of the zip, no enclosing folder,
``<sequence>/<frame>.png`` for every frame of every sequence of the split (``ImageSets/2017/<set>.txt``), one
palette PNG per frame of ``JPEGImages/480p/<sequence>`` at that frame's size, object ids 1..N with N the largest
id of the sequence's first-frame annotation (the server stops at a higher id). hkchengrex/XMem:eval.py zips its
output folder the same way.

:func:`pack_davis` checks all of this before writing anything and lists every problem at once (missing sequence
folder or frame, unreadable or RGB PNG, wrong size, id above N); the zip is written atomically.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from corrvos.data.davis import DavisDataset
from corrvos.data.io import VOID_LABEL, label_header_problem, read_label
from corrvos.data.sequence import image_size
from corrvos.errors import DataError
from corrvos.evaluation.parallel import raise_problems
from corrvos.utils import atomic_path

__all__ = ["pack_davis"]

logger = logging.getLogger(__name__)


def _first_frame_objects(davis: DavisDataset, name: str, first_id: str) -> int | None:
    """N of a sequence: the largest id of its first-frame annotation (None when that annotation is absent)."""
    path = davis.annotation_root / name / f"{first_id}.png"
    if not path.is_file():
        return None
    label = read_label(path)
    ids = [int(v) for v in np.unique(label) if v not in (0, VOID_LABEL)]
    return max(ids, default=0)


def pack_davis(
    results_dir: str | Path,
    out_zip: str | Path,
    *,
    davis_root: str | Path,
    set_name: str = "test-dev",
    year: str = "2017",
    resolution: str = "480p",
) -> int:
    """Zip DAVIS-layout predictions ``<results>/<sequence>/<frame>.png`` as the server's submission.

    Args:
        results_dir: the output folder of ``corrvos infer --davis-root ... --set <set>``.
        out_zip: the zip file to write (atomically; must end in ``.zip``).
        davis_root: the DAVIS folder of the split (``ImageSets/``, ``JPEGImages/<resolution>``,
            ``Annotations/<resolution>`` with at least the first-frame masks).
        set_name: ``test-dev``, ``test-challenge``, ``val`` or ``train``.
        year: ``2017`` (or ``2016``, single object).
        resolution: frame folder the predictions must match (the servers score 480p).

    Returns:
        the number of PNGs written.

    Raises:
        DataError: the zip path is a folder or not ``.zip``, the split cannot be read, or (one error listing all)
            a sequence folder or frame is missing, a PNG is unreadable, not a label map, of another size than its
            frame, or holds an id above the sequence's N.
    """
    out_zip, src = Path(out_zip), Path(results_dir)
    if out_zip.is_dir():
        raise DataError(out_zip, "is a folder: --out is the zip file to write, e.g. submission.zip")
    if out_zip.suffix.lower() != ".zip":
        raise DataError(out_zip, "the submission file must end in .zip")
    if not src.is_dir():
        raise DataError(src, "results folder not found")
    davis = DavisDataset(davis_root, year=year, split=set_name, resolution=resolution)
    entries: list[tuple[str, Path]] = []  # (name in the zip, png)
    problems: list[str] = []
    for name in davis.sequences:
        frame_dir = davis.image_root / name
        frames = sorted(frame_dir.glob("*.jpg")) if frame_dir.is_dir() else []
        if not frames:
            problems.append(f"{frame_dir}: no frames (.jpg) of sequence {name} in the DAVIS root")
            continue
        if not (src / name).is_dir():
            problems.append(f"{src / name}: result folder of sequence {name} not found")
            continue
        missing = [f.stem for f in frames if not (src / name / f"{f.stem}.png").is_file()]
        if missing:
            listed = ", ".join(f"{m}.png" for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            problems.append(f"{src / name}: {len(missing)} of {len(frames)} frame(s) missing: {listed}")
        try:  # DAVIS 2016 is single-object: its masks are binarised
            n_objects = 1 if davis.year == "2016" else _first_frame_objects(davis, name, frames[0].stem)
        except DataError as exc:
            problems.append(str(exc))
            n_objects = None
        for jpg in frames:
            png = src / name / f"{jpg.stem}.png"
            if not png.is_file():
                continue
            problem, _ = label_header_problem(png, image_size(jpg), reference="its frame")
            if problem is None and n_objects is not None:
                problem = _id_problem(png, n_objects, name)
            if problem:
                problems.append(problem)
            entries.append((f"{name}/{png.name}", png))
        extra = sorted(p.name for p in (src / name).glob("*.png") if p.stem not in {f.stem for f in frames})
        if extra:
            logger.warning("%s: %d PNG(s) that are not frames are left out: %s", src / name, len(extra), extra[:5])
    raise_problems(problems, src)
    listed = set(davis.sequences)
    others = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in listed)
    if others:
        logger.warning("%d folder(s) not in the %s split are left out: %s", len(others), set_name, others[:5])
    with atomic_path(out_zip, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        seen: set[str] = set()
        for arcname, png in entries:
            folder = arcname.split("/")[0] + "/"
            if folder not in seen:
                zf.writestr(folder, b"")
                seen.add(folder)
            zf.write(png, arcname)
    logger.info("wrote %d PNGs of %d sequences to %s", len(entries), len(davis.sequences), out_zip)
    return len(entries)


def _id_problem(png: Path, n_objects: int, name: str) -> str | None:
    """A one-line problem if the PNG holds an id above N (the server stops on it), else None."""
    try:
        ids = np.unique(read_label(png))
    except DataError as exc:
        return str(exc)
    bad = [int(v) for v in ids if v > n_objects]
    if not bad:
        return None
    return f"{png}: predicted id(s) {bad} but sequence {name} has N = {n_objects} object(s) in its first-frame mask"
