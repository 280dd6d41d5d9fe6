"""`afm fuse` on files: read and check COCO result files, fuse, write."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

from afmcli.data.coco_check import load_coco_gt, load_coco_results
from afmcli.data.images import image_key
from afmcli.detections import Detections, detections_to_visdrone_rows, results_by_image
from afmcli.errors import AfmError, ParameterError, warn
from afmcli.evaluation.categories import TABLE_FILE, read_prediction_table
from afmcli.evaluation.image_ids import IMAGES_FILE, read_prediction_images
from afmcli.evaluation.meaning import coverage_message
from afmcli.inference.fusion import apply_cap, check_fusion_options, fuse_predictions
from afmcli.inference.writers.coco_json import write_results_json
from afmcli.io import atomic_path, check_output_file, check_replaceable, write_json


def check_image_ids(sources: Sequence[dict[int, Detections]], names: Sequence[Path], gt: Path,
                    known: set[int]) -> None:
    for name, source in zip(names, sources):
        unknown = sorted(set(source) - known)
        if unknown:
            raise AfmError(f"{name}: {len(unknown)} image id(s) not in {gt}, e.g. image_id {unknown[0]}")


def check_same_tables(tables: dict) -> None:
    """Inputs whose recorded category tables (afm infer's categories.json) differ mean other
    classes by the same ids: fusing them would merge unlike boxes."""
    items = list(tables.items())
    for path, table in items[1:]:
        if table != items[0][1]:
            raise AfmError(f"{path}: its categories ({table.describe()}) differ from {items[0][0]}'s "
                           f"({items[0][1].describe()}); fuse detections of the same category table")


def same_images(records: Sequence[tuple[Path, dict[int, str]]]) -> dict[int, str]:
    """The images of the inputs' records (afm infer's images.json: id -> file name), merged;
    one id naming two files would fuse the detections of two images: refused."""
    merged: dict[int, str] = {}
    for path, images in records:
        for image_id, file_name in images.items():
            if merged.setdefault(image_id, file_name) != file_name:
                raise AfmError(f"{path}: image {image_id} is {file_name}, another input's {merged[image_id]}; "
                               "fuse detections of the same images (runs on the same source)")
    return merged


def _needs_images_record(images: dict[int, str], out: Path) -> bool:
    """As :func:`_needs_record`, for the inputs' images."""
    there = read_prediction_images(Path(out))
    if there is not None and there[1] != images:
        raise ParameterError(f"{there[0]} records other images than the inputs'; write {{out}} in another folder",
                             "out")
    return there is None


def _needs_record(table, out: Path) -> bool:
    """Whether ``out``'s folder lacks the inputs' category table (then fuse records it there);
    another table there would be read for ``out``: refused, never replaced."""
    there = read_prediction_table(Path(out))
    if there is not None and there != table:
        raise ParameterError(f"{Path(out).parent / TABLE_FILE} records other categories ({there.describe()}) than the "
                             f"inputs' ({table.describe()}); write {{out}} in another folder", "out")
    return there is None


def fuse_files(preds: Sequence[Path], out: Path, method: str = "nms", iou: float = 0.6, match: str = "iou",
               class_agnostic: bool = False, weights: Sequence[float] | None = None,
               max_per_img: int = 500, visdrone_dir: Path | None = None,
               gt: Path | None = None) -> list[tuple[str, int, int]]:
    """Fuse the files and write ``out`` (and ``visdrone_dir``, both or neither); returns
    (name, images, detections) per input and for the result."""
    from afmcli.data.coco import write_visdrone_folder

    check_fusion_options(method, iou, match, class_agnostic, weights, len(preds), max_per_img)
    if visdrone_dir is not None and gt is None:
        raise ParameterError("{visdrone_dir} needs {gt}: the VisDrone files are named after its images",
                             "visdrone_dir", "gt")
    check_output_file(out, "out")
    if visdrone_dir is not None:
        check_replaceable(visdrone_dir, "visdrone_dir")
    tables = {p: t for p in preds if (t := read_prediction_table(p)) is not None}
    check_same_tables(tables)
    table = next(iter(tables.values()), None)
    record = table is not None and _needs_record(table, out)
    image_records = [r for p in preds if (r := read_prediction_images(p)) is not None]
    images_record = same_images(image_records) if image_records else None
    record_images = images_record is not None and _needs_images_record(images_record, out)
    if visdrone_dir is not None and table is not None and not table.visdrone:
        raise ParameterError(f"{{visdrone_dir}} writes VisDrone's category ids 1..10; {next(iter(tables))}'s "
                             f"categories are others ({table.describe()})", "visdrone_dir")
    sources = [results_by_image(load_coco_results(p)) for p in preds]
    if not any(len(d) for s in sources for d in s.values()):
        # Never replace a good result with an empty one.
        raise AfmError(f"no detections in {', '.join(map(str, preds))}: nothing to fuse"
                       + (f"; {out} is left as it was" if out.exists() else ""))
    images, sizes = None, None
    if gt is not None:
        images = load_coco_gt(gt, need_sizes=False, need_annotations=False)["images"]
        check_image_ids(sources, preds, gt, {img["id"] for img in images})
        sizes = {img["id"]: (img["width"], img["height"]) for img in images if "width" in img and "height" in img}
        covered = set().union(*[s.keys() for s in sources])
        without = [img["file_name"] for img in images if img["id"] not in covered]
        if without and len(without) == len(images):
            raise AfmError(f"no detections for any of the {len(images)} images of {gt} in "
                           f"{', '.join(map(str, preds))}")
        if without:
            warn(coverage_message(without, len(images), f"images of {gt} have no detections in any input"))
    fused, cut = apply_cap(fuse_predictions(sources, method, iou, match, class_agnostic, weights, None, sizes),
                           max_per_img)
    if cut:
        warn(f"{{max_per_img}} {max_per_img} cut the fused detections of {cut} of {len(fused)} images", "max_per_img")
    with atomic_path(out) as tmp_json, (atomic_path(visdrone_dir) if visdrone_dir is not None
                                        else contextlib.nullcontext()) as tmp_dir:
        write_results_json(tmp_json, fused)
        if record:  # the fused detections' table, where `afm evaluate` looks for it
            write_json(Path(out).parent / TABLE_FILE, table.to_json(), indent=2)
        if record_images:  # which image each fused id is, where `afm evaluate` looks for it
            write_json(Path(out).parent / IMAGES_FILE, [{"id": i, "file_name": f} for i, f in
                                                        sorted(images_record.items())])
        if visdrone_dir is not None:
            # Every image of the gt json gets a file, an empty one where nothing was fused.
            write_visdrone_folder({image_key(img["file_name"]): detections_to_visdrone_rows(
                fused.get(img["id"], Detections.empty()), max_per_img) for img in images}, tmp_dir)
    summary = [(str(p), len(s), sum(len(d) for d in s.values())) for p, s in zip(preds, sources)]
    return summary + [(f"fused -> {out}", len(fused), sum(len(d) for d in fused.values()))]
