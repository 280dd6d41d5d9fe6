"""COCO json ground truth with its image folder, one json per split.

- classes: the json's category names, in the order of their ids (any ids: 0-based,
  1-based, with gaps), or the dataset yaml's ``names`` (a subset or another order;
  annotations of other categories are left out and counted). Every split's json is
  matched to them by name.
- ``iscrowd: 1`` and a true ``ignore`` flag (TinyPerson, CrowdHuman) mark ignored
  objects: never a miss, never a false positive where a prediction lands on them.
- class-agnostic ignored regions: an image record's ``ignore_regions`` ([[x, y, w, h], ...],
  as afm's own json keeps VisDrone's category 0), kept.
- ``file_name`` is relative to the split's image folder (sub-folders allowed). An
  image listed in the json but missing from the folder is counted and left out;
  an image whose size differs from the json's (the upright size: a JPEG's EXIF
  orientation applied) is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

from afmcli.data.coco_check import load_coco_gt
from afmcli.data.images import image_size, is_image_file
from afmcli.data.readers.base import DatasetReader, SplitData, boxes_to_labels, skip_or_raise
from afmcli.errors import AfmError


def category_names(coco: dict, source: Path) -> list[str]:
    """The json's category names in id order; two categories with one name are refused."""
    names = [c["name"] for c in sorted(coco.get("categories", []), key=lambda c: c["id"])]
    if not names:
        raise AfmError(f"{source}: no 'categories': the class names come from them")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AfmError(f"{source}: two categories are named {dup[0]!r}")
    return names


def _ignore_regions(img: dict, source: Path, index: int) -> list:
    regions = img.get("ignore_regions", [])
    if not isinstance(regions, list) or not all(
            isinstance(r, list) and len(r) == 4 and all(isinstance(v, (int, float)) for v in r) for r in regions):
        raise AfmError(f"{source}: images[{index}]: ignore_regions must be a list of [x, y, w, h]")
    return regions


class CocoDataset(DatasetReader):
    """``splits``: {name: (json path, image folder)}."""

    format = "coco"

    def __init__(self, source: Path, splits: dict, names=None):
        self._loaded: dict[Path, dict] = {}
        if names is None:
            ann = next(iter(splits.values()))[0]
            names = category_names(self._load(ann), ann)
        super().__init__(source, names, splits)

    def _load(self, ann: Path) -> dict:
        if ann not in self._loaded:
            self._loaded[ann] = load_coco_gt(ann, need_sizes=False)
        return self._loaded[ann]

    def _read(self, spec: tuple[Path, Path], skip_bad: bool) -> SplitData:
        ann, images_dir = spec
        if not images_dir.is_dir():
            raise AfmError(f"{images_dir}: no such image folder (the images of {ann})")
        coco = self._load(ann)
        new_id = {c["id"]: self.classes.index(c["name"]) + 1 for c in coco["categories"]
                  if c["name"] in self.classes}
        missing = [n for n in self.classes if n not in {c["name"] for c in coco["categories"]}]
        if len(missing) == len(self.classes):
            raise AfmError(f"{ann}: none of the classes ({', '.join(self.classes)}) is a category here")
        per_image: dict[int, list] = {img["id"]: [] for img in coco["images"]}
        for a in coco["annotations"]:
            per_image[a["image_id"]].append(a)
        data = SplitData(images_dir=images_dir)
        counts = dict.fromkeys(("images", "labels", "ignored objects (iscrowd or ignore)", "ignored regions",
                                "background images",
                                "labels missing images", "images not in the json", "labels of other classes",
                                "clipped boxes", "dropped empty boxes"), 0)
        for i, img in enumerate(coco["images"]):
            path = images_dir / img["file_name"]
            if not path.is_file():
                counts["labels missing images"] += 1
                continue
            try:
                width, height = image_size(path)
                if (img.get("width"), img.get("height")) not in ((width, height), (None, None)):
                    raise AfmError(f"{ann}: images[{i}] ({img['file_name']}): the json says "
                                   f"{img.get('width')}x{img.get('height')}, the upright image is {width}x{height}"
                                   " (labels refer to the image with its EXIF orientation applied)")
            except AfmError as exc:
                skip_or_raise(data, exc, skip_bad)
                continue
            anns = [a for a in per_image[img["id"]] if a["category_id"] in new_id]
            counts["labels of other classes"] += len(per_image[img["id"]]) - len(anns)
            lab = boxes_to_labels([a["bbox"] for a in anns], [new_id[a["category_id"]] for a in anns],
                                  [a.get("iscrowd", 0) or bool(a.get("ignore", 0)) for a in anns], width, height)
            lab.ignore_regions = _ignore_regions(img, ann, i)
            data.files.append(path)
            data.records.append({"file_name": Path(img["file_name"]).as_posix(), "width": width, "height": height})
            data.labels.append(lab)
            counts["images"] += 1
            counts["labels"] += sum(not a["iscrowd"] for a in lab.annotations)
            counts["ignored objects (iscrowd or ignore)"] += sum(a["iscrowd"] for a in lab.annotations)
            counts["ignored regions"] += len(lab.ignore_regions)
            counts["background images"] += not lab.annotations
            counts["clipped boxes"] += lab.clipped
            counts["dropped empty boxes"] += lab.dropped
        listed = {Path(img["file_name"]).as_posix() for img in coco["images"]}
        counts["images not in the json"] = sum(
            1 for p in images_dir.rglob("*") if is_image_file(p) and p.relative_to(images_dir).as_posix() not in listed)
        counts["skipped bad files"] = len(data.skipped)
        data.counts = counts
        return data
