"""`afm convert-visdrone`: official VisDrone split -> the Datasets/ layout with COCO json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def convert_visdrone(
    src: Path = typer.Argument(..., help="Official split folder (with images/ and annotations/), "
                               "or with --to-visdrone a COCO results json."),
    out: Path = typer.Argument(..., help="The Datasets/ root, or with --to-visdrone the result folder."),
    split: str = typer.Option("train", "--split", help="train, val or test-dev."),
    to_visdrone: bool = typer.Option(False, "--to-visdrone",
                                     help="Reverse: COCO results json -> VisDrone result txt folder."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="With --to-visdrone: the COCO json that names the images."),
    slice_size: Optional[List[int]] = typer.Option(None, "--slice", help="Also write sliced crops of this size; "
                                                   "repeat for multi-scale crops (--slice 512 --slice 800)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap ratio between crops."),
    min_visible: float = typer.Option(0.5, "--min-visible", help="Keep a clipped box in a crop when at least "
                                      "this fraction of it is visible."),
    copy: bool = typer.Option(False, "--copy", help="Copy images instead of linking them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad files and report counts."),
    workers: int = typer.Option(0, "--workers", help="Processes for writing crops; 0 = all cores."),
) -> None:
    """Convert VisDrone labels to COCO (and back with --to-visdrone)."""
    from afmcli.data.report import print_summary

    if to_visdrone:
        from afmcli.data.coco import coco_results_to_visdrone, write_visdrone_folder
        from afmcli.errors import AfmError
        from afmcli.io import read_json

        if gt is None:
            raise AfmError("--to-visdrone needs --gt LABELS.json (the images to write files for)")
        results = read_json(src)
        if not isinstance(results, list):
            raise AfmError(f"{src}: expected a COCO results list [{{image_id, category_id, bbox, score}}, ...]")
        rows = coco_results_to_visdrone(results, read_json(gt)["images"])
        write_visdrone_folder(rows, out)
        print_summary("afm convert-visdrone --to-visdrone", {
            "result files": len(rows), "empty files": sum(len(r) == 0 for r in rows.values()),
            "detections in": len(results), "lines written": sum(len(r) for r in rows.values()),
            "output": str(out)})
        return

    from afmcli.data.convert import convert_split

    stats = convert_split(src, out, split, copy=copy, skip_bad=skip_bad, slice_size=slice_size,
                          overlap=overlap, min_visible=min_visible, workers=workers)
    items = {"images": stats.images, "annotations": stats.annotations, "crowd (score 0)": stats.crowd,
             "ignored regions": stats.ignore_regions, "others (cat 11)": stats.others,
             "clipped boxes": stats.clipped, "dropped empty boxes": stats.dropped,
             "skipped bad files": len(stats.skipped)}
    if slice_size:
        items.update({"crops": stats.crops, "crop annotations": stats.crop_annotations})
    print_summary(f"afm convert-visdrone ({split})", items)
    if stats.skipped:
        typer.echo(f"skipped {len(stats.skipped)}: " + "; ".join(stats.skipped[:3])
                   + (" ..." if len(stats.skipped) > 3 else ""), err=True)
