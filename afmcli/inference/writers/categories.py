"""``categories.json``: the category table the run's detections use, ``{"categories": [{"id",
"name"}, ...]}`` in the model's class order (a YOLO class index is a position in it). The ids
follow the one rule of afmcli.inference.sources.category_ids; `afm evaluate` checks them
against the ground truth's table by name (afmcli.evaluation.categories)."""

from __future__ import annotations

from afmcli.evaluation.categories import TABLE_FILE, CategoryTable
from afmcli.inference.writers.base import RunInfo, Stage, Writer, register
from afmcli.io import dump_json


@register
class CategoriesJson(Writer):
    names = (TABLE_FILE,)

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.path = stage(TABLE_FILE)

    def add(self, item, result) -> None:
        """The table is the run's, not an image's."""

    def close(self) -> None:
        table = CategoryTable(tuple(self.run.category_ids), tuple(self.run.classes))
        dump_json(self.path, table.to_json(), indent=2)
