"""Tracks drawn on a frame (opencv): a colour per id (tab10, by id), the box, the id on a
label (afmcli.viz.draw's), and a polyline through the track's recent centres."""

from __future__ import annotations

from typing import Mapping, Sequence

import cv2
import numpy as np

from afmcli.tracking.base import TrackedDetections
from afmcli.viz.draw import TAB10, hex_to_bgr, put_label, text_height


def track_color(track_id: int) -> tuple[int, int, int]:
    return hex_to_bgr(TAB10[int(track_id) % len(TAB10)])


def track_centres(tracked: TrackedDetections) -> np.ndarray:
    return (tracked.boxes[:, :2] + tracked.boxes[:, 2:]) / 2


def draw_tracks(image: np.ndarray, tracked: TrackedDetections,
                trails: Mapping[int, Sequence[np.ndarray]]) -> np.ndarray:
    """A copy of ``image`` with ``tracked`` drawn; ``trails``: id -> past centres, oldest first."""
    out = image.copy()
    height = text_height(out.shape)
    thickness = max(1, height // 8)
    for box, track_id in zip(tracked.boxes, tracked.ids):
        color = track_color(track_id)
        trail = np.round(np.asarray(trails.get(int(track_id), ()), dtype=np.float64)).astype(np.int32)
        if len(trail) > 1:
            cv2.polylines(out, [trail.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        put_label(out, str(int(track_id)), x1, y1, color, height)
    return out
