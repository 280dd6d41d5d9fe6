"""Image files: the one list of image types, image identity, and reading that
rejects damaged files.

Every subcommand lists images with :func:`list_images` and reads them with
:func:`read_image` or :func:`image_size`. A truncated JPEG or PNG decodes
"successfully" in OpenCV (libjpeg only prints a warning and fills the rest
grey), so both check that the file ends where its format says it ends.

Images are identified by their path relative to the images folder, without
the suffix (:func:`image_key`): ``seq0/frame001.jpg`` and ``seq4/frame001.jpg``
are two images, and ``a.jpg`` next to ``a.png`` is refused, because the
per-image outputs (``<key>.txt``, ``<key>.png``) would collide.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from afmcli.errors import AfmError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_JPEG = (".jpg", ".jpeg")
# A JPEG's last scan (SOS) must be followed by its end marker (EOI); bytes after
# EOI (camera trailers) are allowed. Inside entropy-coded data 0xFF is always
# stuffed, so neither marker can appear there by chance.
_SOS, _EOI = b"\xff\xda", b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (one of IMAGE_SUFFIXES), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p) and p.is_file())


def image_stem(file_name: str | os.PathLike) -> str:
    return Path(file_name).stem


def image_key(file_name: str | os.PathLike) -> str:
    """An image's identity: its relative path without the suffix, '/'-separated."""
    return str(PurePosixPath(Path(file_name).as_posix()).with_suffix(""))


def check_unique_keys(names: Iterable[str], source: str | os.PathLike, key_of=image_key) -> None:
    """Refuse two images with one key (a.jpg and a.png): their outputs would collide.

    ``key_of`` gives the name outputs are written under (the image key, or the
    bare stem where a consumer still looks files up by stem)."""
    seen: dict[str, str] = {}
    for name in names:
        key = key_of(name)
        if key in seen:
            raise AfmError(f"{source}: {seen[key]} and {name} are two images with one name ({key}); "
                           f"rename one (per-image outputs are named {key}.txt / {key}.png)")
        seen[key] = name


def _truncation(path: Path, data: bytes) -> str | None:
    """Why ``data`` is an incomplete image file, or None."""
    suffix = path.suffix.lower()
    if suffix in _JPEG and data[:2] == b"\xff\xd8":
        if data.rfind(_EOI) < data.rfind(_SOS):
            return "truncated JPEG (no end marker after the image data)"
    elif suffix == ".png" and data[:4] == b"\x89PNG":
        if _PNG_END not in data[-64:]:
            return "truncated PNG (no IEND chunk)"
    elif suffix == ".bmp" and data[:2] == b"BM" and len(data) >= 6:
        if len(data) < int.from_bytes(data[2:6], "little"):
            return "truncated BMP (shorter than its header says)"
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise AfmError(f"{path}: no such image") from None
    except OSError as exc:
        raise AfmError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise AfmError(f"{path}: empty file, not an image")
    return data


def read_image(path: str | os.PathLike, flags: int | None = None) -> np.ndarray:
    """Decode a whole image (BGR uint8 by default, as mmcv's LoadImageFromFile).

    A missing, empty, truncated or undecodable file is an AfmError naming it.
    """
    import cv2

    path = Path(path)
    data = _read_bytes(path)
    problem = _truncation(path, data)
    if problem:
        raise AfmError(f"{path}: {problem}; the file is damaged")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    if img is None:
        raise AfmError(f"{path}: not a readable image (corrupt or unsupported format)")
    return img


def image_size(path: str | os.PathLike, complete: bool = True) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels; a header that
    cannot be read falls back to decoding.

    ``complete``: also check that the file is whole (it will be decoded later, as
    by convert's crops and training); False where only the size matters.
    """
    import imagesize

    path = Path(path)
    if complete:
        problem = _truncation(path, _read_bytes(path))
        if problem:
            raise AfmError(f"{path}: {problem}; the file is damaged")
    elif not path.is_file():
        raise AfmError(f"{path}: no such image")
    try:
        width, height = imagesize.get(path)
    except Exception:  # imagesize raises assorted errors on damaged headers
        width = height = -1
    if width > 0 and height > 0:
        return int(width), int(height)
    img = read_image(path, flags=-1)  # cv2.IMREAD_UNCHANGED
    return int(img.shape[1]), int(img.shape[0])
