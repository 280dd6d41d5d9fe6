"""`afm make-masks`: small/large object mask ground truth (gt_mask_s, gt_mask_l)."""

from __future__ import annotations

from pathlib import Path

import typer

EXAMPLES = """Examples:

  afm make-masks Datasets --split train

  afm make-masks Datasets --split val --kind gaussian --threshold 0.2
"""


def make_masks(
    out: Path = typer.Argument(..., help="The Datasets/ root of `afm convert-visdrone`."),
    split: str = typer.Option("train", "--split", help="Which split's json to read "
                              "(labels/annotations/<split>_labels.json)."),
    kind: str = typer.Option("oval", "--kind", help="Mask shape: oval (published) or gaussian."),
    small_area: float = typer.Option(32 * 32, "--small-area", help="Boxes under this "
                                    "area (square pixels of the original image) are small."),
    threshold: float = typer.Option(0.1, "--threshold", help="gaussian: keep where the Gaussian is at least "
                                    "this fraction (0 to 1) of its peak."),
    workers: int = typer.Option(0, "--workers", help="Processes; 0 = all cores."),
) -> None:
    """Write gt_mask_s / gt_mask_l PNGs (0/255, image resolution) for a split.

    Into labels/gt_mask_s/<split>/ and labels/gt_mask_l/<split>/, one <image>.png each.
    """
    from afmcli.data.mask_files import write_mask_files
    from afmcli.commands.tables import print_summary
    from afmcli.io import output_lock

    with output_lock(out, "afm make-masks", "out"):  # the Datasets/ root: one writer at a time
        counts = write_mask_files(out, split, kind, small_area, threshold, workers)
    print_summary(f"afm make-masks ({split}, {kind})", {
        "images": counts["images"], "small boxes": counts["small"], "large boxes": counts["large"],
        "crowd boxes (not drawn)": counts["crowd_skipped"],
        "output": str(Path(out) / "labels" / "gt_mask_{s,l}" / split)})
