"""OC-SORT (mmdet.models.trackers.OCSORTTracker): SORT's Kalman filter and ``lap`` matching
with observation-centric momentum (direction consistency in the cost) and recovery (a lost
track re-matched on its last observed box, its filter re-run along the gap)."""

from __future__ import annotations

from dataclasses import dataclass

from afmcli.tracking.base import TRACKERS, MMDetTracker, TrackerSettings


@dataclass
class OCSortSettings(TrackerSettings):
    # Defaults: see README "Tracking" (measured on synthetic sequences, bench/bench_track.py).
    score: float = 0.3  # detections above are matched
    init: float = 0.5  # while no track is held (a sequence's first frame), detections above start tracks (mmdet: 0.7)
    match_iou: float = 0.1  # least IoU of a track's predicted box and a detection (mmdet: 0.3)
    direction_weight: float = 0.2  # weight of the direction-consistency term (OCM)
    direction_frames: int = 3  # frames between the observations a track's direction is taken from
    confirm_frames: int = 3  # a new track is confirmed after this many frames in a row
    keep_lost: int = 30  # frames a lost track waits to be found again


@TRACKERS.register_module(name="ocsort")
class OCSort(MMDetTracker):
    name = "ocsort"
    settings_class = OCSortSettings

    def mmdet_config(self) -> dict:
        s = self.settings
        return dict(type="OCSORTTracker", motion=dict(type="KalmanFilter"), obj_score_thr=s.score,
                    init_track_thr=s.init, weight_iou_with_det_scores=True, match_iou_thr=s.match_iou,
                    num_tentatives=s.confirm_frames, vel_consist_weight=s.direction_weight,
                    vel_delta_t=s.direction_frames, num_frames_retain=s.keep_lost)
