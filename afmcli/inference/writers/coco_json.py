"""COCO results json: ``predictions.json`` (fused) and, per source of detections,
``sources/slices.json`` (the tiles) and ``sources/full.json`` (the full-image pass)."""

from __future__ import annotations

import json
import os
from typing import Mapping

from afmcli.detections import Detections, detections_to_results
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register
from afmcli.io import atomic_path


class ResultsJson:
    """COCO results of many images as one JSON list, written image by image (never all
    as Python dicts at once) to ``path`` as it is (a temporary being staged)."""

    def __init__(self, path: str | os.PathLike):
        self._file = open(path, "w")
        self._file.write("[")
        self._sep = ""

    def add(self, image_id: int, dets: Detections) -> None:
        for record in detections_to_results(image_id, dets):
            self._file.write(self._sep + json.dumps(record))
            self._sep = ", "

    def close(self) -> None:
        self._file.write("]")
        self._file.close()


def write_results_json(path: str | os.PathLike, per_image: Mapping[int, Detections]) -> None:
    """``{image_id: Detections}`` as a COCO results json, atomically."""
    with atomic_path(path) as tmp:
        out = ResultsJson(tmp)
        for image_id, dets in per_image.items():
            out.add(image_id, dets)
        out.close()


class _ResultsWriter(Writer):
    part = "fused"  # which detections of an image result

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self._json = ResultsJson(stage(self.names[0]))

    def add(self, item, result) -> None:
        self._json.add(item.image_id, getattr(result, self.part))

    def close(self) -> None:
        self._json.close()


@register
class PredictionsJson(_ResultsWriter):
    names = ("predictions.json",)


@register
class SlicesJson(_ResultsWriter):
    names = ("sources/slices.json",)
    option = "slices"
    part = "slices"


@register
class FullImageJson(_ResultsWriter):
    names = ("sources/full.json",)
    option = "full"
    part = "full"
