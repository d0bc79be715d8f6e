"""Image and label-map I/O: palette PNGs with the DAVIS palette, RGB frames, frame listing.

Conventions:
- a label map is a ``uint8`` array [H, W]; 0 is background, 1..255 are object ids (DAVIS uses 255 as void in
  some ground truth);
- an image is a ``uint8`` RGB array [H, W, 3];
- label maps are written as palette (mode ``P``) PNGs with the DAVIS palette, so that they look like the
  official annotations and read back as the same indices.

Label maps go through Pillow, because OpenCV expands palette PNGs to colours and loses the indices. Colour
frames go through OpenCV (JPEG and PNG decoding, the faster of the two here).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from corrvos.errors import DataError
from corrvos.utils import atomic_path

__all__ = [
    "DAVIS_PALETTE",
    "IMAGE_EXTENSIONS",
    "LABEL_MODES",
    "LOSSY_FORMATS",
    "VOID_LABEL",
    "davis_palette",
    "label_header_problem",
    "list_frames",
    "lossy_format",
    "lossy_problem",
    "read_image",
    "read_label",
    "write_image",
    "write_label",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Label of "void" pixels (DAVIS object borders, unlabelled regions): never an object, in every command.
VOID_LABEL = 255
#: Pillow modes of a label-map PNG: palette, 8-bit grayscale, and 1-bit (read as 0/1).
LABEL_MODES = ("P", "L", "1")
#: Pillow formats whose compression is lossy: never a mask (JPEG noise turns one id into many).
LOSSY_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "JPEG2000": "JPEG 2000"}


def davis_palette() -> np.ndarray:
    """The 256-colour palette of the DAVIS annotations (the PASCAL VOC colour map), [256, 3] uint8.

    Colour of index i: the bits of i are spread over the three channels, most significant first, as in the
    VOC development kit (index 1 is (128, 0, 0), index 2 is (0, 128, 0), index 3 is (128, 128, 0), ...).
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE = davis_palette()


def read_label(path: str | Path) -> np.ndarray:
    """Read a label map PNG as uint8 [H, W].

    Accepts palette (``P``) PNGs, whose indices are the labels, and 8-bit grayscale (``L``) PNGs, whose values
    are the labels, exactly as ``np.array(PIL.Image.open(path))`` reads them in the official DAVIS toolkit.

    Raises:
        DataError: the file is missing, not a readable image, lossy (JPEG, lossy WebP: :func:`lossy_format`),
            colour (RGB) or 16-bit.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label map not found")
    try:
        with Image.open(path) as img:
            mode = img.mode
            lossy = lossy_format(path, img.format)
            if lossy is not None:
                raise DataError(path, lossy_problem(lossy))
            if mode not in LABEL_MODES:
                raise DataError(
                    path,
                    f"label map must be a palette or 8-bit grayscale PNG, got mode {mode!r} "
                    "(save masks as indexed PNGs, e.g. with corrvos.data.io.write_label)",
                )
            array = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"cannot decode label map ({exc})") from exc
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise DataError(path, f"label map must be [H, W] uint8, got shape {array.shape} dtype {array.dtype}")
    return array


def lossy_format(path: str | Path, pillow_format: str | None) -> str | None:
    """The name of the lossy format of an image file (JPEG, JPEG 2000, lossy WebP), or None when it is lossless.

    Args:
        path: the file (read again only for WebP, whose lossless and lossy variants share a format name).
        pillow_format: the format Pillow read from the file's content (``Image.format``), not its extension.
    """
    if pillow_format in LOSSY_FORMATS:
        return LOSSY_FORMATS[pillow_format]
    if pillow_format == "WEBP" and _webp_is_lossy(Path(path)):
        return "lossy WebP"
    return None


def lossy_problem(lossy: str) -> str:
    """The one-line refusal of a mask stored in the lossy format ``lossy``."""
    return (
        f"mask is a {lossy} file: lossy compression turns each object id into many noisy ids; save masks as "
        "PNG (lossless; BMP, TIFF and lossless WebP work too)"
    )


def _webp_is_lossy(path: Path) -> bool:
    """True when the WebP file's image chunk is ``VP8 `` (lossy) rather than ``VP8L`` (lossless)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    pos = 12  # after "RIFF", the size and "WEBP"
    while pos + 8 <= len(data):
        fourcc, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8 "
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return False


def write_label(path: str | Path, label: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a label map [H, W] (values 0..255) as a palette PNG, atomically.

    Args:
        path: destination ``.png``; parent folders are created.
        label: integer array [H, W] with values in 0..255.
        palette: [256, 3] uint8 colours; the DAVIS palette by default.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise DataError(path, f"label map must be 2-D [H, W], got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise DataError(path, f"label values must lie in 0..255, got {label.min()}..{label.max()}")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette((DAVIS_PALETTE if palette is None else np.asarray(palette, np.uint8)).reshape(-1).tolist())
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def label_header_problem(
    path: str | Path, expected: tuple[int, int] | None = None, *, reference: str = "the ground truth"
) -> tuple[str | None, tuple[int, int] | None]:
    """Check a label-map PNG from its header only (the pixels are not decoded), as the evaluators do up front.

    Args:
        path: the PNG.
        expected: (H, W) it must have, or None.
        reference: what ``expected`` comes from, for the message (e.g. "its input frame").

    Returns:
        (problem, size): a one-line message that starts with the path, or None when the file is fine; and the
        file's (H, W), or None when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        return f"{path}: missing", None
    try:
        with Image.open(path) as img:
            mode, (w, h), pillow_format = img.mode, img.size, img.format
    except Exception as exc:  # Pillow raises many types for corrupt files
        return f"{path}: cannot read image ({exc})", None
    lossy = lossy_format(path, pillow_format)
    if lossy is not None:
        return f"{path}: {lossy_problem(lossy)}", (h, w)
    if mode not in LABEL_MODES:
        return f"{path}: must be a palette or 8-bit grayscale PNG, got mode {mode!r}", (h, w)
    if expected is not None and (h, w) != tuple(expected):
        return f"{path}: size {h}x{w} (HxW) differs from {reference} {expected[0]}x{expected[1]}", (h, w)
    return None, (h, w)


def read_image(path: str | Path) -> np.ndarray:
    """Read a colour frame (JPEG/PNG/BMP) as uint8 RGB [H, W, 3].

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image not found")
    # pixels as stored, as PIL (the official loaders) and image_size() see them: no EXIF rotation
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise DataError(path, "cannot decode image (corrupt or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # [H, W, 3] RGB


def write_image(path: str | Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 RGB [H, W, 3] frame atomically; the format follows the extension (.jpg or .png)."""
    path = Path(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params):
            raise DataError(path, "OpenCV could not encode the image")


def list_frames(
    folder: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS, *, exclude: tuple[str | Path, ...] = ()
) -> list[Path]:
    """Sorted (lexicographic, as DAVIS and YouTube-VOS name frames) image files of a folder, all of one type.

    Args:
        folder: the frame folder.
        extensions: file types that count as frames.
        exclude: files to leave out even if they are in the folder (e.g. a mask saved beside the frames).

    Raises:
        DataError: the folder does not exist, or it mixes image types (``00001.jpg`` beside ``00001.png`` would be
            two frames of one time step): the message names a file of each type.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    skip = {Path(p).resolve() for p in exclude}
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions and p.resolve() not in skip
    )
    kinds: dict[str, Path] = {}
    for p in paths:
        kinds.setdefault(_image_type(p), p)
    if len(kinds) > 1:
        examples = ", ".join(f"{p.name} ({kind})" for kind, p in sorted(kinds.items()))
        raise DataError(
            folder,
            f"frame folder mixes image types: {examples}; keep one type of frame in the folder "
            "(masks belong in a separate folder)",
        )
    return paths


def _image_type(path: Path) -> str:
    suffix = path.suffix.lower()
    return ".jpg" if suffix == ".jpeg" else suffix
