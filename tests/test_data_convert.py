"""VisDrone txt <-> COCO json conversion, the CLI, bad input, sliced sets."""

import json
import os
import re
from pathlib import Path

import cv2
import imagesize
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.coco import coco_results_to_visdrone, coco_to_visdrone_rows
from afmcli.data.convert import convert_split, multi_scale_windows
from afmcli.data.slicing import slice_windows
from afmcli.data.visdrone_format import read_visdrone_file
from afmcli.errors import AfmError

# The project's shared/ sits beside the checkout (CI clones it so); AFM_SHARED moves it.
SAMPLES = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared")) \
    / "data" / "aerial-samples"


def _split(tmp_path, labels: dict, sizes: dict | None = None, name="src") -> Path:
    """An official-layout folder: {stem: txt text}, blank PNGs of sizes {stem: (w, h)} (100x50)."""
    src = tmp_path / name
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    for stem, text in labels.items():
        w, h = (sizes or {}).get(stem, (100, 50))
        cv2.imwrite(str(src / "images" / f"{stem}.png"), np.zeros((h, w), np.uint8))
        (src / "annotations" / f"{stem}.txt").write_bytes(text.encode())
    return src


def _run(capsys, *argv):
    """Exit code (0 when main returns) and captured output of `afm argv`."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


HAND = ("10,5,20,10,1,4,0,1,\r\n"     # car, kept as is
        "\r\n"
        "90,40,20,20,1,1,1,0\r\n"     # pedestrian crossing the corner: clipped to 90,40,10,10
        "0,0,30,30,0,0,0,0\r\n"       # ignored region
        "50,20,8,8,0,2,0,2\r\n"       # score 0 -> crowd
        "60,10,5,5,1,11,0,0\r\n"      # others
        "120,10,5,5,1,3,0,0\r\n")     # entirely outside: dropped


def test_hand_case_fields(tmp_path):
    src = _split(tmp_path, {"b": HAND, "a": ""})
    stats = convert_split(src, tmp_path / "D", "val")
    coco = json.loads((tmp_path / "D/labels/annotations/val_labels.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    assert coco["categories"][3]["name"] == "car"
    # images sorted by name: a (empty labels, valid) then b
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "width": 100, "height": 50, "ignore_regions": []},
        {"id": 2, "file_name": "b.png", "width": 100, "height": 50, "ignore_regions": [[0, 0, 30, 30]]}]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 2, "category_id": 4, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0,
         "truncation": 0, "occlusion": 1},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [90, 40, 10, 10], "area": 100, "iscrowd": 0,
         "truncation": 1, "occlusion": 0, "visdrone_bbox": [90, 40, 20, 20]},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [50, 20, 8, 8], "area": 64, "iscrowd": 1,
         "truncation": 0, "occlusion": 2}]
    assert coco["others"] == [{"id": 1, "image_id": 2, "bbox": [60, 10, 5, 5], "score": 1,
                               "truncation": 0, "occlusion": 0}]
    assert (stats.images, stats.annotations, stats.crowd, stats.ignore_regions, stats.others,
            stats.clipped, stats.dropped) == (2, 3, 1, 1, 1, 1, 1)
    # images and official txt are linked (hard links here), not copied
    assert os.path.samefile(src / "images/b.png", tmp_path / "D/images/val/b.png")
    assert (tmp_path / "D/labels/org/val_annotations/b.txt").read_bytes() == HAND.encode()


def test_copy_option_copies(tmp_path):
    src = _split(tmp_path, {"a": "1,1,5,5,1,4,0,0\n"})
    convert_split(src, tmp_path / "D", "train", copy=True)
    assert not os.path.samefile(src / "images/a.png", tmp_path / "D/images/train/a.png")


def test_round_trip_on_synth_data(tmp_path):
    """txt -> COCO -> txt gives back every row of every file (as a multiset: the json groups
    objects, others and ignored regions), the boxes overshooting the image included."""
    from afmcli.data.synth import write_synth_split

    write_synth_split(tmp_path / "src", "val", 10, seed=3, workers=1)
    convert_split(tmp_path / "src", tmp_path / "D", "val")
    coco = json.loads((tmp_path / "D/labels/annotations/val_labels.json").read_text())
    rebuilt = coco_to_visdrone_rows(coco)
    assert len(rebuilt) == 10
    for txt in sorted((tmp_path / "src/annotations").glob("*.txt")):
        original = read_visdrone_file(txt)
        assert len(original) > 0
        key = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731
        assert key(rebuilt[txt.stem]) == key(original), txt.name
    clipped = sum("visdrone_bbox" in a for a in coco["annotations"])
    crowd = sum(a["iscrowd"] for a in coco["annotations"])
    regions = sum(len(i["ignore_regions"]) for i in coco["images"])
    assert clipped > 0 and crowd > 0 and regions > 0 and coco["others"]  # all paths exercised


def test_mmdet_coco_dataset_loads_our_json(synth_split):
    from mmdet.datasets import CocoDataset

    from afmcli.data.visdrone_format import CLASSES

    coco = json.loads(synth_split.ann_file.read_text())
    ds = CocoDataset(data_root=str(synth_split.root), ann_file=str(synth_split.ann_file),
                     metainfo=dict(classes=CLASSES), data_prefix=dict(img="images/train/"), pipeline=[])
    assert len(ds) == synth_split.num_images
    info = ds[0]
    assert info["img_path"] == str(synth_split.images / coco["images"][0]["file_name"])
    assert (info["width"], info["height"]) == (640, 480)
    anns = [a for a in coco["annotations"] if a["image_id"] == coco["images"][0]["id"]]
    inst = info["instances"]
    assert len(inst) == sum(a["bbox"][2] >= 1 and a["bbox"][3] >= 1 for a in anns)
    x, y, w, h = anns[0]["bbox"]
    assert inst[0]["bbox"] == [x, y, x + w, y + h]
    assert inst[0]["bbox_label"] == anns[0]["category_id"] - 1
    assert [i["ignore_flag"] for i in inst] == [a["iscrowd"] for a in anns]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real samples not found at {SAMPLES} (set AFM_SHARED)")
def test_first50_real_labels_cross_check(tmp_path):
    """SAHI's COCO json of the first 50 VisDrone train images (classes merged into human/vehicle,
    file names images/<name>): rebuild txt from it, blank images of the recorded sizes, convert,
    and compare sizes and boxes image by image."""
    real = json.loads((SAMPLES / "visdrone2019-det-train-first50image.json").read_text())
    labels, sizes = {}, {}
    for img in real["images"]:
        stem = Path(img["file_name"]).stem
        sizes[stem] = (img["width"], img["height"])
        rows = [a["bbox"] + [1, 1 if a["category_id"] == 0 else 4, 0, 0]
                for a in real["annotations"] if a["image_id"] == img["id"]]
        labels[stem] = "".join(",".join(str(int(v)) for v in r) + "\n" for r in rows)
    stats = convert_split(_split(tmp_path, labels, sizes), tmp_path / "D", "train")
    ours = json.loads((tmp_path / "D/labels/annotations/train_labels.json").read_text())
    assert stats.annotations == len(real["annotations"]) == 3326 and stats.dropped == 0
    by_name = {Path(i["file_name"]).stem: i for i in real["images"]}
    for img in ours["images"]:
        ref = by_name[Path(img["file_name"]).stem]
        assert (img["width"], img["height"]) == (ref["width"], ref["height"])
        mine = sorted(a["bbox"] for a in ours["annotations"] if a["image_id"] == img["id"])
        theirs = sorted(a["bbox"] for a in real["annotations"] if a["image_id"] == ref["id"])
        assert mine == theirs


# --- bad input: one line, exit 2, nothing written --------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("1,2,3,4,1,4,0,0\n\n1,2,3,4,1,4,0\n", r"a\.txt:3: expected 8 comma-separated fields, got 7"),
    ("1,2,3,4,1,4,0,0\n1,2,x,4,1,4,0,0\n", r"a\.txt:2: not a number"),
    ("1,2,-3,4,1,4,0,0\n", r"a\.txt:1: negative box size"),
    ("\n1,2,3,4,1,12,0,0\n", r"a\.txt:2: not ground truth"),
    ("1,2,3,4,0.5,4,0,0\n", r"a\.txt:1: not ground truth"),
])
def test_malformed_line_names_file_and_line(tmp_path, capsys, text, message):
    src = _split(tmp_path, {"a": text})
    code, out = _run(capsys, "convert-visdrone", str(src), str(tmp_path / "D"), "--split", "train")
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("afm: error: ")
    assert re.search(message, lines[0])
    assert not (tmp_path / "D").exists() or not any((tmp_path / "D").rglob("*.*"))


def test_missing_image_and_annotation_without_image(tmp_path, capsys):
    src = _split(tmp_path, {"a": "1,1,5,5,1,4,0,0\n", "b": "", "c": "2,2,5,5,1,4,0,0\n"})
    (src / "images/b.png").unlink()
    (src / "annotations/a.txt").unlink()
    code, out = _run(capsys, "convert-visdrone", str(src), str(tmp_path / "D"))
    assert code == 2
    assert "b.txt: annotation without an image" in out.err and "(and 1 more" in out.err
    assert not (tmp_path / "D").exists()
    main(["convert-visdrone", str(src), str(tmp_path / "D"), "--skip-bad"])
    out = capsys.readouterr()
    assert "skipped 2: " in out.err and "a.png: image without an annotation file" in out.err
    coco = json.loads((tmp_path / "D/labels/annotations/train_labels.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["c.png"]


def test_corrupt_image_and_skip_bad(tmp_path, capsys):
    src = _split(tmp_path, {"a": "1,1,5,5,1,4,0,0\n", "b": "1,1,5,5,1,4,0,0\n", "c": "1,1,x\n"})
    (src / "images/b.png").write_bytes(b"not an image at all")
    code, out = _run(capsys, "convert-visdrone", str(src), str(tmp_path / "D"))
    assert code == 2 and "b.png: not a readable image (corrupt or unsupported format)" in out.err
    assert not (tmp_path / "D/labels/annotations/train_labels.json").exists()
    stats = convert_split(src, tmp_path / "D", "train", skip_bad=True)
    assert stats.images == 1 and len(stats.skipped) == 2
    assert sorted(os.listdir(tmp_path / "D/images/train")) == [".afm-written", "a.png"]


def test_no_usable_image_is_an_error(tmp_path):
    src = _split(tmp_path, {"a": "x\n"})
    with pytest.raises(AfmError, match="no usable image"):
        convert_split(src, tmp_path / "D", "train", skip_bad=True)


def test_not_a_split_folder(tmp_path, capsys):
    code, out = _run(capsys, "convert-visdrone", str(tmp_path), str(tmp_path / "D"))
    assert code == 2 and "images: no such folder" in out.err
    code, out = _run(capsys, "convert-visdrone", str(tmp_path), str(tmp_path / "D"), "--split", "test")
    assert code == 2 and "--split must be one of" in out.err


# --- COCO results -> VisDrone result folder ------------------------------------------------------

def test_results_to_visdrone_sorted_stable_capped():
    images = [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}]
    results = [{"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "score": 0.5},
               {"image_id": 1, "category_id": 1, "bbox": [5, 6, 7, 8], "score": 0.9},
               {"image_id": 1, "category_id": 2, "bbox": [9, 9, 9, 9], "score": 0.5}]
    rows = coco_results_to_visdrone(results, images)
    assert rows["x"].tolist() == [[5, 6, 7, 8, 0.9, 1, -1, -1], [1, 2, 3, 4, 0.5, 4, -1, -1],
                                  [9, 9, 9, 9, 0.5, 2, -1, -1]]
    assert rows["y"].shape == (0, 8)
    many = [{"image_id": 2, "category_id": 1, "bbox": [k, 0, 1, 1], "score": k / 1000} for k in range(600)]
    capped = coco_results_to_visdrone(many, images)["y"]
    assert len(capped) == 500 and capped[0, 0] == 599 and capped[-1, 0] == 100


def test_results_with_unknown_image_is_an_error():
    with pytest.raises(AfmError, match=r"results\[0\]: image_id 7 is not in the ground-truth json"):
        coco_results_to_visdrone([{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}],
                                 [{"id": 1, "file_name": "a.jpg"}])


def test_to_visdrone_cli_writes_every_image(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [1.5, 2, 3, 4], "score": 0.25}]))
    code, _ = _run(capsys, "convert-visdrone", str(pred), str(tmp_path / "out"), "--to-visdrone", "--gt", str(gt))
    assert code == 0
    assert (tmp_path / "out/a.txt").read_text() == "1.5,2,3,4,0.25,3,-1,-1\n"
    assert (tmp_path / "out/b.txt").read_text() == ""
    code, out = _run(capsys, "convert-visdrone", str(pred), str(tmp_path / "o2"), "--to-visdrone")
    assert code == 2 and "--gt" in out.err


# --- sliced training sets ------------------------------------------------------------------------

def test_sliced_set(synth_split, tmp_path):
    stats = convert_split(synth_split.src, tmp_path / "D", "train", slice_size=320, overlap=0.25, min_visible=0.5)
    coco = json.loads((tmp_path / "D/labels/annotations/train_sliced_labels.json").read_text())
    per_image = len(slice_windows(480, 640, 320, 320, 0.25, 0.25))
    assert per_image == 6  # x: 0, 240, 320(flush); y: 0, 160(flush)
    assert stats.crops == len(coco["images"]) == 8 * per_image
    for img in coco["images"]:
        path = tmp_path / "D/images/train_sliced" / img["file_name"]
        assert imagesize.get(str(path)) == (img["width"], img["height"]) == (320, 320)
        x1, y1, x2, y2 = img["window"]
        assert img["file_name"].endswith(f"_{x1}_{y1}_{x2}_{y2}.jpg")
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320 and w > 0 and h > 0
        assert "visdrone_bbox" not in ann
    # an object fully inside a window is there unchanged, shifted
    full = json.loads(synth_split.ann_file.read_text())
    ann = next(a for a in full["annotations"] if a["image_id"] == 1 and a["bbox"][0] + a["bbox"][2] < 300
               and a["bbox"][1] + a["bbox"][3] < 150)
    crop = next(i for i in coco["images"] if i["parent_file_name"] == full["images"][0]["file_name"]
                and i["window"][:2] == [0, 0])
    assert any(a["bbox"] == ann["bbox"] and a["category_id"] == ann["category_id"]
               for a in coco["annotations"] if a["image_id"] == crop["id"])


def test_multi_scale_sliced_set_from_the_cli(synth_split, tmp_path, capsys):
    """`--slice 320 --slice 480`: the crops of both sizes in one sliced set; a tile that both
    sizes place on the same pixels is written once."""
    code, _ = _run(capsys, "convert-visdrone", str(synth_split.src), str(tmp_path / "D"),
                   "--slice", "320", "--slice", "480")
    assert code == 0
    coco = json.loads((tmp_path / "D/labels/annotations/train_sliced_labels.json").read_text())
    per_image = {(x2 - x1, y2 - y1) for x1, y1, x2, y2 in
                 [*slice_windows(480, 640, 320, 320, .25, .25), *slice_windows(480, 640, 480, 480, .25, .25)]}
    assert per_image == {(320, 320), (480, 480)}
    sizes = [(img["width"], img["height"]) for img in coco["images"]]
    assert sizes.count((320, 320)) == 8 * 6 and sizes.count((480, 480)) == 8 * 2  # x: 0, 160(flush)
    assert len({img["file_name"] for img in coco["images"]}) == len(coco["images"])
    assert multi_scale_windows(300, 400, [512, 640], 0.25).tolist() == [[0, 0, 400, 300]]


def test_results_malformed_entry_is_an_error():
    with pytest.raises(AfmError, match=r"results\[1\]: has no 'category_id'"):
        coco_results_to_visdrone([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1},
                                  {"image_id": 1, "bbox": [0, 0, 1], "score": 1}], [{"id": 1, "file_name": "a.jpg"}])
