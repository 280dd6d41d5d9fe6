"""One list of image types, images identified by relative path, and damaged files
refused instead of decoded half grey (afmcli/data/images.py)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from afmcli.data.images import (IMAGE_SUFFIXES, check_unique_keys, image_key, image_size, list_images,
                                read_image)
from afmcli.errors import AfmError

SHARED = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REAL = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train" / "images"


def _image(h=120, w=160) -> np.ndarray:
    """A textured image (a flat one compresses to almost nothing)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cut(path: Path, fraction: float = 1 / 3) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut" + path.suffix)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_listed_type_reads_back(tmp_path, suffix):
    img = _image()
    path = tmp_path / f"a{suffix}"
    assert cv2.imwrite(str(path), img)
    assert read_image(path).shape == (120, 160, 3)
    assert image_size(path) == (160, 120)
    assert list_images(tmp_path) == [path]


@pytest.mark.parametrize("suffix, reason", [
    (".jpg", "truncated JPEG (no end marker after the image data)"),
    (".png", "truncated PNG (no IEND chunk)"),
    (".bmp", "truncated BMP (shorter than its header says)"),
    (".tif", "not a readable image (corrupt or unsupported format)"),
    (".webp", "not a readable image (corrupt or unsupported format)"),
])
def test_a_file_cut_to_a_third_is_refused(tmp_path, suffix, reason):
    path = tmp_path / f"a{suffix}"
    cv2.imwrite(str(path), _image(480, 640))
    cut = _cut(path)
    assert suffix != ".jpg" or cv2.imread(str(cut)) is not None  # OpenCV alone decodes it half grey
    with pytest.raises(AfmError) as info:
        read_image(cut)
    assert str(info.value).startswith(f"{cut}: {reason}")
    if suffix in (".jpg", ".png", ".bmp"):  # checked without decoding
        with pytest.raises(AfmError, match="the file is damaged"):
            image_size(cut)


def test_missing_empty_and_junk_files(tmp_path):
    with pytest.raises(AfmError, match=r"x.jpg: no such image$"):
        read_image(tmp_path / "x.jpg")
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(AfmError, match=r"e.png: empty file, not an image$"):
        read_image(tmp_path / "e.png")
    (tmp_path / "j.jpg").write_bytes(b"hello, not a jpeg")
    with pytest.raises(AfmError, match=r"j.jpg: not a readable image"):
        read_image(tmp_path / "j.jpg")


def test_jpeg_with_trailer_after_its_end_marker_is_whole(tmp_path):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), _image())
    path.write_bytes(path.read_bytes() + b"camera trailer \x00\x01")
    assert read_image(path).shape == (120, 160, 3)


def test_image_key_is_the_relative_path_without_suffix():
    assert image_key("a.jpg") == "a"
    assert image_key("seq0/frame001.jpg") == "seq0/frame001"
    assert image_key("seq0/frame001.jpg") != image_key("seq4/frame001.jpg")
    assert image_key("a.b.png") == "a.b"


def test_two_images_with_one_key_are_refused():
    check_unique_keys(["seq0/f1.jpg", "seq4/f1.jpg"], "gt.json")
    with pytest.raises(AfmError) as info:
        check_unique_keys(["a.jpg", "b.jpg", "a.png"], "gt.json")
    assert str(info.value) == ("gt.json: a.jpg and a.png are two images with one name (a); rename one "
                               "(per-image outputs are named a.txt / a.png)")


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real VisDrone images not found at {REAL} (set AFM_SHARED)")
def test_real_images_pass_and_a_real_jpeg_cut_to_a_third_fails(tmp_path):
    files = sorted(REAL.glob("*.jpg"))
    for path in files[:40]:
        assert read_image(path).ndim == 3
    big = next(p for p in files if image_size(p) == (2000, 1500))
    cut = tmp_path / big.name
    cut.write_bytes(big.read_bytes()[: big.stat().st_size // 3])
    with pytest.raises(AfmError, match="truncated JPEG"):
        read_image(cut)
