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

Orientation: afm works on the upright image, the one a JPEG's EXIF orientation tag
describes, as ultralytics (its YOLO labels refer to the EXIF-rotated image), mmcv's
image loader and OpenCV's colour decoding do. :func:`image_size` gives the upright
size and :func:`read_image` upright pixels, whatever the flags.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np

from afmcli.errors import AfmError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_JPEG = (".jpg", ".jpeg")
# A JPEG's last scan (SOS) must be followed by its end marker (EOI); bytes after
# EOI (camera trailers) are allowed. Inside entropy-coded data 0xFF is always
# stuffed, so neither marker can appear there by chance.
_SOS, _EOI = b"\xff\xda", b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"
_TAIL = 64
_EXIF_ORIENTATION = 0x0112


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (one of IMAGE_SUFFIXES), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p) and p.is_file())


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


def _truncation(suffix: str, head: bytes, tail: bytes, size: int, whole: Callable[[], bytes]) -> str | None:
    """Why a file (its first and last _TAIL bytes, its size, and ``whole()`` giving all
    of it, only called when the ends do not settle it) is an incomplete image, or None."""
    if suffix in _JPEG and head[:2] == b"\xff\xd8":
        if tail.rstrip(b"\x00").endswith(_EOI):
            return None  # the usual case; otherwise a trailer may follow the end marker
        data = whole()
        if data.rfind(_EOI) < data.rfind(_SOS):
            return "truncated JPEG (no end marker after the image data)"
    elif suffix == ".png" and head[:4] == b"\x89PNG":
        if _PNG_END not in tail:
            return "truncated PNG (no IEND chunk)"
    elif suffix == ".bmp" and head[:2] == b"BM" and len(head) >= 6:
        if size < int.from_bytes(head[2:6], "little"):
            return "truncated BMP (shorter than its header says)"
    return None


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn OS errors while reading ``path`` into one-line AfmErrors."""
    try:
        yield
    except FileNotFoundError:
        raise AfmError(f"{path}: no such image") from None
    except OSError as exc:
        raise AfmError(f"{path}: cannot read ({exc.strerror})") from None


def _file_truncation(path: Path) -> str | None:
    """:func:`_truncation` of a file, reading its two ends (all of it only when needed)."""
    with _reading(path), open(path, "rb") as f:
        head = f.read(_TAIL)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    if not size:
        raise AfmError(f"{path}: empty file, not an image")
    return _truncation(path.suffix.lower(), head, tail, size, lambda: _read_bytes(path))


def _read_bytes(path: Path) -> bytes:
    with _reading(path):
        data = Path(path).read_bytes()
    if not data:
        raise AfmError(f"{path}: empty file, not an image")
    return data


def exif_orientation(source) -> int:
    """A JPEG's EXIF orientation (1..8; 1 upright, also when there is none or it is
    unreadable). ``source``: a path or the file's bytes. Other formats: 1 (OpenCV
    applies EXIF orientation to JPEGs only)."""
    import io

    from PIL import Image

    if isinstance(source, (bytes, bytearray)):
        if source[:2] != b"\xff\xd8":
            return 1
        source = io.BytesIO(source)
    elif Path(source).suffix.lower() not in _JPEG:
        return 1
    try:
        with Image.open(source) as img:
            value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # damaged EXIF: OpenCV decodes such files as stored
        return 1
    return value if 1 <= value <= 8 else 1


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels as stored -> the upright image EXIF ``orientation`` (1..8) describes."""
    import cv2

    if orientation in (2, 4, 5, 7):  # the mirrored ones: flip first, then the rotation of 1, 3, 6, 8
        img = cv2.flip(img, 1)
        orientation = {2: 1, 4: 3, 5: 8, 7: 6}[orientation]
    turn = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(orientation)
    return img if turn is None else cv2.rotate(img, turn)


def read_image(path: str | os.PathLike, flags: int | None = None) -> np.ndarray:
    """Decode a whole image (BGR uint8 by default, as mmcv's LoadImageFromFile), upright.

    OpenCV turns a JPEG upright itself except for IMREAD_UNCHANGED (negative flags):
    then afm applies the EXIF orientation. A missing, empty, truncated or undecodable
    file is an AfmError naming it.
    """
    import cv2

    path = Path(path)
    data = _read_bytes(path)
    problem = _truncation(path.suffix.lower(), data[:_TAIL], data[-_TAIL:], len(data), lambda: data)
    if problem:
        raise AfmError(f"{path}: {problem}; the file is damaged")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    if img is None:
        raise AfmError(f"{path}: not a readable image (corrupt or unsupported format)")
    if flags is not None and flags < 0:
        img = upright(img, exif_orientation(data))
    return img


def save_image(path: str | os.PathLike, pixels: np.ndarray, params: Iterable[int] = ()) -> None:
    """Encode ``pixels`` in the format of ``path``'s suffix and write them there.

    Unlike ``cv2.imwrite``, which only returns False, a failed write raises the OS's error
    (a full disk, a read-only file system) with its reason; afmcli.io.atomic_path names the
    output it belongs to."""
    import cv2

    path = Path(path)
    ok, data = cv2.imencode(path.suffix, pixels, list(params))
    if not ok:
        raise AfmError(f"{path}: cannot encode the image as {path.suffix}")
    with open(path, "wb") as f:
        f.write(data.tobytes())


def image_size(path: str | os.PathLike, complete: bool = True) -> tuple[int, int]:
    """The upright image's (width, height) from the header (imagesize applies a JPEG's
    EXIF orientation), without decoding the pixels; a header that cannot be read falls
    back to decoding.

    ``complete``: also check that the file is whole (it will be decoded later, as
    by convert's crops and training); False where only the size matters.
    """
    import imagesize

    path = Path(path)
    if complete:
        problem = _file_truncation(path)
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
