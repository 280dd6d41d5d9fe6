"""YOLO (ultralytics) results: ``yolo/<name>.txt``, one line per fused detection,
``class x_center y_center width height confidence``, normalised by the image size, the
class the model's 0-based index (afmcli.data.yolo)."""

from __future__ import annotations

from afmcli.data.yolo import yolo_lines
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register


@register
class YoloWriter(Writer):
    names = ("yolo",)
    option = "yolo"

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.folder = stage("yolo")
        self.folder.mkdir()
        self.class_of = {cid: k for k, cid in enumerate(run.category_ids)}

    def add(self, item, result) -> None:
        fused = result.fused
        path = self.folder / f"{item.name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders (seq0/frame001)
        path.write_text(yolo_lines([self.class_of[int(c)] for c in fused.labels], fused.boxes, result.size,
                                   fused.scores))
