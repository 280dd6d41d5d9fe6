"""VisDrone-DET result files: ``visdrone/<name>.txt``, one per image, the fused
detections best first, at most ``max_per_img`` lines (the toolkit reads 500). Written
for a run whose categories are VisDrone's (ids and names); not for another class list."""

from __future__ import annotations

from typing import Mapping

from afmcli.data.visdrone_format import CATEGORY_IDS, CLASSES, format_visdrone_lines
from afmcli.detections import detections_to_visdrone_rows
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register


@register
class VisDroneWriter(Writer):
    names = ("visdrone",)

    @classmethod
    def applies(cls, names: Mapping[int, str]) -> bool:
        return visdrone_categories(names)

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.folder = stage("visdrone")
        self.folder.mkdir()

    def add(self, item, result) -> None:
        path = self.folder / f"{item.name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders (seq0/frame001)
        path.write_text(format_visdrone_lines(detections_to_visdrone_rows(result.fused,
                                                                          self.run.settings.max_per_img)))


def visdrone_categories(names: Mapping[int, str]) -> bool:
    """Whether every category (id -> name) is VisDrone's class of that id: only then does a
    VisDrone result file say what the detections are."""
    visdrone = dict(zip(CATEGORY_IDS, CLASSES))
    return all(visdrone.get(cid) == name for cid, name in names.items())
