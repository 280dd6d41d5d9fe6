"""The final files of `afm infer`, put together from the per-image records by its writers.

Images go in source order whatever order, process or start finished them, so
the files are the same bytes as an uninterrupted one-process run. Each entry is
written at a temporary name and renamed into place only once all are complete;
nothing is replaced when no image could be read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from afmcli.errors import AfmError
from afmcli.inference.predict import ImageResult
from afmcli.inference.records import read_record, scan_records
from afmcli.inference.sources import ImageItem
from afmcli.inference.state import RunState
from afmcli.inference.writers import RunInfo, all_names, enabled_writers, output_names


@dataclass
class Totals:
    images: int = 0
    tiles: int = 0
    slice_dets: int = 0
    full_dets: int = 0
    fused_dets: int = 0
    at_cap: int = 0  # images whose fused detections filled max_per_img (the cap may have cut more)
    failed: list[str] = field(default_factory=list)

    def count(self, result: ImageResult, max_per_img: int) -> None:
        self.images += 1
        self.tiles += result.n_tiles
        self.slice_dets += len(result.slices)
        self.full_dets += len(result.full)
        self.fused_dets += len(result.fused)
        self.at_cap += len(result.fused) >= max_per_img


def assemble(state: RunState, items: Sequence[ImageItem], run: RunInfo) -> Totals:
    """Write every output of ``run``'s writers from ``state``'s records; returns the totals."""
    index = scan_records(state.records)
    totals = Totals(failed=[str(it) for it in items if it.image_id not in index])
    done = [it for it in items if it.image_id in index]
    if not done:
        raise AfmError(f"none of the {len(items)} image(s) could be read (first: {totals.failed[0]}); "
                       f"nothing in {state.out} was replaced")
    run = dataclasses.replace(run, retrying=bool(totals.failed))
    writers = enabled_writers(run.settings, run.names)
    with state.folder.writing(output_names(writers), drop=all_names()) as stage:
        opened = [cls(stage, run) for cls in writers]
        for item in done:
            result = read_record(index[item.image_id])
            for writer in opened:
                writer.add(item, result)
            totals.count(result, run.settings.max_per_img)
        for writer in opened:
            writer.close()
    return totals
