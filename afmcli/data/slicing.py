"""Tile placement and box bookkeeping for sliced (cropped) images.

Placement is SAHI's (``sahi.slicing.get_slice_bboxes``): tiles step by
``slice - int(overlap * slice)``, and a tile that would cross the right or bottom
edge is pushed back so that it ends flush with the edge; an image smaller than a
tile gives one tile, the whole image. Used for sliced training sets here and for
sliced inference.
"""

from __future__ import annotations

import numpy as np

from afmcli.errors import AfmError, ParameterError, warn


def _starts(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """1-D tile spans (start, end) in SAHI's order and placement."""
    spans = []
    start = 0
    while True:
        end = start + size
        if end > length:
            end = length
            start = max(0, length - size)
        spans.append((start, end))
        if end >= length:
            return spans
        start = end - overlap


def slice_windows(height: int, width: int, slice_h: int, slice_w: int,
                  overlap_h: float, overlap_w: float) -> np.ndarray:
    """Tiles covering an image, as an (N, 4) int64 array of x1, y1, x2, y2.

    Rows first (top to bottom), then columns, as SAHI lists them. ``overlap_*`` are
    ratios of the tile size in [0, 1).
    """
    if slice_h <= 0 or slice_w <= 0:
        raise AfmError(f"slice size must be positive, got {slice_h}x{slice_w}")
    if not (0 <= overlap_h < 1 and 0 <= overlap_w < 1):
        raise AfmError(f"overlap ratio must be in [0, 1), got {overlap_h}, {overlap_w}")
    # int() truncation as in SAHI, so that tiles land on the same pixels.
    ys = _starts(int(height), int(slice_h), int(overlap_h * slice_h))
    xs = _starts(int(width), int(slice_w), int(overlap_w * slice_w))
    return np.array([(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs], dtype=np.int64).reshape(-1, 4)


# Above this many tiles per image (2000x1500 at --slice 640 takes 12, at --overlap 0.5 20)
# the overlap is almost surely a typo for a smaller ratio, or the image is huge: say so
# before the work.
MANY_TILES_PER_IMAGE = 200
USUAL_OVERLAP = (0.2, 0.25)


def check_overlap(overlap: float) -> None:
    if not 0 <= overlap < 1:
        raise ParameterError(f"{{overlap}} must be a ratio in [0, 1), got {overlap}", "overlap")


def tile_count(height: int, width: int, slice_size: int, overlap: float) -> int:
    """How many tiles :func:`slice_windows` makes, without making them."""
    step = int(overlap * slice_size)
    return len(_starts(int(height), slice_size, step)) * len(_starts(int(width), slice_size, step))


def warn_many_tiles(sizes: list[tuple[int, int]], slice_size: int, overlap: float) -> bool:
    """Warn when (width, height) ``sizes`` make more than MANY_TILES_PER_IMAGE tiles per image,
    with the option that helps: a usual overlap, or (the overlap being usual) a larger slice.
    Returns whether it warned."""
    counts = [tile_count(h, w, slice_size, overlap) for w, h in sizes]
    if not counts or max(counts) <= MANY_TILES_PER_IMAGE:
        return False
    worst = counts.index(max(counts))
    one = f"{max(counts):,} tiles for a {sizes[worst][0]}x{sizes[worst][1]} image"
    total = f"{sum(counts):,} tiles for {len(counts):,} images ({one})" if len(counts) > 1 else one
    low, high = USUAL_OVERLAP
    advice = (f"the usual overlap is {low} to {high}" if overlap > high else
              "a larger {slice_size} makes fewer")
    warn(f"{{slice_size}} {slice_size} {{overlap}} {overlap} makes {total}; {advice}", "slice_size", "overlap")
    return True


def clip_boxes_xyxy(boxes: np.ndarray, window: np.ndarray | tuple) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to a window x1, y1, x2, y2 (may leave empty boxes)."""
    x1, y1, x2, y2 = (float(v) for v in window)
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    np.clip(out[:, 0::2], x1, x2, out=out[:, 0::2])
    np.clip(out[:, 1::2], y1, y2, out=out[:, 1::2])
    return out


def box_areas_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def boxes_in_window(boxes: np.ndarray, window: np.ndarray | tuple,
                    min_visible: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of an image as they appear in a crop.

    Returns ``(kept_index, boxes_in_crop)``: the indices of the boxes of which at
    least ``min_visible`` of their area lies in the window (and some area at all),
    and those boxes clipped to the window, in the crop's coordinates (xyxy).
    A box of zero area is never kept.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    clipped = clip_boxes_xyxy(boxes, window)
    full = box_areas_xyxy(boxes)
    visible = box_areas_xyxy(clipped)
    keep = (visible > 0) & (visible >= min_visible * full)
    index = np.flatnonzero(keep)
    shift = np.array([window[0], window[1], window[0], window[1]], dtype=np.float64)
    return index, clipped[index] - shift
