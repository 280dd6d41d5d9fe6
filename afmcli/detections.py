"""One image's detections as arrays, and their two file forms.

The bottom of the package (numpy only): data/, inference/, evaluation/, viz/ and the
Python API all pass :class:`Detections` (x1 y1 x2 y2 boxes in image pixels). COCO
results (``image_id``, ``bbox`` x y w h, ``score``, ``category_id``) and VisDrone
result rows (``x, y, w, h, score, category, -1, -1``) are only the file forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Detections:
    """``boxes`` (N, 4) float64 x1 y1 x2 y2, ``scores`` (N,), ``labels`` (N,) int64: label
    indices or category ids, as the caller uses them. ``categories`` (category id -> class
    name) is set where the labels are category ids, as in what :func:`afmcli.predict` returns."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    categories: Mapping[int, str] | None = field(default=None, compare=False, repr=False)

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
                   np.concatenate([p.labels for p in parts]), parts[0].categories)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        """The class name of each detection (needs ``categories``)."""
        if self.categories is None:
            raise ValueError("these detections carry no category names (labels are not category ids)")
        return [self.categories[int(label)] for label in self.labels]

    def take(self, index) -> "Detections":
        return Detections(self.boxes[index], self.scores[index], self.labels[index], self.categories)

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


def results_by_image(results) -> dict[int, Detections]:
    """Checked COCO results (:class:`afmcli.data.coco_check.Results`: arrays ``image_ids``,
    ``boxes`` x y w h, ``scores``, ``category_ids``) grouped by image id, file order kept."""
    boxes = np.asarray(results.boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 2:] += boxes[:, :2]
    order = np.argsort(results.image_ids, kind="stable")
    ids, starts = np.unique(results.image_ids[order], return_index=True)
    groups = np.split(order, starts[1:]) if len(order) else []
    return {int(i): Detections(boxes[g], results.scores[g], results.category_ids[g]) for i, g in zip(ids, groups)}
