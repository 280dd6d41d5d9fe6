"""``images.json``: the file name of every image id the run's detections use, ``[{"id",
"file_name"}, ...]`` in source order, relative to the source's root (a folder's images are
numbered 1..N in its listing, a json's keep its ids); `afm evaluate` checks them against the
ground truth's file names (afmcli.evaluation.image_ids)."""

from __future__ import annotations

from afmcli.evaluation.image_ids import IMAGES_FILE
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register
from afmcli.io import dump_json


@register
class ImagesJson(Writer):
    names = (IMAGES_FILE,)

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.path = stage(IMAGES_FILE)
        self.images: list[dict] = []

    def add(self, item, result) -> None:
        self.images.append({"id": item.image_id, "file_name": item.file_name})

    def close(self) -> None:
        dump_json(self.path, self.images)
