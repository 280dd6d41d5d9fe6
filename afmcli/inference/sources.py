"""What `afm infer` runs on: an image, a folder of images, or our COCO json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from afmcli.data.coco_check import load_coco_gt
from afmcli.data.images import IMAGE_SUFFIXES, check_unique_keys, image_stem, list_images
from afmcli.errors import AfmError
LABELS_SUFFIX = "_labels.json"


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path
    file_name: str  # as in the COCO json: relative to the images folder


def json_images_dir(json_path: Path) -> Path:
    """``Datasets/labels/annotations/<split>_labels.json`` -> ``Datasets/images/<split>/``."""
    if not json_path.name.endswith(LABELS_SUFFIX):
        raise AfmError(f"{json_path}: cannot tell the split from the name (expected <split>{LABELS_SUFFIX}); "
                       "pass --images DIR")
    return json_path.parent.parent.parent / "images" / json_path.name[:-len(LABELS_SUFFIX)]


def resolve_source(source: Path, images_dir: Path | None = None) -> tuple[list[ImageItem], list[dict] | None]:
    """The images to run on and, for a COCO json, its categories.

    A file or folder gets ids 1..N in file-name order, as ``afm convert-visdrone``
    numbers a split, so results line up with a converted split of the same images.
    """
    source = Path(source)
    if source.suffix.lower() == ".json":
        # Checked: integer ids without duplicates, relative file names, one name per image.
        coco = load_coco_gt(source, need_sizes=False, need_annotations=False)
        root = images_dir or json_images_dir(source)
        items = [ImageItem(img["id"], root / img["file_name"], img["file_name"]) for img in coco["images"]]
        return check_unique_stems(items, source), list(coco.get("categories") or [])
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise AfmError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    elif source.is_file():
        files = [source]
    else:
        raise AfmError(f"{source}: no such file or folder")
    return check_unique_stems([ImageItem(i, p, p.name) for i, p in enumerate(files, start=1)], source), None


def check_unique_stems(items: list[ImageItem], source: Path) -> list[ImageItem]:
    """Per-image outputs (visdrone/<stem>.txt, viz/<stem>.png) are named by file stem:
    two images may not share one. (Once they are named by
    afmcli.data.images.image_key, the json's own check is enough.)"""
    check_unique_keys((item.file_name for item in items), source, image_stem)
    return items


def category_ids(classes: Sequence[str], categories: list[dict] | None, source: Path | None = None) -> list[int]:
    """Category id of each model class: by name in a COCO json's categories, else i + 1
    (VisDrone's ids when the classes are VisDrone's, in their order)."""
    if not categories:
        return list(range(1, len(classes) + 1))
    by_name = {c.get("name"): c.get("id") for c in categories}
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise AfmError(f"{source}: no category named {missing[0]!r} (the model's classes: {', '.join(classes)})")
    return [int(by_name[name]) for name in classes]
