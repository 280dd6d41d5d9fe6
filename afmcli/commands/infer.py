"""`afm infer`: sliced inference plus a full-image pass, fused."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def infer(
    config: Path = typer.Argument(...),
    checkpoint: Path = typer.Argument(...),
    source: Path = typer.Argument(..., help="An image, a folder of images, or a COCO json."),
    out: Path = typer.Option(..., "--out", help="Output folder (replaced as a whole when done)."),
    slice_size: int = typer.Option(640, "--slice"),
    overlap: float = typer.Option(0.25, "--overlap"),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass."),
    no_full_image: bool = typer.Option(False, "--no-full-image"),
    no_slices: bool = typer.Option(False, "--no-slices"),
    score_thr: float = typer.Option(0.01, "--score-thr"),
    device: str = typer.Option("cpu", "--device"),
    viz: bool = typer.Option(False, "--viz", help="Also draw the fused boxes (DIR/viz/*.png, .jpg above 0.5 megapixel)."),
    viz_score: float = typer.Option(0.3, "--viz-score", help="Lowest score drawn with --viz."),
    method: str = typer.Option("nms", "--method", help="Fusion: nms, soft-nms, wbf or greedy-nmm."),
    iou: float = typer.Option(0.6, "--iou", help="Fusion overlap threshold."),
    match: str = typer.Option("iou", "--match", help="iou or ios (nms, greedy-nmm)."),
    max_per_img: int = typer.Option(500, "--max-per-img"),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder of a COCO json "
                                          "source (default: <json dir>/../../images/<split>/)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint"),
) -> None:
    """Detect on images with overlapping tiles and a full-image pass."""
    from rich.console import Console
    from rich.table import Table

    from afmcli.errors import AfmError
    from afmcli.inference.run import InferSettings, run_inference

    settings = InferSettings(slice_size=slice_size, overlap=overlap, batch_size=batch_size,
                             slices=not no_slices, full=not no_full_image, score_thr=score_thr,
                             method=method, iou=iou, match=match, max_per_img=max_per_img, viz=viz,
                             viz_score=viz_score)
    stats = run_inference(config, checkpoint, source, out, settings, device=device, images_dir=images,
                          trust=trust_checkpoint)
    table = Table(title="afm infer", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in (("images", stats.images), ("unreadable", len(stats.failed)), ("tiles", stats.tiles),
                        ("tile detections", stats.slice_dets), ("full-image detections", stats.full_dets),
                        (f"fused ({method})", stats.fused_dets), ("seconds", f"{stats.seconds:.1f}"),
                        ("images/s", f"{stats.images / max(stats.seconds, 1e-9):.2f}"), ("output", out)):
        table.add_row(name, str(value))
    console = Console()
    console.print(table)
    if stats.failed:
        for path in stats.failed:
            console.print(f"[red]unreadable image[/]: {path}")
        raise AfmError(f"{len(stats.failed)} image(s) could not be read (first: {stats.failed[0]}); "
                       f"results for the other {stats.images} are in {out}")
