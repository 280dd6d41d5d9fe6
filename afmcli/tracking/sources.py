"""What `afm track` runs on: videos (afmcli.inference.sources.Videos) and image sequences
in VisDrone-MOT's layout (``sequences/<seq>/0000001.jpg``), one sequence or a folder of them.

A sequence's frames are its images in the order of the number in their names (``7.jpg``
before ``10.jpg`` whatever the order on disk or of the names as text); that number is the
frame number of the results (VisDrone-MOT numbers from 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Iterator

from afmcli.data.images import list_images
from afmcli.errors import AfmError, ParameterError
from afmcli.inference.sources import VIDEO_SUFFIXES, ImageFiles, ImageItem, Source, open_source

_NUMBER = re.compile(r"(\d+)$")


def frame_number(path: Path) -> int:
    """The number ending an image's stem (``0000007.jpg``, ``img7.png``: 7)."""
    match = _NUMBER.search(path.stem)
    if match is None:
        raise AfmError(f"{path}: no frame number at the end of its name (a sequence's images are numbered, "
                       "as VisDrone-MOT's 0000001.jpg)")
    return int(match.group(1))


@dataclass
class ImageSequences(ImageFiles):
    """Image sequences, ids 1..N over the sequences in name order, then frame number;
    each image named ``<seq>/<frame:07d>``."""

    is_video = True

    @classmethod
    def open(cls, path: Path, sequences: dict[Path, list[Path]], frame_step: int) -> "ImageSequences":
        """``sequences``: each sequence folder with its images (list_images), in sequence order."""
        items: list[ImageItem] = []
        for folder, images in sequences.items():
            frames: dict[int, Path] = {}
            for image in images:
                number = frame_number(image)
                if number in frames:
                    raise AfmError(f"{folder}: {frames[number].name} and {image.name} are both frame {number}")
                frames[number] = image
            for number in sorted(frames)[::frame_step]:
                name = f"{folder.name}/{number:07d}"
                items.append(ImageItem(len(items) + 1, frames[number], f"{folder.name}/{frames[number].name}",
                                       name, number))
        return cls(path, items)


def sequence_of(item: ImageItem) -> str:
    """The sequence an item is a frame of: its video's stem, or its sequence folder's name."""
    return item.path.stem if item.path.suffix.lower() in VIDEO_SUFFIXES else item.path.parent.name


def sequences(items: list[ImageItem]) -> Iterator[tuple[str, list[ImageItem]]]:
    """Items grouped by sequence, in source order (a source's items are grouped already)."""
    for name, group in groupby(items, key=sequence_of):
        yield name, list(group)


def open_track_source(path: str | Path, frame_step: int = 1) -> Source:
    """A video, a folder of videos, an image sequence folder or a folder of them."""
    path = Path(path)
    if frame_step < 1:
        raise ParameterError(f"{{frame_step}} must be >= 1, got {frame_step}", "frame_step")
    if path.is_dir() and not any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.iterdir() if p.is_file()):
        images = list_images(path)
        if images:
            return ImageSequences.open(path, {path: images}, frame_step)
        # each folder listed once: its images are the sequence's frames
        folders = {p: list_images(p) for p in sorted(path.iterdir()) if p.is_dir()}
        folders = {folder: images for folder, images in folders.items() if images}
        if not folders:
            raise AfmError(f"{path}: no videos, images or folders of images (sequences) in this folder")
        return ImageSequences.open(path, folders, frame_step)
    source = open_source(path, frame_step=frame_step)
    if not source.is_video:
        raise AfmError(f"{path}: not a video or an image sequence (afm track follows objects from frame to frame)")
    return source
