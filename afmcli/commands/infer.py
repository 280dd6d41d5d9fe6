"""`afm infer`: sliced inference plus a full-image pass, fused."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# The library's names of parameters that this command spells otherwise.
FLAGS = {"slices=False": "--no-slices", "full=False": "--no-full-image", "images_dir": "--images",
         "trust=True": "--trust-checkpoint"}

EXAMPLES = """Examples:

  afm infer configs/AFM/AFMNet-tood_r50_k13.py work_dirs/run1/epoch_12.pth Datasets/labels/annotations/val_labels.json --out results/val

  afm infer configs/AFM/AFMNet-tood_r50_k13.py model.pth photo.jpg --out results/photo --viz --device cuda
"""


def infer(
    config: Path = typer.Argument(..., help="The mmdet config the model was trained with, or an ONNX model "
                                  "from `afm export` (then no checkpoint: MODEL.onnx SOURCE)."),
    checkpoint: Path = typer.Argument(..., help="The trained weights (.pth)."),
    source: Optional[Path] = typer.Argument(None, help="An image, a folder of images, a COCO json, a video, a "
                                            "folder of videos, or a dataset yaml (a data.yaml, ...; its --split)."),
    out: Path = typer.Option(..., "--out", help="Output folder; rerunning the same command resumes an "
                             "interrupted run. Files afm did not write there are left alone."),
    slice_size: int = typer.Option(640, "--slice", help="Tile size in pixels (square)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap between neighbouring tiles, a ratio "
                                  "of --slice in [0, 1)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass."),
    no_full_image: bool = typer.Option(False, "--no-full-image", help="Skip the full-image pass "
                                       "(tiles only)."),
    no_slices: bool = typer.Option(False, "--no-slices", help="Skip the tiles (full image only)."),
    score_thr: float = typer.Option(0.01, "--score-thr", help="Drop detections scored below this "
                                    "(0 to 1) before fusion."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda or cuda:N; an ONNX model: cpu, "
                               "cuda[:N] or tensorrt[:N] (ONNX Runtime's execution providers)."),
    threads: int = typer.Option(0, "--threads", help="ONNX models: ONNX Runtime's threads (0: one per core)."),
    viz: bool = typer.Option(False, "--viz", help="Also draw the fused boxes (DIR/viz/*.png, .jpg above 0.5 megapixel)."),
    viz_score: float = typer.Option(0.3, "--viz-score", help="Lowest score (0 to 1) drawn with --viz."),
    method: str = typer.Option("nms", "--method", help="Fusion: nms, soft-nms, wbf or greedy-nmm."),
    iou: float = typer.Option(0.6, "--iou", help="Fusion overlap threshold in (0, 1]."),
    match: str = typer.Option("iou", "--match", help="iou or ios (nms, greedy-nmm)."),
    max_per_img: int = typer.Option(500, "--max-per-img", help="Keep at most this many fused "
                                    "detections per image (the best; VisDrone's toolkit reads 500)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder of a COCO json "
                                          "source (default: <json dir>/../../images/<split>/)."),
    split: str = typer.Option("val", "--split", help="Which split of a dataset yaml source is run (its "
                              "images and ids are those `afm evaluate --gt DATA --split` scores)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Fully unpickle the "
                                          "checkpoint (runs code from it: only for files you trust)."),
    workers: int = typer.Option(0, "--workers", help="DataLoader processes that decode and tile ahead of "
                                "the model (0: in the main process)."),
    launcher: str = typer.Option("none", "--launcher", help="none, pytorch (torchrun) or slurm (srun): "
                                 "images are sharded over the ranks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over when --out holds another run "
                                   "(other config, checkpoint, settings or images)."),
    frame_step: int = typer.Option(1, "--frame-step", help="Videos: every N-th frame from the first."),
    vid: bool = typer.Option(False, "--vid", help="Videos: also DIR/vid/<video>.txt in VisDrone-VID format."),
    fuse_conv_bn: bool = typer.Option(False, "--fuse-conv-bn", help="Fold the backbone's BatchNorms into its "
                                      "convolutions: faster, detections equal up to float rounding."),
    device_tiles: bool = typer.Option(False, "--device-tiles", help="Copy each image to the device once and "
                                      "cut, resize and pack its tiles there (the test pipeline's CPU work)."),
    fp16: bool = typer.Option(False, "--fp16", help="Half-precision forward passes (float16 autocast, for "
                              "GPUs); decoding and NMS stay in float32."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Weights and activations in channels-last "
                                       "(NHWC) memory, cuDNN's tensor-core layout (with --fp16 on GPUs); checked "
                                       "on a probe image, NCHW with a warning where the model misreads it."),
    yolo: bool = typer.Option(False, "--yolo", help="Also DIR/yolo/<name>.txt: ultralytics-style results "
                              "(class x_center y_center width height confidence, normalised)."),
) -> None:
    """Detect on images with overlapping tiles and a full-image pass."""
    from rich.console import Console
    from rich.table import Table

    from afmcli.errors import AfmError, warn
    from afmcli.inference.backends.onnx_runtime import is_onnx
    from afmcli.inference.run import InferSettings, run_inference

    if is_onnx(config) and source is None:  # afm infer MODEL.onnx SOURCE
        checkpoint, source = config, checkpoint
    elif source is None:
        raise typer.BadParameter("missing SOURCE (CONFIG CHECKPOINT SOURCE, or MODEL.onnx SOURCE)")
    settings = InferSettings(slice_size=slice_size, overlap=overlap, batch_size=batch_size,
                             slices=not no_slices, full=not no_full_image, score_thr=score_thr,
                             method=method, iou=iou, match=match, max_per_img=max_per_img,
                             device_tiles=device_tiles, viz=viz,
                             viz_score=viz_score, vid=vid, yolo=yolo, fuse_conv_bn=fuse_conv_bn,
                             fp16=fp16, channels_last=channels_last)
    stats = run_inference(config, checkpoint, source, out, settings, device=device, images_dir=images,
                          trust=trust_checkpoint, workers=workers, launcher=launcher, overwrite=overwrite,
                          frame_step=frame_step, split=split, threads=threads)
    if stats.rank > 0:
        return  # rank 0 reports for all
    table = Table(title="afm infer", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in (("images", stats.images), ("run now", stats.processed), ("unreadable", len(stats.failed)),
                        ("tiles", stats.tiles), ("tile detections", stats.slice_dets),
                        ("full-image detections", stats.full_dets), (f"fused ({method})", stats.fused_dets),
                        ("ranks", stats.ranks), ("seconds", f"{stats.seconds:.1f}"),
                        ("images/s", f"{stats.processed / max(stats.seconds, 1e-9):.2f}"), ("output", out)):
        table.add_row(name, str(value))
    console = Console()
    console.print(table)
    if stats.at_cap:
        warn(f"{stats.at_cap} of {stats.images} images reached --max-per-img {max_per_img}: their "
             "lowest-scored fused detections may have been cut (raise it to keep more)")
    if stats.failed:
        for why in stats.failed:  # each says which image and why
            console.print(f"unreadable image: {why}", markup=False, highlight=False, soft_wrap=True)
        raise AfmError(f"{len(stats.failed)} image(s) could not be read (first: {stats.failed[0]}); "
                       f"results for the other {stats.images} are in {out} (rerun to retry those)")
