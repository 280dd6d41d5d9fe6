"""Detections drawn on images (opencv)."""

from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

from afmcli.inference.detections import Detections


def class_color(label: int) -> tuple[int, int, int]:
    """A fixed, well-spread BGR colour per label (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image: np.ndarray, dets: Detections, names: Mapping[int, str] | None = None,
                    score_thr: float = 0.3) -> np.ndarray:
    """A copy of a BGR ``image`` with the boxes scoring >= ``score_thr``, labelled
    ``name score``; lowest scores drawn first so the best boxes stay on top."""
    out = np.ascontiguousarray(image).copy()
    keep = dets.scores >= score_thr
    order = np.argsort(dets.scores[keep], kind="stable")
    thickness = max(1, round(max(out.shape[:2]) / 1500))
    for box, score, label in zip(dets.boxes[keep][order], dets.scores[keep][order], dets.labels[keep][order]):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        color = class_color(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{(names or {}).get(int(label), int(label))} {score:.2f}"
        cv2.putText(out, text, (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thickness, color,
                    thickness, cv2.LINE_AA)
    return out
