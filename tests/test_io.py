"""Tests of corrvos.data.io: palette label maps, grayscale and refused PNGs, colour frames, frame listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrvos.data.io import DAVIS_PALETTE, list_frames, read_image, read_label, write_image, write_label
from corrvos.errors import DataError


def _voc_color(index: int) -> tuple[int, int, int]:
    """Independent re-statement of the PASCAL VOC colour map: bit j of (r, g, b) comes from bit 3k (+1, +2)."""
    r = g = b = 0
    for k in range(8):
        r |= ((index >> (3 * k)) & 1) << (7 - k)
        g |= ((index >> (3 * k + 1)) & 1) << (7 - k)
        b |= ((index >> (3 * k + 2)) & 1) << (7 - k)
    return r, g, b


def test_davis_palette_values():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    # published colours of the DAVIS / VOC annotations
    assert tuple(DAVIS_PALETTE[0]) == (0, 0, 0)
    assert tuple(DAVIS_PALETTE[1]) == (128, 0, 0)
    assert tuple(DAVIS_PALETTE[2]) == (0, 128, 0)
    assert tuple(DAVIS_PALETTE[3]) == (128, 128, 0)
    assert tuple(DAVIS_PALETTE[4]) == (0, 0, 128)
    assert tuple(DAVIS_PALETTE[255]) == (224, 224, 192)
    assert all(tuple(DAVIS_PALETTE[i]) == _voc_color(i) for i in range(256))


def test_palette_round_trip(tmp_path: Path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 256, (23, 37)).astype(np.uint8)
    label[0, :4] = [0, 1, 2, 255]
    path = tmp_path / "sub" / "00000.png"
    write_label(path, label)
    back = read_label(path)
    assert back.dtype == np.uint8 and back.shape == (23, 37)
    np.testing.assert_array_equal(back, label)
    with Image.open(path) as img:  # stored as an indexed PNG with the DAVIS palette
        assert img.mode == "P" and img.format == "PNG"
        palette = np.array(img.getpalette()[: 256 * 3], np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(palette, DAVIS_PALETTE)
    assert not list(path.parent.glob(".*")), "the atomic write left a temporary file"


def test_write_label_custom_palette_and_int_input(tmp_path: Path):
    label = np.array([[0, 1], [2, 3]], np.int64)
    palette = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 3))
    write_label(tmp_path / "a.png", label, palette=palette)
    np.testing.assert_array_equal(read_label(tmp_path / "a.png"), label)
    with Image.open(tmp_path / "a.png") as img:
        assert img.getpalette()[3:6] == [1, 1, 1]


def test_grayscale_png_is_read_as_its_values(tmp_path: Path):
    label = np.array([[0, 3, 7], [255, 1, 0]], np.uint8)
    Image.fromarray(label, mode="L").save(tmp_path / "gray.png")
    back = read_label(tmp_path / "gray.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, label)


def test_one_bit_png_is_read_as_uint8(tmp_path: Path):
    bits = np.array([[True, False], [False, True]])
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    back = read_label(tmp_path / "bits.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, bits.astype(np.uint8))


def test_rgb_png_is_refused_with_the_file_named(tmp_path: Path):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 5, 3), np.uint8), mode="RGB").save(path)
    with pytest.raises(DataError, match="RGB") as info:
        read_label(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_16_bit_png_is_refused(tmp_path: Path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 5), 300, np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really a 16-bit PNG
    with pytest.raises(DataError, match="mode") as info:
        read_label(path)
    assert info.value.path == path


@pytest.mark.parametrize("content", [b"", b"not a png at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_label_is_refused_with_the_file_named(tmp_path: Path, content: bytes):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_label(path)
    assert info.value.path == path and "broken.png" in str(info.value)


def test_truncated_png_is_refused(tmp_path: Path):
    good = tmp_path / "good.png"
    write_label(good, np.random.default_rng(1).integers(0, 5, (64, 64)).astype(np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError) as info:
        read_label(path)
    assert info.value.path == path


def test_missing_label_is_refused(tmp_path: Path):
    with pytest.raises(DataError, match="not found") as info:
        read_label(tmp_path / "nope.png")
    assert info.value.path == tmp_path / "nope.png"


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 3)), np.array([[0, 256]]), np.array([[-1, 0]])])
def test_write_label_rejects_bad_arrays(tmp_path: Path, bad: np.ndarray):
    with pytest.raises(DataError):
        write_label(tmp_path / "x.png", bad)
    assert not (tmp_path / "x.png").exists()


def test_image_round_trip_png_exact_and_jpeg_close(tmp_path: Path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    write_image(tmp_path / "f.png", rgb)
    back = read_image(tmp_path / "f.png")
    assert back.dtype == np.uint8 and back.shape == (20, 30, 3)
    np.testing.assert_array_equal(back, rgb)  # channel order preserved (RGB in, RGB out)
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0], smooth[..., 1], smooth[..., 2] = 200, 40, 90
    write_image(tmp_path / "f.jpg", smooth, quality=95)
    jpg = read_image(tmp_path / "f.jpg")
    assert np.abs(jpg.astype(int) - smooth).max() <= 3


def test_read_image_errors_name_the_file(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "none.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError) as info:
        read_image(bad)
    assert info.value.path == bad


def test_list_frames_sorted_and_filtered(tmp_path: Path):
    for name in ["00010.jpg", "00002.JPG", "00001.jpeg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in list_frames(tmp_path)] == ["00001.jpeg", "00002.JPG", "00010.jpg"]
    with pytest.raises(DataError, match="folder not found"):
        list_frames(tmp_path / "missing")


def test_list_frames_refuses_mixed_types_and_leaves_out_excluded_files(tmp_path: Path):
    """00001.jpg beside 00001.png would be two frames of one time step: refused, naming a file of each type; a
    mask saved in the frame folder is left out when excluded."""
    for name in ["00000.jpg", "00001.jpg", "00001.png"]:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(DataError, match=r"mixes image types: 00000\.jpg \(\.jpg\), 00001\.png \(\.png\)"):
        list_frames(tmp_path)
    assert [p.name for p in list_frames(tmp_path, exclude=(tmp_path / "00001.png",))] == ["00000.jpg", "00001.jpg"]


def test_read_image_ignores_exif_orientation(tmp_path: Path):
    """Pixels as stored, like PIL (the official loaders) and the header size used by the readers: an EXIF
    rotation must not turn a 40x60 frame into 60x40 (it would no longer match its mask)."""
    from corrvos.data.sequence import image_size

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :, 0] = 250  # a red top band
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    path = tmp_path / "phone.jpg"
    img.save(path, quality=95, exif=exif)
    out = read_image(path)
    with Image.open(path) as pil:
        reference = np.array(pil.convert("RGB"))
    assert out.shape == reference.shape == (40, 60, 3) and image_size(path) == (40, 60)
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 8  # same pixels up to JPEG decoder rounding
    assert out[:10, :, 0].mean() > 200 and out[20:, :, 0].mean() < 50
