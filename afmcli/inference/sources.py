"""What `afm infer` runs on: an image, a folder of images, our COCO json, a video or
a folder of videos; and the one place that decodes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from afmcli.data.coco_check import load_coco_gt
from afmcli.data.images import IMAGE_SUFFIXES, check_unique_keys, list_images, read_image
from afmcli.errors import AfmError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")
LABELS_SUFFIX = "_labels.json"


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path  # the image, or the video holding the frame
    file_name: str  # as in the COCO json: relative to the images folder; a frame's <video>_<frame:07d>
    frame: int | None = None  # 1-based frame number in the video (VisDrone-VID numbers from 1)
    size: tuple[int, int] | None = None  # (width, height) where known without decoding

    @property
    def name(self) -> str:
        """Name of the per-image outputs (visdrone/<name>.txt, viz/<name>.png)."""
        return self.file_name if self.frame is not None else Path(self.file_name).stem

    @property
    def video(self) -> str | None:
        return self.path.stem if self.frame is not None else None


def json_images_dir(json_path: Path) -> Path:
    """``Datasets/labels/annotations/<split>_labels.json`` -> ``Datasets/images/<split>/``."""
    if not json_path.name.endswith(LABELS_SUFFIX):
        raise AfmError(f"{json_path}: cannot tell the split from the name (expected <split>{LABELS_SUFFIX}); "
                       "pass --images DIR")
    return json_path.parent.parent.parent / "images" / json_path.name[:-len(LABELS_SUFFIX)]


def resolve_source(source: Path, images_dir: Path | None = None,
                   frame_step: int = 1) -> tuple[list[ImageItem], list[dict] | None]:
    """The images (or video frames) to run on and, for a COCO json, its categories.

    A file or folder gets ids 1..N in file-name order, as ``afm convert-visdrone``
    numbers a split, so results line up with a converted split of the same images.
    Videos give every ``frame_step``-th frame from the first, ids 1..N over all
    videos in name order.
    """
    source = Path(source)
    if source.suffix.lower() == ".json":
        # Checked: integer ids without duplicates, relative file names, one name per image.
        coco = load_coco_gt(source, need_sizes=False, need_annotations=False)
        root = images_dir or json_images_dir(source)
        items = [ImageItem(img["id"], root / img["file_name"], img["file_name"],
                           size=(int(img["width"]), int(img["height"])) if "width" in img and "height" in img
                           else None)
                 for img in coco["images"]]
        return check_unique_stems(items, source), list(coco.get("categories") or [])
    if source.is_dir():
        files = list_images(source)
        videos = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if files and videos:
            raise AfmError(f"{source}: holds both images and videos ({files[0].name}, {videos[0].name}); "
                           "give one kind per run")
        if videos:
            return check_unique_stems(video_items(videos, frame_step), source), None
        if not files:
            raise AfmError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                           f"({', '.join(VIDEO_SUFFIXES)}) in this folder")
    elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        return video_items([source], frame_step), None
    elif source.is_file():
        files = [source]
    else:
        raise AfmError(f"{source}: no such file or folder")
    return check_unique_stems([ImageItem(i, p, p.name) for i, p in enumerate(files, start=1)], source), None


def video_items(videos: Sequence[Path], frame_step: int) -> list[ImageItem]:
    """Every ``frame_step``-th frame of each video (container frame count), ids 1..N."""
    if frame_step < 1:
        raise AfmError(f"--frame-step must be >= 1, got {frame_step}")
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
        items += [ImageItem(len(items) + k + 1, video, f"{video.stem}_{frame:07d}", frame, size)
                  for k, frame in enumerate(range(1, count + 1, frame_step))]
    return items


def check_unique_stems(items: list[ImageItem], source: Path) -> list[ImageItem]:
    """Per-image outputs (visdrone/<name>.txt, viz/<name>.png) are named by
    ImageItem.name: two images may not share one."""
    names = {item.file_name: item.name for item in items}
    check_unique_keys(names, source, key_of=names.__getitem__)
    return items


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


class FrameReader:
    """Decodes items in order: images by afmcli.data.images.read_image (BGR uint8; a
    missing, truncated or undecodable one gives None, and afm infer lists it and
    retries it on a rerun), video frames by reading the video forward with OpenCV. It never seeks
    (frame-accurate seeking depends on the codec), so a frame's pixels do not depend
    on where reading began: a resumed or sharded run sees the same frames."""

    def __init__(self):
        self._cap = None
        self._video: Path | None = None
        self._next = 1  # the frame number the capture returns next

    def read(self, item: ImageItem) -> np.ndarray | None:
        if item.frame is None:
            try:
                return read_image(item.path)
            except AfmError:
                return None
        if item.path != self._video or item.frame < self._next:
            self.close()
            self._cap, self._video, self._next = cv2.VideoCapture(str(item.path)), item.path, 1
        while self._next < item.frame:
            if not self._cap.grab():
                return None
            self._next += 1
        ok, frame = self._cap.read()
        self._next += 1
        return frame if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._video = None, None
