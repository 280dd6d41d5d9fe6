"""The :class:`TrackWriter` protocol of `afm track`'s outputs, and their registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from afmcli.data.visdrone_format import format_visdrone_lines
from afmcli.errors import ParameterError
from afmcli.inference.sources import ImageItem
from afmcli.tracking.base import TrackedDetections

TRACK_WRITERS: list[type["TrackWriter"]] = []


@dataclass(frozen=True)
class TrackRun:
    """What the writers of a run know: the drawing options."""

    viz: bool = False  # frames drawn, viz/<seq>/<frame>.jpg
    viz_video: bool = False  # a video drawn, viz/<seq>.mp4
    fps: float = 25.0  # of the drawn video
    trail: int = 15  # frames of each track's past centres drawn

    def __post_init__(self):  # checked before any work
        if self.trail < 0:
            raise ParameterError(f"{{trail}} must be >= 0, got {self.trail}", "trail")
        if not self.fps > 0:
            raise ParameterError(f"{{fps}} must be > 0, got {self.fps}", "fps")

    @property
    def drawn(self) -> bool:
        return self.viz or self.viz_video


class TrackWriter:
    """One output format: ``names`` are the entries of OUT it writes. Built with ``stage``
    (afmcli.io.SharedFolder.writing's) and the run; then per sequence ``add`` for each frame
    in order and ``end_sequence``; ``close`` at the end. ``option``: the TrackRun field that
    turns it on (None: always); ``needs_pixels``: ``add`` gets the frame's pixels."""

    names: tuple[str, ...] = ()
    option: str | None = None
    needs_pixels = False

    def __init__(self, stage: Callable, run: TrackRun):
        self.run = run

    def add(self, sequence: str, item: ImageItem, tracked: TrackedDetections, pixels: np.ndarray | None) -> None:
        raise NotImplementedError

    def end_sequence(self, sequence: str) -> None:
        """The sequence's last frame was added."""

    def close(self) -> None:
        """Finish the files (the staging renames them into place)."""


def register(cls: type[TrackWriter]) -> type[TrackWriter]:
    TRACK_WRITERS.append(cls)
    return cls


class SequenceText(TrackWriter):
    """One text file per sequence, ``<folder>/<seq>.txt``, a line per tracked box in frame
    order, ids ascending within a frame, written frame by frame (memory stays flat however
    long the sequence); ``rows`` gives the fields after frame and id."""

    def __init__(self, stage, run):
        super().__init__(stage, run)
        self.folder = stage(self.names[0])
        self.folder.mkdir()
        self._file = None

    def rows(self, tracked: TrackedDetections) -> np.ndarray:
        raise NotImplementedError

    def add(self, sequence, item, tracked, pixels) -> None:
        if self._file is None:
            self._file = open(self.folder / f"{sequence}.txt", "w")
        order = np.argsort(tracked.ids, kind="stable")
        rows = np.c_[np.full(len(order), item.frame), tracked.ids[order], self.rows(tracked.take(order))]
        self._file.write(format_visdrone_lines(rows))

    def end_sequence(self, sequence) -> None:
        if self._file is None:  # a sequence without frames still gets its (empty) file
            self._file = open(self.folder / f"{sequence}.txt", "w")
        self._file.close()
        self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def xywh(tracked: TrackedDetections) -> np.ndarray:
    return np.c_[tracked.boxes[:, :2], tracked.boxes[:, 2:] - tracked.boxes[:, :2]]
