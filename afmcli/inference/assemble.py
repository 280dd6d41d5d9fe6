"""The final files of `afm infer`, put together from the per-image records.

Images go in source order whatever order, process or start finished them, so
the files are the same bytes as an uninterrupted one-process run. Each file is
written at a temporary name and renamed into place only once all are complete;
nothing is replaced when no image could be read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.errors import AfmError
from afmcli.inference.detections import detections_to_visdrone_rows, results_json_writer
from afmcli.inference.records import read_record, scan_records
from afmcli.inference.sources import ImageItem
from afmcli.inference.state import RunState
from afmcli.io import atomic_path


@dataclass
class Totals:
    images: int = 0
    tiles: int = 0
    slice_dets: int = 0
    full_dets: int = 0
    fused_dets: int = 0
    at_cap: int = 0  # images whose fused detections filled --max-per-img (the cap may have cut more)
    failed: list[str] = field(default_factory=list)


def output_names(settings) -> list[str]:
    """The paths in OUT (relative) that a run with ``settings`` writes."""
    names = ["predictions.json", "visdrone"]
    names += ["sources/slices.json"] * settings.slices + ["sources/full.json"] * settings.full
    return names + ["viz"] * settings.viz + ["vid"] * settings.vid


def describe(item: ImageItem) -> str:
    return f"{item.path} frame {item.frame}" if item.frame is not None else str(item.path)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def assemble(state: RunState, items: Sequence[ImageItem], settings) -> Totals:
    """Write every final file from ``state``'s records; returns the totals."""
    index = scan_records(state.records)
    totals = Totals(failed=[describe(it) for it in items if it.image_id not in index])
    done = [it for it in items if it.image_id in index]
    if not done:
        raise AfmError(f"none of the {len(items)} image(s) could be read (first: {totals.failed[0]}); "
                       f"nothing in {state.out} was replaced")
    names = output_names(settings)
    old = state.written()
    state.set_outputs(old | set(names))  # listed before they appear, so a kill leaves none unlisted
    out = state.out
    with contextlib.ExitStack() as stack:
        fused_json = stack.enter_context(results_json_writer(out / "predictions.json"))
        slices_json = stack.enter_context(results_json_writer(out / "sources" / "slices.json")) \
            if settings.slices else None
        full_json = stack.enter_context(results_json_writer(out / "sources" / "full.json")) if settings.full else None
        visdrone = stack.enter_context(atomic_path(out / "visdrone"))
        visdrone.mkdir()
        if settings.vid:
            vid = stack.enter_context(atomic_path(out / "vid"))
            vid.mkdir()
        for item in done:
            result = read_record(index[item.image_id])
            fused_json(item.image_id, result.fused)
            if slices_json:
                slices_json(item.image_id, result.slices)
            if full_json:
                full_json(item.image_id, result.full)
            rows = detections_to_visdrone_rows(result.fused, settings.max_per_img)
            (visdrone / f"{item.name}.txt").write_text(format_visdrone_lines(rows))
            if settings.vid:
                # VisDrone-VID: one file per video, <frame>,<target -1>,x,y,w,h,score,category,-1,-1
                vid_rows = np.c_[np.full(len(rows), item.frame), -np.ones(len(rows)), rows[:, :6],
                                 -np.ones((len(rows), 2))]
                with open(vid / f"{item.video}.txt", "a") as f:
                    f.write(format_visdrone_lines(vid_rows))
            totals.images += 1
            totals.tiles += result.n_tiles
            totals.slice_dets += len(result.slices)
            totals.full_dets += len(result.full)
            totals.fused_dets += len(result.fused)
            totals.at_cap += len(result.fused) >= settings.max_per_img
        if settings.viz:
            viz = stack.enter_context(atomic_path(out / "viz"))
            # Kept in the state while images are left to retry, so the next start has them all.
            shutil.copytree(state.viz, viz) if totals.failed else os.replace(state.viz, viz)
    for name in old - set(names):  # an earlier run's outputs this one does not make
        remove(out / name)
    state.set_outputs(set(names))
    return totals
