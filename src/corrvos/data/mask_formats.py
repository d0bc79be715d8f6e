"""User masks in the formats annotation tools export, read as label maps: :func:`read_mask_any`.

Formats (``corrvos segment --mask-format``):

- ``palette``: an indexed (mode ``P``) PNG whose indices are the object ids (the DAVIS / YouTube-VOS annotations);
- ``label``: an 8-bit (mode ``L``) or 1-bit grayscale PNG whose values are the object ids;
- ``rgb``: a colour PNG where each colour is one object (any PNG mode, converted to RGB; in RGBA pixels with
  alpha 0 are background). Black is the background. Without an explicit :class:`ColourMap` the colours get the
  ids 1, 2, ... in order of first appearance in raster order (row by row, left to right) of the first annotated
  mask, then of the colours new in later masks, in frame order;
- ``per-object``: one binary mask per object, the files ``<frame>_<id>.png`` (what SAM-style tools export): 0/255
  or 0/1 grayscale (a palette or colour file is read as grayscale). A pixel belongs to the object where the value
  is >= 128, or equals 1 in a file whose values are only 0 and 1. Where objects overlap, the larger id wins. Each
  file gives its object, even an empty one: the object is absent on that frame;
- ``binary``: one object per mask file, the common 0/255 (or 0/1) grayscale mask: a pixel is object 1 where the
  value is >= 128, or equals 1 in a file whose values are only 0 and 1 (a colour file is read as grayscale);
- ``auto`` (default): palette and grayscale PNGs are label maps, RGB / RGBA PNGs colour masks.

Lossy files (JPEG, JPEG 2000, lossy WebP, told by their content, not their name) are refused in every format:
compression noise makes new ids (a 4-object colour JPEG read as 94 objects). A colour mask numbered automatically
is refused when more than :data:`MAX_TINY_COLOURS` of its colours are tiny, each covering fewer than
max(:data:`TINY_COLOUR_PIXELS`, :data:`TINY_COLOUR_FRACTION` of the pixels): the mark of anti-aliased edges or of a
mask resized with interpolation; a ``--palette-map`` (fixed colours) turns this check off.

Conventions: label maps are uint8 [H, W]; 0 is the background and 255 void (never an object: DAVIS borders); the
ids 1..254 are objects. A colour map can send a colour to 0 (e.g. a white background) or to 255 (void).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from corrvos.data.io import DAVIS_PALETTE, LABEL_MODES, VOID_LABEL, lossy_format, lossy_problem, read_label
from corrvos.errors import DataError

__all__ = [
    "BACKGROUND_COLOUR",
    "MASK_FORMATS",
    "MAX_TINY_COLOURS",
    "TINY_COLOUR_FRACTION",
    "TINY_COLOUR_PIXELS",
    "ColourMap",
    "MaskRead",
    "image_mode",
    "read_mask_any",
]

MASK_FORMATS = ("auto", "palette", "label", "rgb", "binary", "per-object")
#: A colour of an automatically numbered colour mask is tiny below max(TINY_COLOUR_PIXELS, TINY_COLOUR_FRACTION *
#: pixels) pixels (14x14 pixels at 480x854); a mask with more than MAX_TINY_COLOURS tiny colours is refused.
TINY_COLOUR_PIXELS = 10
TINY_COLOUR_FRACTION = 0.0005
MAX_TINY_COLOURS = 3
BACKGROUND_COLOUR = (0, 0, 0)
#: Largest object id given to a colour automatically (255 is void).
_MAX_OBJECT_ID = 254
Colour = tuple[int, int, int]


@dataclass
class ColourMap:
    """Object id -> RGB colour of colour masks (one colour per id, one id per colour).

    Attributes:
        colours: id (0 background, 1..254 objects, 255 void) -> (R, G, B). Black is the background unless the map
            gives black another id.
        fixed: an explicit map (``--palette-map``): a colour it does not list is an error instead of a new id.
    """

    colours: dict[int, Colour] = field(default_factory=dict)
    fixed: bool = False

    def __post_init__(self) -> None:
        seen: dict[Colour, int] = {}
        for obj_id, colour in self.colours.items():
            if colour in seen:
                raise ValueError(f"colour {colour} has two ids, {seen[colour]} and {obj_id}")
            seen[colour] = obj_id

    def lookup(self) -> dict[Colour, int]:
        """Colour -> id, with black as the background where the map does not give black an id."""
        table = {colour: obj_id for obj_id, colour in self.colours.items()}
        table.setdefault(BACKGROUND_COLOUR, 0)
        return table

    def to_labels(self, rgb: np.ndarray, path: str | Path) -> np.ndarray:
        """Colours [H, W, 3] uint8 -> label map [H, W] uint8, giving new colours the next free ids (unless fixed).

        Raises:
            DataError: a colour an explicit map does not list, more colours than there are object ids, or (numbering
                colours automatically) more than MAX_TINY_COLOURS tiny colours.
        """
        codes = _pack(rgb).reshape(-1)  # [H*W] 0xRRGGBB
        uniq, first, inverse, counts = np.unique(codes, return_index=True, return_inverse=True, return_counts=True)
        table = {_pack_one(c): i for c, i in self.lookup().items()}
        unknown = [int(c) for c in uniq[np.argsort(first)] if int(c) not in table]  # raster order of appearance
        if unknown and self.fixed:
            shown = ", ".join(_hex(c) for c in unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise DataError(path, f"colour(s) {shown} are not in --palette-map: add them to the map")
        free = [i for i in range(1, _MAX_OBJECT_ID + 1) if i not in self.colours]
        if len(unknown) > len(free):
            raise DataError(
                path,
                f"{len(unknown) + len(self.colours)} colours, more than the {_MAX_OBJECT_ID} object ids: "
                "anti-aliased edges or JPEG artefacts? save the mask without smoothing as PNG, or give --palette-map",
            )
        if not self.fixed:
            _check_tiny_colours(uniq, counts, table, path)
        for code, obj_id in zip(unknown, free, strict=False):
            self.colours[obj_id] = _unpack(code)
            table[code] = obj_id
        ids = np.array([table[int(c)] for c in uniq], dtype=np.uint8)  # [U] id of each distinct colour
        return ids[inverse.reshape(-1)].reshape(rgb.shape[:2])  # [H, W]

    def palette(self) -> np.ndarray:
        """[256, 3] uint8 palette of result PNGs: the map's colours at their ids, the DAVIS colours elsewhere."""
        palette = DAVIS_PALETTE.copy()
        palette[0] = BACKGROUND_COLOUR
        for obj_id, colour in self.colours.items():
            palette[obj_id] = colour
        return palette

    def to_json(self) -> str:
        """The map as ``colour_ids.json`` (readable back by :meth:`read`): {"id": [R, G, B], ...}, ids ascending."""
        colours = dict(self.colours)
        if 0 not in colours and BACKGROUND_COLOUR not in colours.values():
            colours[0] = BACKGROUND_COLOUR
        return json.dumps({str(i): list(colours[i]) for i in sorted(colours)}, indent=2) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> ColourMap:
        """Read a ``--palette-map`` JSON file: {"<id>": [R, G, B] or "#rrggbb", ...}, ids 0..255.

        Raises:
            DataError: the file is missing, not JSON, or holds a bad id or colour (the message says which).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "palette map not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(path, f"palette map is not readable JSON ({exc})") from exc
        if not isinstance(data, dict) or not data:
            raise DataError(path, 'palette map must be a JSON object {"<id>": [R, G, B] or "#rrggbb", ...}')
        colours: dict[int, Colour] = {}
        for key, value in data.items():
            if not str(key).isdigit() or not 0 <= int(key) <= 255:
                raise DataError(path, f"palette map key {key!r} is not an id 0..255 (0 background, 255 void)")
            colour = _parse_colour(value)
            if colour is None:
                raise DataError(path, f"palette map colour of id {key} is {value!r}, not [R, G, B] nor '#rrggbb'")
            colours[int(key)] = colour
        try:
            return cls(colours, fixed=True)
        except ValueError as exc:
            raise DataError(path, f"palette map: {exc}") from exc


@dataclass
class MaskRead:
    """One annotated frame read from any format.

    Attributes:
        label: uint8 [H, W] object ids (0 background, 255 void).
        objects: the ids this mask gives (its values other than 0 and 255; per-object: one per file, even empty).
        kind: "labels" (palette / grayscale), "colours" (RGB) or "per-object".
    """

    label: np.ndarray
    objects: list[int]
    kind: str


def image_mode(path: str | Path) -> str | None:
    """The Pillow mode of an image file from its header, or None when it is missing or unreadable."""
    return _header(path)[0]


def _header(path: str | Path) -> tuple[str | None, str | None]:
    """(Pillow mode, Pillow format) of an image file from its header; (None, None) when missing or unreadable."""
    try:
        with Image.open(path) as img:
            return str(img.mode), img.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, None


def read_mask_any(
    source: str | Path | Mapping[int, str | Path], fmt: str = "auto", colours: ColourMap | None = None
) -> MaskRead:
    """Read one annotated frame as a label map.

    Args:
        source: a mask PNG, or for ``per-object`` the files of one frame as {object id: path}.
        fmt: one of :data:`MASK_FORMATS`.
        colours: the video's colour map, extended in place by colour masks (ids of new colours); required to read
            colour masks (pass ``ColourMap()`` to number colours automatically).

    Raises:
        DataError: naming the file: missing, undecodable, of another format than ``fmt``, or (colours) unknown to a
            fixed map.
    """
    if fmt not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {MASK_FORMATS}, got {fmt!r}")
    if fmt == "per-object":
        if not isinstance(source, Mapping):
            raise DataError(source, "per-object masks are files <frame>_<id>.png in a mask folder, one per object")
        return _read_per_object(source)
    if isinstance(source, Mapping):
        raise ValueError("a mapping of per-object files needs fmt='per-object'")
    path = Path(source)
    mode, pillow_format = _header(path)
    if mode is None:
        read_label(path)  # raises its message: not found / cannot decode
        raise DataError(path, "cannot decode mask")  # pragma: no cover - read_label raised
    lossy = lossy_format(path, pillow_format)
    if lossy is not None:
        raise DataError(path, lossy_problem(lossy))
    if fmt == "binary":
        label = _read_binary(path).astype(np.uint8)  # [H, W] 0 or 1
        return MaskRead(label, _ids_in(label), "labels")
    if fmt == "palette" and mode != "P":
        raise DataError(path, f"not a palette (indexed) PNG but mode {mode!r}: use --mask-format auto")
    if fmt == "label" and mode not in ("L", "1"):
        raise DataError(path, f"not an 8-bit grayscale PNG but mode {mode!r}: use --mask-format auto")
    if fmt == "rgb" or (fmt == "auto" and mode not in LABEL_MODES):
        if colours is None:
            raise ValueError("reading colour masks needs a ColourMap")
        label = colours.to_labels(_read_rgb(path), path)
        return MaskRead(label, _ids_in(label), "colours")
    label = read_label(path)
    return MaskRead(label, _ids_in(label), "labels")


def _check_tiny_colours(uniq: np.ndarray, counts: np.ndarray, table: dict[int, int], path: str | Path) -> None:
    """DataError when more than MAX_TINY_COLOURS object colours (not background, void or mapped to either) are tiny.

    Args:
        uniq: int64 [U] the distinct colour codes of the mask; counts: [U] their pixel counts.
        table: colour code -> id of the colours known so far (background and void are never objects).
    """
    limit = max(TINY_COLOUR_PIXELS, TINY_COLOUR_FRACTION * int(counts.sum()))
    objects = np.array([table.get(int(c), 1) not in (0, VOID_LABEL) for c in uniq], dtype=bool)  # [U]
    tiny = np.flatnonzero(objects & (counts < limit))
    if len(tiny) > MAX_TINY_COLOURS:
        examples = ", ".join(f"{_hex(int(uniq[i]))} ({int(counts[i])} px)" for i in tiny[:3])
        raise DataError(
            path,
            f"{len(tiny)} of its {int(objects.sum())} object colours cover fewer than {limit:.0f} pixels each "
            f"(e.g. {examples}): anti-aliased edges, a mask resized with interpolation or a lossy copy? save the "
            "mask with hard edges (nearest neighbour), or list its colours in --palette-map",
        )


def _ids_in(label: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(label) if i not in (0, VOID_LABEL)]


def _read_rgb(path: Path) -> np.ndarray:
    """Any image as uint8 RGB [H, W, 3]; RGBA / LA pixels with alpha 0 become black (the background)."""
    try:
        with Image.open(path) as img:
            alpha = np.array(img.getchannel("A")) if img.mode in ("RGBA", "LA", "PA") else None  # [H, W]
            rgb = np.array(img.convert("RGB"))  # [H, W, 3]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"cannot decode colour mask ({exc})") from exc
    if alpha is not None:
        rgb[alpha == 0] = BACKGROUND_COLOUR
    return rgb


def _read_binary(path: Path) -> np.ndarray:
    """A binary object mask as bool [H, W]: values >= 128, or == 1 in a 0/1 file."""
    if not path.is_file():
        raise DataError(path, "mask not found")
    try:
        with Image.open(path) as img:
            lossy = lossy_format(path, img.format)
            if lossy is not None:
                raise DataError(path, lossy_problem(lossy))
            if img.mode not in ("1", "L", "P", "RGB", "RGBA", "LA"):
                raise DataError(path, f"binary mask must be an 8-bit grayscale (or colour) PNG, got mode {img.mode!r}")
            array = np.array(img if img.mode in ("1", "L", "P") else img.convert("L"))  # [H, W]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"cannot decode mask ({exc})") from exc
    if array.dtype == np.bool_:
        return array
    return array >= 128 if array.max(initial=0) > 1 else array == 1


def _read_per_object(files: Mapping[int, str | Path]) -> MaskRead:
    label: np.ndarray | None = None
    size_of: Path | None = None
    for obj_id in sorted(files):
        path = Path(files[obj_id])
        if not 1 <= int(obj_id) <= _MAX_OBJECT_ID:
            raise DataError(path, f"object id {obj_id} outside 1..{_MAX_OBJECT_ID} (255 is void)")
        mask = _read_binary(path)
        if label is None:
            label, size_of = np.zeros(mask.shape, np.uint8), path
        elif mask.shape != label.shape:
            raise DataError(
                path, f"mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but {size_of.name} is {label.shape[0]}x"
                f"{label.shape[1]}: the masks of one frame have one size"
            )  # fmt: skip
        label[mask] = obj_id  # larger ids are painted last: they win where objects overlap
    if label is None:
        raise ValueError("no per-object mask files given")
    return MaskRead(label, sorted(int(i) for i in files), "per-object")


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> int64 [...] codes 0xRRGGBB."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _pack_one(colour: Colour) -> int:
    return (int(colour[0]) << 16) | (int(colour[1]) << 8) | int(colour[2])


def _unpack(code: int) -> Colour:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def _hex(code: int) -> str:
    return f"#{code:06x}"


def _parse_colour(value: object) -> Colour | None:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6 and all(c in "0123456789abcdefABCDEF" for c in text):
            return _unpack(int(text, 16))
        return None
    if isinstance(value, (list, tuple)) and len(value) == 3:
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
            return int(value[0]), int(value[1]), int(value[2])
    return None
