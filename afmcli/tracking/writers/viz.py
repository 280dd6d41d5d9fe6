"""Drawings: ``viz/<seq>/<frame:07d>.jpg`` (``--viz``) or ``viz/<seq>.mp4`` (``--viz-video``):
each tracked box in its track's colour with its id, and the track's last ``trail`` centres."""

from __future__ import annotations

from collections import deque

import cv2

from afmcli.errors import AfmError
from afmcli.tracking.writers.base import TrackWriter, register


@register
class TrackVizWriter(TrackWriter):
    names = ("viz",)
    option = "drawn"
    needs_pixels = True

    def __init__(self, stage, run):
        super().__init__(stage, run)
        self.folder = stage("viz")
        self.folder.mkdir()
        self._trails: dict[int, deque] = {}
        self._video = None

    def add(self, sequence, item, tracked, pixels) -> None:
        from afmcli.tracking.draw import draw_tracks, track_centres

        for track_id, centre in zip(tracked.ids, track_centres(tracked)):
            self._trails.setdefault(int(track_id), deque(maxlen=self.run.trail)).append(centre)
        drawn = draw_tracks(pixels, tracked, self._trails)
        if self.run.viz_video:
            if self._video is None:
                path = self.folder / f"{sequence}.mp4"
                self._video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.run.fps,
                                              (drawn.shape[1], drawn.shape[0]))
                if not self._video.isOpened():
                    raise AfmError(f"{path}: OpenCV cannot write an mp4 video here (use --viz for frames)")
            self._video.write(drawn)
        else:
            path = self.folder / sequence / f"{item.frame:07d}.jpg"
            path.parent.mkdir(exist_ok=True)
            if not cv2.imwrite(str(path), drawn, [cv2.IMWRITE_JPEG_QUALITY, 90]):
                raise AfmError(f"{path}: could not be written")

    def end_sequence(self, sequence) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self._trails = {}
