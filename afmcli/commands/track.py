"""`afm track`: `afm infer`'s detections of every frame, followed by mmdetection's trackers."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# The library's names of parameters that this command spells otherwise.
FLAGS = {"slices=False": "--no-slices", "full=False": "--no-full-image", "trust=True": "--trust-checkpoint"}

EXAMPLES = """Examples:

  afm track configs/AFM/afmnet_tiny_synth.py model.pth VisDrone2019-MOT-val/sequences --out tracks/val

  afm track configs/AFM/afmnet_tiny_synth.py model.pth drone.mp4 --out tracks/drone --tracker ocsort --viz-video
"""

# Tracker settings: None keeps the tracker's default (afmcli/tracking/bytetrack.py, ocsort.py).
TRACKER_SETTINGS = ("high", "low", "score", "init", "match_iou", "low_match_iou", "tentative_iou",
                    "direction_weight", "direction_frames", "confirm_frames", "keep_lost")


def track(
    config: Path = typer.Argument(..., help="The mmdet config the model was trained with."),
    checkpoint: Path = typer.Argument(..., help="The trained weights (.pth)."),
    source: Path = typer.Argument(..., help="A video, a folder of videos, an image sequence folder "
                                  "(frames numbered in their names, as VisDrone-MOT's 0000001.jpg) or a folder "
                                  "of them (VisDrone-MOT's sequences/)."),
    out: Path = typer.Option(..., "--out", help="Output folder; rerunning the same command resumes an "
                             "interrupted run. Files afm did not write there are left alone."),
    tracker: str = typer.Option("bytetrack", "--tracker", help="bytetrack or ocsort (mmdetection's)."),
    viz: bool = typer.Option(False, "--viz", help="Also draw ids and trails: DIR/viz/<seq>/<frame>.jpg."),
    viz_video: bool = typer.Option(False, "--viz-video", help="Draw into one video per sequence instead: "
                                   "DIR/viz/<seq>.mp4."),
    fps: float = typer.Option(25.0, "--fps", help="Frame rate of the --viz-video videos."),
    trail: int = typer.Option(15, "--trail", help="Frames of past centres drawn behind each box."),
    high: Optional[float] = typer.Option(None, "--track-high", help="bytetrack: score above which a detection "
                                         "is matched first and may start a track [0.5]."),
    low: Optional[float] = typer.Option(None, "--track-low", help="bytetrack: least score of a detection "
                                        "matched in the second round [0.1]."),
    score: Optional[float] = typer.Option(None, "--track-score", help="ocsort: least score of a detection "
                                          "matched [0.3]."),
    init: Optional[float] = typer.Option(None, "--track-init", help="Score above which a detection starts a "
                                         "track while none is held (a sequence's first frame) [0.5]."),
    match_iou: Optional[float] = typer.Option(None, "--match-iou", help="Least IoU of a track's predicted box "
                                              "and a detection to match them [0.1]."),
    low_match_iou: Optional[float] = typer.Option(None, "--low-match-iou", help="bytetrack: the same in the "
                                                  "second round [0.5]."),
    tentative_iou: Optional[float] = typer.Option(None, "--tentative-iou", help="bytetrack: the same for "
                                                  "unconfirmed tracks [0.3]."),
    direction_weight: Optional[float] = typer.Option(None, "--direction-weight", help="ocsort: weight of the "
                                                     "direction consistency in the matching cost [0.2]."),
    direction_frames: Optional[int] = typer.Option(None, "--direction-frames", help="ocsort: frames between "
                                                   "the observations that give a track's direction [3]."),
    confirm_frames: Optional[int] = typer.Option(None, "--confirm-frames", help="Frames in a row before a new "
                                                 "track is confirmed [bytetrack 2, ocsort 3]."),
    keep_lost: Optional[int] = typer.Option(None, "--keep-lost", help="Frames a lost track waits to be found "
                                            "again [30]."),
    slice_size: int = typer.Option(640, "--slice", help="Tile size in pixels (square)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap between neighbouring tiles, a ratio "
                                  "of --slice in [0, 1)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass."),
    no_full_image: bool = typer.Option(False, "--no-full-image", help="Skip the full-image pass (tiles only)."),
    no_slices: bool = typer.Option(False, "--no-slices", help="Skip the tiles (full image only)."),
    score_thr: float = typer.Option(0.01, "--score-thr", help="Drop detections scored below this (0 to 1) "
                                    "before fusion."),
    method: str = typer.Option("nms", "--method", help="Fusion: nms, soft-nms, wbf or greedy-nmm."),
    iou: float = typer.Option(0.6, "--iou", help="Fusion overlap threshold in (0, 1]."),
    match: str = typer.Option("iou", "--match", help="iou or ios (nms, greedy-nmm)."),
    max_per_img: int = typer.Option(500, "--max-per-img", help="Keep at most this many fused detections per "
                                    "frame (the best)."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda or cuda:N."),
    workers: int = typer.Option(0, "--workers", help="DataLoader processes that decode and tile ahead of the "
                                "model (0: in the main process)."),
    frame_step: int = typer.Option(1, "--frame-step", help="Every N-th frame from the first."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Fully unpickle the checkpoint "
                                          "(runs code from it: only for files you trust)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start detection over when --out holds another "
                                   "run's (other config, checkpoint, detection settings or frames)."),
    fuse_conv_bn: bool = typer.Option(False, "--fuse-conv-bn", help="As afm infer --fuse-conv-bn."),
    device_tiles: bool = typer.Option(False, "--device-tiles", help="As afm infer --device-tiles."),
    fp16: bool = typer.Option(False, "--fp16", help="As afm infer --fp16 (GPUs)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="As afm infer --channels-last."),
) -> None:
    """Track objects in videos and image sequences: sliced detection, then ByteTrack or OC-SORT."""
    from afmcli.commands.tables import print_summary
    from afmcli.inference.run import InferSettings
    from afmcli.io import output_lock
    from afmcli.tracking.run import run_tracking
    from afmcli.tracking.writers import TrackRun

    values = locals()
    settings = InferSettings(slice_size=slice_size, overlap=overlap, batch_size=batch_size, slices=not no_slices,
                             full=not no_full_image, score_thr=score_thr, method=method, iou=iou, match=match,
                             max_per_img=max_per_img, device_tiles=device_tiles, fuse_conv_bn=fuse_conv_bn,
                             fp16=fp16, channels_last=channels_last)
    tracker_cfg = {"type": tracker, **{k: values[k] for k in TRACKER_SETTINGS if values[k] is not None}}
    with output_lock(out, "afm track", "out"):  # one run at a time writes OUT
        stats = run_tracking(config, checkpoint, source, out, settings, tracker_cfg,
                             TrackRun(viz=viz, viz_video=viz_video, fps=fps, trail=trail), device=device,
                             trust=trust_checkpoint, workers=workers, overwrite=overwrite, frame_step=frame_step)
    detect = stats.detect
    print_summary(f"afm track ({tracker})", {
        "sequences": stats.sequences, "frames": stats.frames, "frames detected now": detect.processed,
        "fused detections": detect.fused_dets, "tracks": stats.tracks, "tracked boxes": stats.boxes,
        "detection s": f"{detect.seconds:.1f}",
        "tracker ms/frame": f"{1e3 * stats.tracker_seconds / max(stats.frames, 1):.2f}",
        "tracking s": f"{stats.seconds:.1f}", "output": str(out)})
