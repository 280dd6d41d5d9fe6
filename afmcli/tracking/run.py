"""`afm track` end to end: `afm infer`'s detections of every frame, then the tracker over
each sequence in frame order, then the MOT files.

Output folder (shared with the user: afm only replaces what its manifest lists):
    detections/          `afm infer`'s output folder for the frames, run by its own code
                         (tiles + full image, batches, workers, resume): predictions.json,
                         categories.json, images.json, visdrone/<seq>/<frame:07d>.txt (VisDrone's classes),
                         sources/, its run state .afm-infer/
    mot/<seq>.txt        VisDrone-MOT results: frame,id,x,y,w,h,score,category,-1,-1
    motchallenge/<seq>.txt  MOTChallenge results: frame,id,x,y,w,h,conf,-1,-1,-1
    viz/<seq>/<frame:07d>.jpg  with viz (viz/<seq>.mp4 with viz_video): ids and trails drawn
    .afm-written         the entries above that afm wrote (afmcli.io.SharedFolder)

Detection comes first and resumes as `afm infer` does (records per frame); tracking reads
the detections back from ``detections/predictions.json`` (streamed, exact), frame by frame, and
its files are staged and renamed into place together at the end: a killed run leaves no
half-written track file, and a rerun of the same command tracks again from the stored
detections (fast) to the same bytes. A rerun with other tracker settings only tracks again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from afmcli.detections import Detections
from afmcli.errors import AfmError
from afmcli.inference.run import InferSettings, InferStats, run_inference
from afmcli.inference.sources import ImageItem, Source
from afmcli.io import SharedFolder
from afmcli.tracking.build import build_tracker
from afmcli.tracking.sources import open_track_source, sequences
from afmcli.tracking.writers import TrackRun, all_names, enabled_writers

DETECTIONS = "detections"


@dataclass
class TrackStats:
    detect: InferStats
    sequences: int = 0
    frames: int = 0
    tracks: int = 0  # distinct ids over all sequences
    boxes: int = 0  # tracked boxes written
    tracker_seconds: float = 0.0  # in the tracker's update alone
    seconds: float = 0.0  # the tracking stage: reading detections, tracking, writing


def stream_results(path: Path, chunk: int = 1 << 20) -> Iterator[dict]:
    """The records of a COCO results json as `afm infer` writes it (a list of objects), one
    at a time: memory holds one chunk of the file, not the list."""
    decoder = json.JSONDecoder()
    buffer, pos = "", 0
    with open(path) as f:
        while True:
            pos = len(buffer) - len(buffer[pos:].lstrip("[, \n"))
            try:
                record, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                more = f.read(chunk)
                if not more:
                    if buffer[pos:].strip() not in ("", "]"):
                        raise AfmError(f"{path}: not a COCO results list as afm infer writes it") from None
                    return
                buffer, pos = buffer[pos:] + more, 0
                continue
            yield record
            pos = end


def stored_detections(detections: Path, items: list[ImageItem]) -> Iterator[tuple[ImageItem, Detections]]:
    """Each item's fused detections as `afm infer` wrote them (predictions.json: its records
    are grouped by image in the source's order, an image without detections has none)."""
    records = stream_results(detections / "predictions.json")
    pending = next(records, None)
    for item in items:
        boxes, scores, labels = [], [], []
        while pending is not None and pending["image_id"] == item.image_id:
            boxes.append(pending["bbox"])
            scores.append(pending["score"])
            labels.append(pending["category_id"])
            pending = next(records, None)
        xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        yield item, Detections(np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], scores, labels)
    if pending is not None:
        raise AfmError(f"{detections / 'predictions.json'}: image {pending['image_id']} is not among the frames, or "
                       "out of their order; rerun with --overwrite")


def track_detections(source: Source, detections: Path, folder: SharedFolder, tracker_cfg: dict,
                     run: TrackRun) -> TrackStats:
    """Track ``source``'s frames from their stored detections and write the MOT files."""
    from afmcli.progress import make_progress

    tracker = build_tracker(tracker_cfg)
    writers = enabled_writers(run)
    stats = TrackStats(detect=None)
    start = time.perf_counter()
    with folder.writing(sorted({n for cls in writers for n in cls.names}), drop=all_names()) as stage, \
            make_progress() as progress:
        opened = [cls(stage, run) for cls in writers]
        pixels = any(cls.needs_pixels for cls in writers)
        task = progress.add_task("tracking", total=len(source.items))
        stored = stored_detections(detections, source.items)
        for name, items in sequences(source.items):
            tracker.reset()
            ids: set[int] = set()
            for item, image in source.read(items) if pixels else ((item, None) for item in items):
                progress.advance(task)
                if pixels and image is None:
                    raise AfmError(f"{item}: cannot be read to draw it (it was read for detection)")
                _, dets = next(stored)
                t0 = time.perf_counter()
                tracked = tracker.update(dets)
                stats.tracker_seconds += time.perf_counter() - t0
                for writer in opened:
                    writer.add(name, item, tracked, image)
                ids.update(tracked.ids.tolist())
                stats.frames += 1
                stats.boxes += len(tracked)
            for writer in opened:
                writer.end_sequence(name)
            stats.sequences += 1
            stats.tracks += len(ids)
        for writer in opened:
            writer.close()
    stats.seconds = time.perf_counter() - start
    return stats


def run_tracking(config: Path, checkpoint: Path, source: Path, out: Path, settings: InferSettings,
                 tracker: dict, run: TrackRun, device: str = "cpu", trust: bool = False, workers: int = 0,
                 overwrite: bool = False, frame_step: int = 1) -> TrackStats:
    """Detect (or resume detecting) every frame, then track and write everything."""
    opened = open_track_source(source, frame_step)
    build_tracker(tracker)  # its settings are checked before any work
    folder = SharedFolder(out, "afm track", "out")
    folder.check([DETECTIONS, *(n for cls in enabled_writers(run) for n in cls.names)])
    folder.record([DETECTIONS])
    detect = run_inference(config, checkpoint, opened, out / DETECTIONS, settings, device=device, trust=trust,
                           workers=workers, overwrite=overwrite)
    if detect.failed:
        raise AfmError(f"{len(detect.failed)} frame(s) could not be read (first: {detect.failed[0]}); nothing "
                       f"was tracked (rerun to retry them)")
    stats = track_detections(opened, out / DETECTIONS, folder, tracker, run)
    stats.detect = detect
    return stats
