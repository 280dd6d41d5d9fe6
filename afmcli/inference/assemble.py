"""The final files of `afm infer`, put together from the per-image records by its writers.

Images go in source order whatever order, process or start finished them, so
the files are the same bytes as an uninterrupted one-process run. Each entry is
written at a temporary name and renamed into place only once all are complete;
nothing is replaced when no image could be read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from afmcli.errors import AfmError
from afmcli.inference.predict import ImageResult
from afmcli.inference.records import read_record, scan_records
from afmcli.inference.sources import ImageItem
from afmcli.inference.state import RunState
from afmcli.inference.writers import RunInfo, all_names, enabled_writers, output_names


SHOWN_UNREADABLE = 3  # reasons in the one line of a run that could read no image


@dataclass
class Totals:
    images: int = 0
    tiles: int = 0
    slice_dets: int = 0
    full_dets: int = 0
    fused_dets: int = 0
    at_cap: int = 0  # images whose fused detections filled max_per_img (the cap may have cut more)
    failed: list[str] = field(default_factory=list)  # why each unreadable image could not be read

    def count(self, result: ImageResult, max_per_img: int) -> None:
        self.images += 1
        self.tiles += result.n_tiles
        self.slice_dets += len(result.slices)
        self.full_dets += len(result.full)
        self.fused_dets += len(result.fused)
        self.at_cap += len(result.fused) >= max_per_img


def assemble(state: RunState, items: Sequence[ImageItem], run: RunInfo, unreadable: Mapping[int, str]) -> Totals:
    """Write every output of ``run``'s writers from ``state``'s records; returns the totals.
    ``unreadable``: why each image that could not be read could not, by image id."""
    index = scan_records(state.records)
    totals = Totals(failed=[unreadable[it.image_id] for it in items if it.image_id in unreadable])
    lost = [it for it in items if it.image_id not in index and it.image_id not in unreadable]
    if lost:  # read, yet without a record: not the image's fault
        raise AfmError(f"{state.records}: no result for {len(lost)} image(s) that were run (first: {lost[0]}); "
                       f"something else changed {state.dir} meanwhile: rerun the command")
    done = [it for it in items if it.image_id in index]
    if not done:
        shown = SHOWN_UNREADABLE
        more = f"; and {len(totals.failed) - shown} more" if len(totals.failed) > shown else ""
        raise AfmError(f"none of the {len(items)} image(s) could be read ({'; '.join(totals.failed[:shown])}{more}); "
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
