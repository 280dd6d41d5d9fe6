"""Tiles of an image: lazy crops, batches, and boxes shifted back to the image.

Tile placement itself is :func:`afmcli.data.slicing.slice_windows` (SAHI's).
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator, TypeVar

import numpy as np

from afmcli.data.slicing import box_areas_xyxy, clip_boxes_xyxy, slice_windows
from afmcli.detections import Detections

T = TypeVar("T")


def plan_windows(height: int, width: int, slice_size: int, overlap: float, slices: bool = True,
                 full: bool = True) -> np.ndarray:
    """The tile windows (xyxy) an image gets. When one tile would be the whole image and
    the full pass runs, there are none (the tile would repeat the full pass), as SAHI does."""
    if not slices:
        return np.zeros((0, 4), dtype=np.int64)
    windows = slice_windows(height, width, slice_size, slice_size, overlap, overlap)
    return windows[:0] if full and len(windows) == 1 else windows


def iter_crops(image: np.ndarray, windows: np.ndarray) -> Iterator[np.ndarray]:
    """The crops of ``image`` (H, W[, C]) under xyxy ``windows``, one at a time.

    Crops are views: nothing is copied until the test pipeline resizes them, so
    a huge image costs one batch of tiles at a time, not all tiles at once.
    """
    for x1, y1, x2, y2 in np.asarray(windows, dtype=np.int64):
        yield image[y1:y2, x1:x2]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def window_to_image(dets: Detections, window) -> Detections:
    """Detections made on the crop ``window`` (x1, y1, x2, y2), in image coordinates.

    Boxes are first clipped to the crop (what lies outside it was not seen, as
    SAHI does), boxes left empty are dropped, then shifted by the window's origin.
    """
    x1, y1, x2, y2 = (float(v) for v in window)
    boxes = clip_boxes_xyxy(dets.boxes, (0.0, 0.0, x2 - x1, y2 - y1))
    keep = box_areas_xyxy(boxes) > 0
    shifted = boxes[keep] + np.array([x1, y1, x1, y1])
    return Detections(shifted, dets.scores[keep], dets.labels[keep])
