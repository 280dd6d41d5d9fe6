"""`afm convert-visdrone`: official VisDrone split -> the Datasets/ layout with COCO json."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

# The crop options of both converters.
SLICE = typer.Option(None, "--slice", help="Also write square crops of this size (pixels) with their labels "
                     "(images/<split>_sliced/); repeat for multi-scale crops (--slice 512 --slice 800). "
                     "Default: no crops.")
OVERLAP = typer.Option(0.25, "--overlap", help="Overlap between neighbouring crops, a ratio of --slice in [0, 1).")
MIN_VISIBLE = typer.Option(0.5, "--min-visible", help="Keep a clipped box in a crop when at least this fraction "
                           "(0 to 1) of its area is inside the crop.")

CONVERT_EXAMPLES = """Examples:

  afm convert data.yaml Datasets --slice 640 --overlap 0.25

  afm convert instances_train.json Datasets --images photos/ --split train
"""

EXAMPLES = """Examples:

  afm convert-visdrone VisDrone2019-DET-train Datasets --split train --slice 640

  afm convert-visdrone VisDrone2019-DET-train yolo --to-yolo --split train
"""


def convert_visdrone(
    src: Path = typer.Argument(..., help="Official split folder (with images/ and annotations/), "
                               "or with --to-visdrone a COCO results json."),
    out: Path = typer.Argument(..., help="The Datasets/ root; with --to-visdrone the result folder; with "
                               "--to-yolo the YOLO dataset root."),
    split: str = typer.Option("train", "--split", help="Split name: train, val or test-dev (names the "
                              "output folders)."),
    to_visdrone: bool = typer.Option(False, "--to-visdrone",
                                     help="Reverse: COCO results json -> VisDrone result txt folder "
                                     "(one file per image of --gt, the best 500 lines each)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="With --to-visdrone: the COCO json that names the images."),
    to_yolo: bool = typer.Option(False, "--to-yolo", help="Write a YOLO (ultralytics) dataset instead: "
                                 "OUT/images/<split>/, OUT/labels/<split>/, OUT/data.yaml; ignored regions "
                                 "painted out, 'others' dropped."),
    keep_ignored: bool = typer.Option(False, "--keep-ignored", help="With --to-yolo: leave the ignored "
                                      "regions' pixels as they are (only their labels are left out)."),
    slice_size: Optional[List[int]] = SLICE,
    overlap: float = OVERLAP,
    min_visible: float = MIN_VISIBLE,
    copy: bool = typer.Option(False, "--copy", help="Copy images and labels instead of hard- or "
                              "sym-linking them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unpaired, damaged or malformed files "
                                  "and list them, instead of stopping at the first."),
    workers: int = typer.Option(0, "--workers", help="Processes for writing crops (or painted images); "
                                "0 = all cores."),
) -> None:
    """Convert VisDrone labels to COCO (back with --to-visdrone, to YOLO with --to-yolo).

    Writes images/<split>/, labels/org/<split>_annotations/ and
    labels/annotations/<split>_labels.json under OUT; afm replaces only what it
    wrote (see README, Errors and safety).
    """
    from afmcli.errors import AfmError
    from afmcli.io import output_lock

    if to_visdrone and to_yolo:
        raise AfmError("--to-visdrone and --to-yolo go different ways: give one")
    with output_lock(out, "afm convert-visdrone", "out"):  # one run at a time writes OUT
        _convert(src, out, split, to_visdrone, gt, to_yolo, keep_ignored, slice_size, overlap, min_visible, copy,
                 skip_bad, workers)


def _convert(src: Path, out: Path, split: str, to_visdrone: bool, gt: Optional[Path], to_yolo: bool,
             keep_ignored: bool, slice_size: Optional[List[int]], overlap: float, min_visible: float, copy: bool,
             skip_bad: bool, workers: int) -> None:
    from afmcli.commands.tables import print_summary
    from afmcli.errors import AfmError

    if to_visdrone:
        _to_visdrone(src, out, gt)
        return
    if to_yolo:
        if slice_size:
            raise AfmError("--slice makes crops for the Datasets/ layout, not with --to-yolo")
        _to_yolo(src, out, split, keep_ignored, copy, skip_bad, workers)
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
    say_skipped(stats.skipped)


def convert(
    data: Path = typer.Argument(..., help="The dataset: an ultralytics data.yaml, afm's dataset yaml (format: coco "
                                "or visdrone), a COCO json, or an official VisDrone split folder (see README, "
                                "Your own data)."),
    out: Path = typer.Argument(..., help="The Datasets/ root to write (images/<split>/, "
                               "labels/annotations/<split>_labels.json)."),
    split: Optional[List[str]] = typer.Option(None, "--split", help="Which split to convert (repeat for several; "
                                              "default: all). Names a bare json's or split folder's one split."),
    images: Optional[Path] = typer.Option(None, "--images", help="With a COCO json DATA: its image folder "
                                          "(default: the json's folder)."),
    slice_size: Optional[List[int]] = SLICE,
    overlap: float = OVERLAP,
    min_visible: float = MIN_VISIBLE,
    copy: bool = typer.Option(False, "--copy", help="Copy images instead of hard- or sym-linking them."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip damaged images and malformed label files "
                                  "and list them, instead of stopping at the first."),
    workers: int = typer.Option(0, "--workers", help="Processes for writing crops; 0 = all cores."),
) -> None:
    """Convert any dataset (YOLO, COCO json, VisDrone) to afm's layout: COCO json, crops.

    The class list comes from the data (categories 1..K in its order); labels refer to
    the upright image (EXIF orientation applied). Every split's counts are printed.
    """
    from afmcli.data.datasets import convert_dataset, open_dataset
    from afmcli.io import output_lock

    dataset = open_dataset(data, images, split[0] if split and len(split) == 1 else "train")
    with output_lock(out, "afm convert", "out"):  # one run at a time writes OUT
        done = convert_dataset(dataset, out, split or None, copy=copy, skip_bad=skip_bad, slice_size=slice_size,
                               overlap=overlap, min_visible=min_visible, workers=workers)
    print_splits(f"afm convert ({dataset.format}: {', '.join(dataset.classes)})", done)
    for converted in done:
        say_skipped(converted.data.skipped)


def print_splits(title: str, splits) -> None:
    """One column per converted split: the reader's counts, crops, where it went."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for converted in splits:
        table.add_column(converted.name, justify="right")
    rows: dict[str, list] = {}
    for k, converted in enumerate(splits):
        counts = dict(converted.data.counts)
        if converted.sliced_ann_file is not None:
            counts.update({"crops": converted.stats.crops, "crop labels": converted.stats.crop_annotations})
        if converted.stats.reused:
            counts["kept from the last run (unchanged)"] = "yes"
        for name, value in counts.items():
            rows.setdefault(name, [""] * len(splits))[k] = f"{value:,}" if isinstance(value, int) else str(value)
    for name, values in rows.items():
        table.add_row(name, *values)
    console = Console()
    console.print(table)
    console.print(f"written: {', '.join(str(c.ann_file) for c in splits)}")


def say_skipped(skipped: list[str]) -> None:
    if skipped:
        typer.echo(f"skipped {len(skipped)}: " + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""),
                   err=True)


def _to_yolo(src: Path, out: Path, split: str, keep_ignored: bool, copy: bool, skip_bad: bool,
             workers: int) -> None:
    from afmcli.commands.tables import print_summary
    from afmcli.data.yolo import convert_split_to_yolo

    stats = convert_split_to_yolo(src, out, split, keep_ignored=keep_ignored, copy=copy, skip_bad=skip_bad,
                                  workers=workers)
    print_summary(f"afm convert-visdrone --to-yolo ({split})", {
        "images": stats.images, "labels": stats.labels,
        "ignored regions (cat 0)" + (" painted" if not keep_ignored else ""): stats.ignored_regions,
        "ignored objects (score 0)" + (" painted" if not keep_ignored else ""): stats.ignored_objects,
        "images painted": stats.painted_images, "labels dropped under paint": stats.covered,
        "others (cat 11) dropped": stats.others, "skipped bad files": len(stats.skipped),
        "output": str(out)})
    say_skipped(stats.skipped)


def _to_visdrone(src: Path, out: Path, gt: Optional[Path]) -> None:
    """COCO results json -> one VisDrone result txt per ground-truth image."""
    from afmcli.data.coco import (MAX_DETS_PER_IMAGE, coco_results_to_visdrone, images_over_cap,
                                  write_visdrone_folder)
    from afmcli.data.coco_check import load_coco_gt, load_coco_results
    from afmcli.commands.tables import print_summary
    from afmcli.errors import AfmError, warn
    from afmcli.evaluation.meaning import category_warning, coverage_message
    from afmcli.io import check_replaceable

    if gt is None:
        raise AfmError("--to-visdrone needs --gt LABELS.json (the images to write files for)")
    check_replaceable(out, "OUT")
    results = load_coco_results(src)
    images = load_coco_gt(gt, need_sizes=False, need_annotations=False)["images"]
    rows = coco_results_to_visdrone(results, images, src)
    covered = set(results.image_ids.tolist())
    if not covered and images:
        raise AfmError(f"{src}: no detections for any of the {len(images)} images of {gt}")
    without = [img["file_name"] for img in images if img["id"] not in covered]
    cut = images_over_cap(results, MAX_DETS_PER_IMAGE)
    for message in (coverage_message(without, len(images), f"images have no detections in {src}") if without else None,
                    category_warning(results.category_ids, src),
                    f"{cut} images have more than {MAX_DETS_PER_IMAGE} detections: kept the best "
                    f"{MAX_DETS_PER_IMAGE} of each (the VisDrone toolkit reads no more)" if cut else None):
        if message:
            warn(message)
    write_visdrone_folder(rows, out)
    print_summary("afm convert-visdrone --to-visdrone", {
        "result files": len(rows), "empty files": sum(len(r) == 0 for r in rows.values()),
        "detections in": len(results), "lines written": sum(len(r) for r in rows.values()),
        "images over the cap": cut, "output": str(out)})
