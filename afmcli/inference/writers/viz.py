"""Drawings: ``viz/<name>.png`` (``.jpg`` above half a megapixel), the fused boxes scoring
at least ``viz_score`` on the image, with a legend. Drawn while the run goes (the pixels
are in memory only then) into the run state, put in place at the end."""

from __future__ import annotations

import os
import shutil

from afmcli.inference.writers.base import RunInfo, Stage, Writer, register


@register
class VizWriter(Writer):
    names = ("viz",)
    option = "viz"
    needs_pixels = True

    @classmethod
    def on_image(cls, run: RunInfo, item, image, result) -> None:
        from afmcli.viz.draw import draw_detections, write_image

        # Under a temporary name, then renamed: a kill never leaves a half-written picture.
        stem = run.state_dir / "viz" / item.name
        stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = write_image(stem.with_name(f".{stem.name}.tmp"),
                          draw_detections(image, result.fused, run.names, run.settings.viz_score))
        os.replace(tmp, stem.with_name(stem.name + tmp.suffix))

    def __init__(self, stage: Stage, run: RunInfo):
        super().__init__(stage, run)
        self.folder = stage("viz")

    def add(self, item, result) -> None:
        """Drawn already (:meth:`on_image`)."""

    def close(self) -> None:
        drawn = self.run.state_dir / "viz"
        # Kept in the state while images are left to retry, so the next start has them all.
        shutil.copytree(drawn, self.folder) if self.run.retrying else os.replace(drawn, self.folder)
