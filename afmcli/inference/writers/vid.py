"""VisDrone-VID result files of video sources: ``vid/<video>.txt``, one line per fused
detection, ``<frame>,<target -1>,x,y,w,h,score,category,-1,-1``."""

from __future__ import annotations

import numpy as np

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.detections import detections_to_visdrone_rows
from afmcli.errors import ParameterError
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register
from afmcli.inference.writers.visdrone import visdrone_categories


@register
class VidWriter(Writer):
    names = ("vid",)
    option = "vid"

    @classmethod
    def check(cls, source, names) -> None:
        if not source.is_video:
            raise ParameterError(f"{{vid}} writes VisDrone-VID files for videos; {source.path} has none", "vid")
        if not visdrone_categories(names):
            raise ParameterError(f"{{vid}} writes VisDrone's category ids 1..10; the model's classes "
                                 f"({', '.join(names.values())}) are not VisDrone's", "vid")

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.folder = stage("vid")
        self.folder.mkdir()

    def add(self, item, result) -> None:
        rows = detections_to_visdrone_rows(result.fused, self.run.settings.max_per_img)
        lines = np.c_[np.full(len(rows), item.frame), -np.ones(len(rows)), rows[:, :6], -np.ones((len(rows), 2))]
        with open(self.folder / f"{item.path.stem}.txt", "a") as f:
            f.write(format_visdrone_lines(lines))
