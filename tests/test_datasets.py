"""Datasets in: YOLO data.yaml, COCO json, VisDrone -> afm's layout; the inputs people's
own data has (EXIF orientation, 16-bit, grey, RGBA, bad label lines, missing files,
one file name in two sub-folders)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from test_data_convert import _run as run_afm

from afmcli.data.convert import convert_split
from afmcli.data.datasets import convert_dataset, open_dataset
from afmcli.data.images import exif_orientation, image_size, read_image
from afmcli.errors import AfmError


def _png(path: Path, w=100, h=50, value=0, dtype=np.uint8, channels=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, channels) if channels else (h, w)
    assert cv2.imwrite(str(path), np.full(shape, value, dtype))


def _yolo(tmp_path, names=("person", "car"), labels=None, images=None, yaml_extra=""):
    """A YOLO dataset: images {relpath under images/train: (w, h)}, labels {relpath under labels/train: text}."""
    root = tmp_path / "yolo"
    for rel, (w, h) in (images or {"a.png": (100, 50)}).items():
        _png(root / "images" / "train" / rel, w, h)
    for rel, text in (labels or {}).items():
        (root / "labels" / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / rel).write_text(text)
    names_text = "\n".join(f"  {k}: {n}" for k, n in enumerate(names))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\n{yaml_extra}names:\n{names_text}\n")
    return root


def _run(capsys, *argv):
    """Exit code, stdout and stderr of `afm argv`."""
    code, out = run_afm(capsys, *argv)
    return code, out.out, out.err


def test_yolo_dataset_hand_worked(tmp_path):
    root = _yolo(tmp_path, images={"a.png": (100, 50), "b.png": (100, 50), "c.png": (100, 50),
                                   "seq1/f.png": (100, 50), "seq2/f.png": (100, 50)},
                 labels={"a.txt": "0 0.5 0.5 0.2 0.4\n\n1 0.95 0.5 0.2 0.2\n", "c.txt": "",
                         "orphan.txt": "0 0.5 0.5 0.1 0.1\n",
                         "seq1/f.txt": "1 0.5 0.5 0.1 0.1\n", "seq2/f.txt": "0 0.25 0.5 0.1 0.2\n"})
    dataset = open_dataset(root / "data.yaml")
    assert dataset.format == "yolo" and dataset.classes == ("person", "car")
    split = dataset.read("train")
    names = [r["file_name"] for r in split.records]
    assert names == ["a.png", "b.png", "c.png", "seq1/f.png", "seq2/f.png"]  # relative paths, never stems
    assert split.counts["images"] == 5 and split.counts["labels"] == 4
    assert split.counts["background images"] == 2  # b (no label file) and c (empty label file)
    assert split.counts["images without a label file"] == 1 and split.counts["empty label files"] == 1
    assert split.counts["labels missing images"] == 1  # orphan.txt
    assert split.counts["clipped boxes"] == 1
    a = split.labels[0].annotations
    assert a[0]["bbox"] == pytest.approx([40, 15, 20, 20]) and a[0]["category_id"] == 1
    assert a[1]["bbox"] == pytest.approx([85, 20, 15, 10]) and a[1]["category_id"] == 2  # clipped at x=100
    assert split.labels[4].annotations[0]["bbox"] == pytest.approx([20, 20, 10, 10])

    out = tmp_path / "Datasets"
    [done] = convert_dataset(root / "data.yaml", out, slice_size=64, overlap=0.0)
    coco = json.loads(done.ann_file.read_text())
    assert [c["name"] for c in coco["categories"]] == ["person", "car"]
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert (out / "images" / "train" / "seq1" / "f.png").is_file() and (out / "images" / "train" / "seq2" / "f.png").is_file()
    crops = json.loads(done.sliced_ann_file.read_text())
    assert {Path(i["file_name"]).parent.as_posix() for i in crops["images"]} == {".", "seq1", "seq2"}
    for img in crops["images"]:
        assert (out / "images" / "train_sliced" / img["file_name"]).is_file()


def test_yolo_names_list_txt_list_and_segments(tmp_path):
    root = tmp_path / "y"
    _png(root / "images" / "val" / "x.png", 200, 100)
    (root / "labels" / "val").mkdir(parents=True)
    # a segment line: its bounding box is x 0.1..0.3, y 0.2..0.6
    (root / "labels" / "val" / "x.txt").write_text("2 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n")
    (root / "val.txt").write_text("./images/val/x.png\n")
    (root / "data.yaml").write_text("train: val.txt\nval: [images/val]\nnames: [a, b, c]\n")
    dataset = open_dataset(root)  # the folder holding data.yaml
    assert list(dataset.splits) == ["train", "val"] and dataset.classes == ("a", "b", "c")
    for name in ("train", "val"):
        [ann] = dataset.read(name).labels[0].annotations
        assert ann["bbox"] == pytest.approx([20, 20, 40, 40]) and ann["category_id"] == 3


def test_yolo_unreadable_image_list_and_numeric_path_are_one_line(tmp_path):
    (tmp_path / "train.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "data.yaml").write_text("train: train.txt\nnames: [a]\n")
    with pytest.raises(AfmError, match=r"train\.txt: cannot read the image list \('utf-8' codec"):
        open_dataset(tmp_path / "data.yaml").read("train")
    # a numeric 'path:' is a folder name, as in afm's other dataset yamls (not a TypeError)
    (tmp_path / "data.yaml").write_text("path: 5\ntrain: images\nnames: [a]\n")
    with pytest.raises(AfmError, match=r"5/images: no such image folder"):
        open_dataset(tmp_path / "data.yaml").read("train")


@pytest.mark.parametrize("line, message", [
    ("5 0.5 0.5 0.1 0.1", r"a\.txt:2: class 5 is not one of the 2 names \(0\.\.1\)"),
    ("0 1.2 0.5 0.1 0.1", r"a\.txt:2: coordinate 1\.2 is outside 0\.\.1"),
    ("0 0.5 0.5 0.1", r"a\.txt:2: expected 'class x_center y_center width height'"),
    ("car 0.5 0.5 0.1 0.1", r"a\.txt:2: not numbers"),
])
def test_yolo_bad_label_lines_name_file_and_line(tmp_path, capsys, line, message):
    root = _yolo(tmp_path, images={"a.png": (100, 50), "b.png": (100, 50)},
                 labels={"a.txt": f"0 0.5 0.5 0.1 0.1\n{line}\n", "b.txt": "1 0.5 0.5 0.1 0.1\n"})
    with pytest.raises(AfmError, match=message):
        open_dataset(root / "data.yaml").read("train")
    code, out, err = _run(capsys, "convert", str(root / "data.yaml"), str(tmp_path / "D"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "D").exists()
    code, out, err = _run(capsys, "convert", str(root / "data.yaml"), str(tmp_path / "D"), "--skip-bad")
    assert code == 0 and "skipped 1" in err
    assert len(json.loads((tmp_path / "D/labels/annotations/train_labels.json").read_text())["images"]) == 1


def _exif_jpeg(path: Path, orientation: int, w=80, h=40) -> np.ndarray:
    """A JPEG stored w x h (four coloured quadrants) tagged with ``orientation``; returns the
    upright pixels (BGR) as PIL turns them."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:h // 2, :w // 2] = (255, 0, 0)
    img[:h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, :w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 255)
    pil = Image.fromarray(img)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path, quality=100, exif=exif.tobytes())
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))[:, :, ::-1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_read_upright_like_pil_and_opencv(tmp_path, orientation):
    path = tmp_path / "o.jpg"
    reference = _exif_jpeg(path, orientation)
    assert exif_orientation(path) == orientation
    unchanged = read_image(path, cv2.IMREAD_UNCHANGED)
    assert unchanged.shape == reference.shape
    assert np.array_equal(unchanged, read_image(path))  # OpenCV's own colour decoding turns it the same way
    assert np.abs(unchanged.astype(int) - reference).mean() < 3  # and as PIL does (another decoder)
    assert image_size(path) == (reference.shape[1], reference.shape[0])


def test_exif_rotated_jpeg_sliced_yolo(tmp_path, capsys):
    """Stored 80x40, EXIF 6 (turn clockwise): upright 40x80. The label refers to the upright
    image (ultralytics' rule); --slice plans and cuts crops on it (the known crash)."""
    root = tmp_path / "y"
    upright = _exif_jpeg(root / "images" / "train" / "r.jpg", 6)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "r.txt").write_text("0 0.5 0.25 0.5 0.5\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [thing]\n")
    code, out, err = _run(capsys, "convert", str(root / "data.yaml"), str(tmp_path / "D"), "--slice", "32",
                          "--overlap", "0")
    assert code == 0, err
    coco = json.loads((tmp_path / "D/labels/annotations/train_labels.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (40, 80)
    assert coco["annotations"][0]["bbox"] == pytest.approx([10, 0, 20, 40])
    crops = json.loads((tmp_path / "D/labels/annotations/train_sliced_labels.json").read_text())
    for img in crops["images"]:
        x1, y1, x2, y2 = img["window"]
        crop = cv2.imread(str(tmp_path / "D/images/train_sliced" / img["file_name"]))
        assert crop.shape[:2] == (y2 - y1, x2 - x1) == (img["height"], img["width"])
        assert np.abs(crop.astype(int) - upright[y1:y2, x1:x2]).mean() < 4


def test_exif_rotated_jpeg_convert_visdrone_slice(tmp_path, capsys):
    src = tmp_path / "src"
    _exif_jpeg(src / "images" / "r.jpg", 8)
    (src / "annotations").mkdir()
    (src / "annotations" / "r.txt").write_text("1,1,20,30,1,4,0,0\n")
    code, out, err = _run(capsys, "convert-visdrone", str(src), str(tmp_path / "D"), "--slice", "32")
    assert code == 0, err
    crops = json.loads((tmp_path / "D/labels/annotations/train_sliced_labels.json").read_text())
    for img in crops["images"]:
        crop = cv2.imread(str(tmp_path / "D/images/train_sliced" / img["file_name"]))
        assert crop.shape[:2] == (img["height"], img["width"])


@pytest.mark.parametrize("name, dtype, channels, value", [
    ("g16.png", np.uint16, 0, 40000), ("g8.png", np.uint8, 0, 200), ("rgba.png", np.uint8, 4, 90),
    ("t16.tiff", np.uint16, 3, 50000), ("g.tif", np.uint8, 0, 7)])
def test_16bit_grey_rgba_tiff(tmp_path, name, dtype, channels, value):
    root = tmp_path / "y"
    _png(root / "images" / "train" / name, 96, 64, value, dtype, channels)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / (Path(name).stem + ".txt")).write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [thing]\n")
    [done] = convert_dataset(root / "data.yaml", tmp_path / "D", slice_size=48, overlap=0.0)
    coco = json.loads(done.ann_file.read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (96, 64)
    assert coco["annotations"][0]["bbox"] == pytest.approx([24, 16, 48, 32])
    crop = json.loads(done.sliced_ann_file.read_text())["images"][0]["file_name"]
    pixels = cv2.imread(str(done.sliced_images / crop), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == dtype and pixels.shape[:2] == (48, 48)  # bit depth and channels kept
    assert read_image(done.sliced_images / crop).shape == (48, 48, 3)  # what training decodes: BGR 8-bit


def _coco_split(tmp_path):
    images = tmp_path / "photos"
    _png(images / "day1" / "a.png", 100, 50)
    _png(images / "day2" / "a.png", 100, 50)
    _png(images / "stray.png", 10, 10)
    coco = {"categories": [{"id": 7, "name": "vehicle"}, {"id": 0, "name": "human"}],
            "images": [{"id": 1, "file_name": "day1/a.png", "width": 100, "height": 50},
                       {"id": 2, "file_name": "day2/a.png"},
                       {"id": 3, "file_name": "gone.png", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 10]},
                            {"id": 2, "image_id": 1, "category_id": 0, "bbox": [50, 10, 5, 10], "iscrowd": 1},
                            {"id": 3, "image_id": 2, "category_id": 0, "bbox": [90, 40, 20, 20], "ignore": True},
                            {"id": 4, "image_id": 2, "category_id": 0, "bbox": [1, 1, 3, 3]},
                            {"id": 5, "image_id": 3, "category_id": 0, "bbox": [1, 1, 3, 3]}]}
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    return tmp_path / "gt.json", images


def test_coco_any_ids_ignore_flags_missing_images(tmp_path):
    ann, images = _coco_split(tmp_path)
    dataset = open_dataset(ann, images)
    assert dataset.format == "coco" and dataset.classes == ("human", "vehicle")  # in id order: 0, 7
    split = dataset.read("train")
    assert [r["file_name"] for r in split.records] == ["day1/a.png", "day2/a.png"]
    c = split.counts
    assert (c["images"], c["labels"], c["ignored objects (iscrowd or ignore)"]) == (2, 2, 2)
    assert c["labels missing images"] == 1 and c["images not in the json"] == 1 and c["clipped boxes"] == 1
    [a, b] = split.labels[0].annotations
    assert (a["category_id"], a["iscrowd"], b["category_id"], b["iscrowd"]) == (2, 0, 1, 1)
    assert split.labels[1].annotations[0]["bbox"] == pytest.approx([90, 40, 10, 10])  # clipped to 100x50
    assert split.labels[1].annotations[0]["iscrowd"] == 1  # the ignore flag

    [done] = convert_dataset(ann, tmp_path / "D", images=images)
    out = json.loads(done.ann_file.read_text())
    assert out["categories"] == [{"id": 1, "name": "human", "supercategory": "object"},
                                 {"id": 2, "name": "vehicle", "supercategory": "object"}]


def test_coco_yaml_names_subset_and_size_mismatch(tmp_path, capsys):
    ann, images = _coco_split(tmp_path)
    (tmp_path / "ds.yaml").write_text(f"format: coco\ntrain: {{ann: {ann.name}, images: photos}}\n"
                                      "val: {ann: gt.json, images: photos}\nnames: [vehicle]\n")
    dataset = open_dataset(tmp_path / "ds.yaml")
    assert dataset.classes == ("vehicle",) and list(dataset.splits) == ["train", "val"]
    split = dataset.read("val")
    assert split.counts["labels of other classes"] == 3 and split.counts["labels"] == 1
    coco = json.loads(ann.read_text())
    coco["images"][0]["width"] = 50
    ann.write_text(json.dumps(coco))
    code, out, err = _run(capsys, "convert", str(ann), str(tmp_path / "E"), "--images", str(images))
    assert code == 2 and "images[0] (day1/a.png): the json says 50x50, the upright image is 100x50" in err


def _visdrone_val_split(tmp_path: Path) -> Path:
    """An official-layout split of one 100x50 image (a car, an ignored region, a crowd row),
    converted by convert-visdrone's code into tmp_path/A; its source folder."""
    src = tmp_path / "src"
    _png(src / "images" / "a.png", 100, 50)
    (src / "annotations").mkdir()
    (src / "annotations" / "a.txt").write_text("1,1,20,30,1,4,0,0\n0,0,10,10,0,0,0,0\n5,5,5,5,0,1,0,0\n")
    convert_split(src, tmp_path / "A", "val")
    return src


def test_visdrone_folder_same_as_convert_visdrone(tmp_path):
    src = _visdrone_val_split(tmp_path)
    [done] = convert_dataset(open_dataset(src, split="val"), tmp_path / "B")
    for rel in ("labels/annotations/val_labels.json",):
        assert json.loads((tmp_path / "A" / rel).read_text()) == json.loads((tmp_path / "B" / rel).read_text())
    assert (tmp_path / "B/labels/org/val_annotations/a.txt").is_file()
    assert done.data.counts["ignored regions"] == 1 and done.data.counts["crowd (score 0)"] == 1


def test_convert_refuses_foreign_output_and_unknown_data(tmp_path, capsys):
    root = _yolo(tmp_path, labels={"a.txt": "0 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "D" / "images" / "train").mkdir(parents=True)
    (tmp_path / "D" / "images" / "train" / "mine.jpg").write_text("user's")
    code, out, err = _run(capsys, "convert", str(root / "data.yaml"), str(tmp_path / "D"))
    assert code == 2 and "images/train" in err
    assert (tmp_path / "D" / "images" / "train" / "mine.jpg").read_text() == "user's"
    code, out, err = _run(capsys, "convert", str(tmp_path / "nothing"), str(tmp_path / "E"))
    assert code == 2 and "no such dataset" in err
    code, out, err = _run(capsys, "convert", str(root / "data.yaml"), str(tmp_path / "E"), "--split", "val")
    assert code == 2 and "no split 'val'" in err


def test_masks_of_one_file_name_in_two_sub_folders(tmp_path):
    """make-masks writes each image's masks under its relative path; LoadObjectMasks with
    the image folder finds them (by stem both would be one file)."""
    from afmcli.data.mask_files import write_mask_files
    from afmcli.data.transforms import LoadObjectMasks

    root = _yolo(tmp_path, images={"seq1/f.png": (100, 50), "seq2/f.png": (100, 50)},
                 labels={"seq1/f.txt": "0 0.2 0.5 0.1 0.2\n", "seq2/f.txt": "0 0.8 0.5 0.1 0.2\n"})
    out = tmp_path / "D"
    convert_dataset(root / "data.yaml", out)
    assert write_mask_files(out, "train", workers=1)["images"] == 2
    load = LoadObjectMasks(str(out / "labels/gt_mask_s/train"), str(out / "labels/gt_mask_l/train"),
                           img_root=str(out / "images/train"))
    left = load.transform({"img_path": str(out / "images/train/seq1/f.png"), "img_shape": (50, 100)})
    right = load.transform({"img_path": str(out / "images/train/seq2/f.png"), "img_shape": (50, 100)})
    assert left["gt_seg_map"][:, :50, 0].any() and not left["gt_seg_map"][:, 50:, 0].any()
    assert right["gt_seg_map"][:, 50:, 0].any() and not right["gt_seg_map"][:, :50, 0].any()
    # without img_root: the longest tail of the path with a mask file, never the stem alone
    by_tail = LoadObjectMasks(str(out / "labels/gt_mask_s/train"), str(out / "labels/gt_mask_l/train"))
    for side in ("seq1", "seq2"):
        results = {"img_path": str(out / f"images/train/{side}/f.png"), "img_shape": (50, 100)}
        assert np.array_equal(by_tail.transform(dict(results))["gt_seg_map"],
                              load.transform(dict(results))["gt_seg_map"])


def test_an_afm_datasets_root_is_a_coco_dataset_with_its_ignore_regions(tmp_path):
    _visdrone_val_split(tmp_path)
    dataset = open_dataset(tmp_path / "A")
    assert dataset.format == "coco" and list(dataset.splits) == ["val"] and len(dataset.classes) == 10
    [done] = convert_dataset(dataset, tmp_path / "B")
    a = json.loads((tmp_path / "A/labels/annotations/val_labels.json").read_text())
    b = json.loads(done.ann_file.read_text())
    assert b["images"][0]["ignore_regions"] == a["images"][0]["ignore_regions"] == [[0, 0, 10, 10]]
    assert [(x["bbox"], x["category_id"], x["iscrowd"]) for x in b["annotations"]] == \
        [(x["bbox"], x["category_id"], x["iscrowd"]) for x in a["annotations"]]
    assert done.data.counts["ignored regions"] == 1 and done.data.counts["ignored objects (iscrowd or ignore)"] == 1


def test_roboflow_style_yaml(tmp_path):
    """Roboflow's export: data.yaml beside train/ valid/, paths written '../train/images'."""
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        _png(root / split / "images" / "a.jpg.png", 64, 32)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / "a.jpg.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['boat']\n")
    dataset = open_dataset(root / "data.yaml")
    assert dataset.splits["val"] == [root / "valid" / "images"]
    [ann] = dataset.read("val").labels[0].annotations
    assert ann["bbox"] == pytest.approx([16, 8, 32, 16])
