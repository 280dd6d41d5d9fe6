"""What `afm infer` and the Python API run on: one :class:`Source` protocol and its kinds
(image files, our COCO json, videos, an image in memory), the one place that decodes them.

A source fixes its images' ids and output names (:class:`ImageItem`), decodes them in
order (``read``), tells an image's size without decoding it (``size``: tile counts for
sharding) and what identifies it (``identity``: the run's fingerprint). A new kind of
source (a tiled GeoTIFF, say) is one class here and one case in :func:`open_source`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import cv2
import numpy as np

from afmcli.data.coco_check import load_coco_gt
from afmcli.data.datasets import DATASET_SUFFIXES, split_json
from afmcli.data.images import IMAGE_SUFFIXES, check_unique_keys, image_key, image_size, list_images, read_image
from afmcli.data.layout import DatasetPaths
from afmcli.errors import AfmError, ParameterError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path  # the image file, or the video holding the frame
    file_name: str  # as in a COCO json: relative to the images folder; a frame's <video>_<frame:07d>
    name: str  # what its per-image outputs are called (visdrone/<name>.txt): its key, never its stem alone
    frame: int | None = None  # a video frame's 1-based number (VisDrone-VID numbers from 1)
    size: tuple[int, int] | None = None  # (width, height) where known without decoding

    def __str__(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path} frame {self.frame}"


class Source(Protocol):
    path: Path  # as given
    items: list[ImageItem]  # in source order
    categories: list[dict] | None  # a COCO json's category table (model classes map by name), else None
    is_video: bool  # items are frames of videos

    def read(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, np.ndarray | None]]:
        """Each item with its BGR uint8 pixels, or None where it cannot be decoded."""

    def size(self, item: ImageItem) -> tuple[int, int] | None:
        """(width, height) without decoding; None where the header cannot tell."""

    def identity(self, item: ImageItem) -> str:
        """What makes this image this image (the run's fingerprint hashes it)."""


def _decode(path: Path) -> np.ndarray | None:
    """afmcli.data.images.read_image; a missing, truncated or undecodable file is None
    (afm infer lists it and retries it on a rerun)."""
    try:
        return read_image(path)
    except AfmError:
        return None


def why_unreadable(item: ImageItem) -> str:
    """Why ``item`` read as None, in the words `afm convert-visdrone` uses for a bad file
    (``a.jpg: empty file, not an image``): its read is repeated, to say why (few fail)."""
    if item.frame is not None:
        return f"{item}: the frame cannot be decoded"
    try:
        read_image(item.path)
    except AfmError as exc:
        return str(exc)
    return f"{item}: could not be read then (it has changed since)"


@dataclass
class ImageFiles:
    """An image file, or the images directly in a folder: ids 1..N in file-name order, as
    ``afm convert-visdrone`` numbers a split, so results line up with a converted split."""

    path: Path
    items: list[ImageItem] = field(default_factory=list)
    categories: list[dict] | None = None
    is_video = False

    @classmethod
    def of(cls, path: Path, files: Sequence[Path]) -> "ImageFiles":
        check_unique_keys([p.name for p in files], path)  # a.jpg beside a.png: one output name
        return cls(path, [ImageItem(i, p, p.name, image_key(p.name)) for i, p in enumerate(files, start=1)])

    def read(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, np.ndarray | None]]:
        for item in items:
            yield item, _decode(item.path)

    def size(self, item: ImageItem) -> tuple[int, int] | None:
        if item.size is not None:
            return item.size
        try:
            return image_size(item.path, complete=False)
        except AfmError:
            return None

    def identity(self, item: ImageItem) -> str:
        return str(item.path.resolve())


@dataclass
class CocoImages(ImageFiles):
    """The images of a COCO json (checked: integer ids without duplicates, relative names,
    one name per image), under ``images_dir`` or the split's Datasets/images/<split>/;
    its categories name the category id of each model class."""

    @classmethod
    def open(cls, ann_file: Path, images_dir: Path | None = None) -> "CocoImages":
        coco = load_coco_gt(ann_file, need_sizes=False, need_annotations=False)
        root = images_dir or DatasetPaths.from_ann_file(ann_file).images
        items = [ImageItem(img["id"], root / img["file_name"], img["file_name"], image_key(img["file_name"]),
                           size=(int(img["width"]), int(img["height"])) if "width" in img and "height" in img
                           else None)
                 for img in coco["images"]]
        if items and not any(item.path.is_file() for item in items):  # a wrong images folder, before any work
            raise ParameterError(f"{ann_file}: none of its {len(items)} image(s) exists (first: {items[0].path}); "
                                 "check the path or {images_dir}", "images_dir")
        return cls(ann_file, items, list(coco.get("categories") or []))


@dataclass
class Videos:
    """Every ``frame_step``-th frame from the first of each video (OpenCV, container frame
    count), ids 1..N over the videos in name order, named ``<video>_<frame:07d>``.

    Frames are read forward, never by seeking (frame-accurate seeking depends on the
    codec), so a frame's pixels do not depend on where reading began: a resumed or
    sharded run sees the same frames."""

    path: Path
    items: list[ImageItem] = field(default_factory=list)
    categories: list[dict] | None = None
    is_video = True

    @classmethod
    def open(cls, path: Path, videos: Sequence[Path], frame_step: int) -> "Videos":
        items: list[ImageItem] = []
        for video in videos:
            cap = cv2.VideoCapture(str(video))
            try:
                if not cap.isOpened():
                    raise AfmError(f"{video}: OpenCV cannot open this video")
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            finally:
                cap.release()
            if count <= 0:
                raise AfmError(f"{video}: no frames")
            for frame in range(1, count + 1, frame_step):
                name = f"{video.stem}_{frame:07d}"
                items.append(ImageItem(len(items) + 1, video, name, name, frame, size))
        check_unique_keys([item.name for item in items], path, key_of=str)  # a.mp4 beside a.avi
        return cls(path, items)

    def read(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, np.ndarray | None]]:
        cap, video, next_frame = None, None, 1  # the frame number the capture returns next
        try:
            for item in items:
                if item.path != video or item.frame < next_frame:
                    if cap is not None:
                        cap.release()
                    cap, video, next_frame = cv2.VideoCapture(str(item.path)), item.path, 1
                while next_frame < item.frame and cap.grab():
                    next_frame += 1
                if next_frame < item.frame:
                    yield item, None
                    continue
                ok, pixels = cap.read()
                next_frame += 1
                yield item, pixels if ok else None
        finally:
            if cap is not None:
                cap.release()

    def size(self, item: ImageItem) -> tuple[int, int] | None:
        return item.size

    def identity(self, item: ImageItem) -> str:
        return f"{item.path.resolve()} frame {item.frame}"


@dataclass
class ArrayImage:
    """One image already in memory (BGR uint8, as OpenCV reads), image id 1."""

    image: np.ndarray
    name: str = "image"
    path: Path = Path("<array>")
    categories: list[dict] | None = None
    is_video = False

    def __post_init__(self):
        if not (isinstance(self.image, np.ndarray) and self.image.dtype == np.uint8 and self.image.ndim == 3
                and self.image.shape[2] == 3 and min(self.image.shape[:2]) > 0):
            shape = getattr(self.image, "shape", None)
            raise ParameterError(f"{{image}} must be a BGR uint8 array (H, W, 3), got "
                                 f"{type(self.image).__name__} {getattr(self.image, 'dtype', '')} {shape}", "image")
        height, width = self.image.shape[:2]
        self.items = [ImageItem(1, self.path, self.name, self.name, size=(width, height))]

    def read(self, items: Iterable[ImageItem]) -> Iterator[tuple[ImageItem, np.ndarray | None]]:
        for item in items:
            yield item, self.image

    def size(self, item: ImageItem) -> tuple[int, int] | None:
        return item.size

    def identity(self, item: ImageItem) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.image).tobytes()).hexdigest()


def open_source(path: str | Path, images_dir: Path | None = None, frame_step: int = 1,
                split: str = "val") -> Source:
    """An image, a folder of images, our COCO json, a video, a folder of videos, or a dataset
    yaml (a data.yaml, ...), of which ``split`` is read: its json as `afm evaluate --gt` scores it
    (afmcli.data.datasets.split_json), so the image and category ids are the same."""
    path = Path(path)
    if frame_step < 1:
        raise ParameterError(f"{{frame_step}} must be >= 1, got {frame_step}", "frame_step")
    if path.suffix.lower() in DATASET_SUFFIXES:
        if images_dir is not None:
            raise ParameterError(f"{path}: a dataset names its own image folders; {{images_dir}} goes with a "
                                 "COCO json source", "images_dir")
        source = CocoImages.open(*split_json(path, split))
    elif path.suffix.lower() == ".json":
        source = CocoImages.open(path, images_dir)
    elif path.is_dir():
        files = list_images(path)
        videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if files and videos:
            raise AfmError(f"{path}: holds both images and videos ({files[0].name}, {videos[0].name}); "
                           "give one kind per run")
        if not files and not videos:
            raise AfmError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                           f"({', '.join(VIDEO_SUFFIXES)}) in this folder")
        source = Videos.open(path, videos, frame_step) if videos else ImageFiles.of(path, files)
    elif path.is_file():
        source = (Videos.open(path, [path], frame_step) if path.suffix.lower() in VIDEO_SUFFIXES
                  else ImageFiles.of(path, [path]))
    else:
        raise AfmError(f"{path}: no such file or folder")
    if frame_step != 1 and not source.is_video:
        raise ParameterError("{frame_step} applies to video sources", "frame_step")
    return source


def category_ids(classes: Sequence[str], categories: list[dict] | None, source: Path | None = None) -> list[int]:
    """Category id of each model class: by name in a COCO json's categories, else i + 1
    (VisDrone's ids when the classes are VisDrone's, in their order)."""
    if not categories:
        return list(range(1, len(classes) + 1))
    by_name = {c.get("name"): c.get("id") for c in categories}
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise AfmError(f"{source}: no category named {missing[0]!r} (the model's classes: {', '.join(classes)})")
    return [int(by_name[name]) for name in classes]
