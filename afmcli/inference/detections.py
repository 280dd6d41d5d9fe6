"""One image's detections as arrays, and their COCO-results form.

Everything in afmcli/inference works on :class:`Detections` (xyxy boxes in image
pixels); COCO results (``image_id``, ``bbox`` xywh, ``score``, ``category_id``) are
only the file format.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from afmcli.data.coco_check import check_coco_results
from afmcli.io import atomic_path


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray   # (N, 4) float64, x1 y1 x2 y2
    scores: np.ndarray  # (N,) float64
    labels: np.ndarray  # (N,) int64: label indices or category ids, as the caller uses them

    def __post_init__(self):
        object.__setattr__(self, "boxes", np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64).reshape(-1))
        if not len(self.boxes) == len(self.scores) == len(self.labels):
            raise ValueError("boxes, scores and labels differ in length")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))

    @classmethod
    def concat(cls, parts: Iterable["Detections"]) -> "Detections":
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.labels for p in parts]))

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index], self.labels[index])

    def top(self, limit: int | None) -> "Detections":
        """Sorted by score, highest first (stable: equal scores keep their order), at most ``limit``."""
        order = np.argsort(-self.scores, kind="stable")
        return self.take(order if limit is None else order[:limit])

    def relabel(self, mapping: Sequence[int]) -> "Detections":
        """Labels replaced by ``mapping[label]`` (label index -> category id)."""
        return Detections(self.boxes, self.scores, np.asarray(mapping, dtype=np.int64)[self.labels])


def detections_to_visdrone_rows(dets: Detections, limit: int | None) -> np.ndarray:
    """VisDrone result rows ``x, y, w, h, score, category, -1, -1`` of ``dets``
    (labels are category ids), best first (stable) and at most ``limit``: the
    toolkit reads the first 500 lines in file order, not the 500 best."""
    top = dets.top(limit)
    wh = top.boxes[:, 2:] - top.boxes[:, :2]
    return np.c_[top.boxes[:, :2], wh, top.scores, top.labels, -np.ones((len(top), 2))]


def detections_to_results(image_id: int, dets: Detections) -> list[dict]:
    """COCO results (bbox as x, y, w, h) of one image, in the order of ``dets``."""
    xywh = dets.boxes.copy()
    xywh[:, 2:] -= xywh[:, :2]
    return [{"image_id": image_id, "bbox": [float(v) for v in box], "score": float(score),
             "category_id": int(label)}
            for box, score, label in zip(xywh, dets.scores, dets.labels)]


@contextlib.contextmanager
def results_json_writer(path: str | os.PathLike) -> Iterator[Callable[[int, Detections], None]]:
    """Yields ``add(image_id, dets)``: COCO results of many images as one JSON list, written
    image by image (never all as Python dicts at once), renamed into place at the end."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        sep = ""

        def add(image_id: int, dets: Detections) -> None:
            nonlocal sep
            for record in detections_to_results(image_id, dets):
                f.write(sep + json.dumps(record))
                sep = ", "

        f.write("[")
        yield add
        f.write("]")


def write_results_json(path: str | os.PathLike, per_image: Mapping[int, Detections]) -> None:
    with results_json_writer(path) as add:
        for image_id, dets in per_image.items():
            add(image_id, dets)


def results_to_detections(results, source: str) -> dict[int, Detections]:
    """Group a COCO results list (checked by the shared validator) by image id, file order kept."""
    r = check_coco_results(results, source)
    boxes = r.boxes.copy()
    boxes[:, 2:] += boxes[:, :2]
    order = np.argsort(r.image_ids, kind="stable")
    ids, starts = np.unique(r.image_ids[order], return_index=True)
    groups = np.split(order, starts[1:]) if len(order) else []
    return {int(i): Detections(boxes[g], r.scores[g], r.category_ids[g]) for i, g in zip(ids, groups)}
