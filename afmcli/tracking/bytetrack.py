"""ByteTrack (mmdet.models.trackers.ByteTracker): a Kalman filter per track and two rounds
of ``lap`` matching, high-scored detections first, then low-scored ones to the tracks
still unmatched, which keeps objects whose score dips (small, partly hidden) on their track."""

from __future__ import annotations

from dataclasses import dataclass

from afmcli.tracking.base import TRACKERS, MMDetTracker, TrackerSettings


@dataclass
class ByteTrackSettings(TrackerSettings):
    # Defaults: see README "Tracking" (measured on synthetic sequences, bench/bench_track.py).
    high: float = 0.5  # detections above: first matching round, and new tracks (mmdet: 0.6)
    low: float = 0.1  # detections between low and high: second round only
    init: float = 0.5  # while no track is held (a sequence's first frame), detections above start tracks (mmdet: 0.7)
    match_iou: float = 0.1  # first round: least IoU of a track's predicted box and a detection
    low_match_iou: float = 0.5  # second round
    tentative_iou: float = 0.3  # new (unconfirmed) tracks
    confirm_frames: int = 2  # a new track is confirmed after this many frames in a row (mmdet: 3)
    keep_lost: int = 30  # frames a lost track waits to be found again


@TRACKERS.register_module(name="bytetrack")
class ByteTrack(MMDetTracker):
    name = "bytetrack"
    settings_class = ByteTrackSettings

    def mmdet_config(self) -> dict:
        s = self.settings
        return dict(type="ByteTracker", motion=dict(type="KalmanFilter"),
                    obj_score_thrs=dict(high=s.high, low=s.low), init_track_thr=s.init,
                    weight_iou_with_det_scores=True,
                    match_iou_thrs=dict(high=s.match_iou, low=s.low_match_iou, tentative=s.tentative_iou),
                    num_tentatives=s.confirm_frames, num_frames_retain=s.keep_lost)
