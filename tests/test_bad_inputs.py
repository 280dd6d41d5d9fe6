"""A catalogue of bad inputs, one case per finding of the "Trust" issue, through the
`afm` command line: the exit code, the one-line message (file named), and that
nothing was written or removed. The subprocess cases check what a user sees on a
real terminal-less run (library noise, Ctrl-C)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from afmcli.cli import main
from afmcli.data.coco import coco_categories
from afmcli.io import MARKER

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    """Exit code (0 when main returns), stdout and stderr of `afm argv`."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def error(capsys, *argv) -> str:
    """Run, expect exit 2 and exactly one `afm: error:` line; return the message."""
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("afm: error: "), err
    return lines[0][len("afm: error: "):]


def snapshot(root: Path) -> dict:
    """Every path under root with its content (to show nothing changed)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def gt_json(path: Path, images: list[dict], annotations: list[dict] = (), categories=None) -> Path:
    path.write_text(json.dumps({"images": images, "annotations": list(annotations),
                                "categories": coco_categories() if categories is None else categories}))
    return path


def results_json(path: Path, results: list[dict]) -> Path:
    path.write_text(json.dumps(results))
    return path


def det(image_id, bbox, score=0.9, cat=4) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": list(bbox), "score": score}


def split(tmp_path: Path, stems=("a", "b"), suffix=".jpg", size=(64, 48)) -> Path:
    """An official-layout split: textured images and one car each."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in stems:
        cv2.imwrite(str(src / "images" / f"{stem}{suffix}"), rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
        (src / "annotations" / f"{stem}.txt").write_text("2,3,10,12,1,4,0,0\n")
    return src


IMAGES = [{"id": 1, "file_name": "seq0/frame001.jpg", "width": 100, "height": 80},
          {"id": 2, "file_name": "seq4/frame001.jpg", "width": 100, "height": 80}]
CARS = [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 4, "bbox": [50, 40, 20, 20], "area": 400, "iscrowd": 0}]


def evaluate_json(capsys, tmp_path, gt: Path, pred: Path, *extra) -> tuple[dict, str]:
    out = tmp_path / "m.json"
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--pred", pred, "--view", "visdrone", "--json", out, *extra)
    assert code == 0, err
    return json.loads(out.read_text())["visdrone"], err


# --- never delete what afm did not write -----------------------------------------------------------

def test_to_visdrone_refuses_a_user_folder_holding_the_input(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    pred = results_json(out / "pred.json", [det(1, [1, 2, 3, 4])])
    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])
    before = snapshot(tmp_path)
    msg = error(capsys, "convert-visdrone", pred, out, "--to-visdrone", "--gt", gt)
    assert msg == (f"{out} (OUT): holds pred.json, which afm did not write; afm replaces only its own output "
                   "folders: choose another folder, or move those files away")
    assert snapshot(tmp_path) == before


def test_to_visdrone_replaces_its_own_folder(tmp_path, capsys):
    pred = results_json(tmp_path / "pred.json", [det(1, [1, 2, 3, 4])])
    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])
    for _ in range(2):
        assert run(capsys, "convert-visdrone", pred, tmp_path / "out", "--to-visdrone", "--gt", gt)[0] == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.txt")) == [
        "seq0/frame001.txt"]
    assert (tmp_path / "out" / MARKER).is_file()


def test_fuse_refuses_a_user_visdrone_dir_and_writes_no_json(tmp_path, capsys):
    vd = tmp_path / "vd"
    vd.mkdir()
    (vd / "keep.txt").write_text("mine")
    a = results_json(tmp_path / "a.json", [det(1, [1, 2, 3, 4])])
    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])
    before = snapshot(tmp_path)
    msg = error(capsys, "fuse", a, "--out", tmp_path / "f.json", "--gt", gt, "--visdrone-dir", vd)
    assert msg.startswith(f"{vd} (--visdrone-dir): holds keep.txt, which afm did not write")
    assert snapshot(tmp_path) == before


def test_fuse_writes_neither_output_when_the_visdrone_dir_fails(tmp_path, capsys, monkeypatch):
    import afmcli.data.coco as coco

    a = results_json(tmp_path / "a.json", [det(1, [1, 2, 3, 4])])
    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])

    def fail(rows, out_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(coco, "write_visdrone_folder", fail)
    code, _, err = run(capsys, "fuse", a, "--out", tmp_path / "f.json", "--gt", gt, "--visdrone-dir", tmp_path / "vd")
    assert code == 2 and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "gt.json"]


def test_evaluate_refuses_a_user_plots_folder_before_any_work(tmp_path, capsys):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "figure.svg").write_text("mine")
    before = snapshot(tmp_path)
    # --gt does not even exist: the output check comes first
    msg = error(capsys, "evaluate", "--gt", tmp_path / "nope.json", "--pred", tmp_path / "p.json", "--plots", plots)
    assert msg.startswith(f"{plots} (--plots): holds figure.svg, which afm did not write")
    assert snapshot(tmp_path) == before


def test_convert_refuses_to_replace_a_user_images_folder(tmp_path, capsys):
    src = split(tmp_path)
    root = tmp_path / "Datasets"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "holiday.jpg").write_bytes(b"mine")
    before = snapshot(tmp_path)
    msg = error(capsys, "convert-visdrone", src, root)
    assert msg.startswith(f"{root / 'images/train'} (images/<split>): holds holiday.jpg, which afm did not write")
    assert snapshot(tmp_path) == before


# --- images are identified by relative path, never by stem -----------------------------------------

def test_two_sequences_with_one_frame_name_are_two_images(tmp_path, capsys):
    gt = gt_json(tmp_path / "gt.json", IMAGES, CARS)
    pred = results_json(tmp_path / "p.json", [det(1, [10, 10, 20, 20])])  # finds seq0's car only
    stats, _ = evaluate_json(capsys, tmp_path, gt, pred)
    assert stats["AP50"] == pytest.approx(50.0)  # 1 of 2 cars at precision 1 (stem matching: 1 image)
    folder = tmp_path / "txt"
    for sub, text in (("seq0", "10,10,20,20,0.9,4,-1,-1\n"), ("seq4", "")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "frame001.txt").write_text(text)
    assert evaluate_json(capsys, tmp_path, gt, folder)[0] == stats


def test_ground_truth_with_a_jpg_and_a_png_of_one_name_is_refused(tmp_path, capsys):
    images = [dict(IMAGES[0], file_name="a.jpg"), dict(IMAGES[1], file_name="a.png")]
    gt = gt_json(tmp_path / "gt.json", images, CARS)
    pred = results_json(tmp_path / "p.json", [det(1, [10, 10, 20, 20])])
    assert error(capsys, "evaluate", "--gt", gt, "--pred", pred) == (
        f"{gt}: a.jpg and a.png are two images with one name (a); rename one (per-image outputs are named "
        "a.txt / a.png)")


def test_infer_json_with_a_duplicated_image_id_is_refused(tmp_path):
    from afmcli.errors import AfmError
    from afmcli.inference.sources import open_source

    src = gt_json(tmp_path / "val_labels.json", [dict(IMAGES[0], file_name="a.jpg"),
                                                 dict(IMAGES[0], file_name="b.jpg")])
    with pytest.raises(AfmError) as info:
        open_source(src, tmp_path)
    assert str(info.value) == f"{src}: images[0] (a.jpg) and images[1] (b.jpg) have the same id 1"


def test_convert_refuses_a_jpg_and_a_png_for_one_label_file(tmp_path, capsys):
    src = split(tmp_path)
    cv2.imwrite(str(src / "images" / "a.png"), np.zeros((48, 64), np.uint8))
    msg = error(capsys, "convert-visdrone", src, tmp_path / "D")
    assert msg == (f"{src / 'images'}: a.jpg and a.png are two images with one name (a); rename one "
                   "(per-image outputs are named a.txt / a.png)")
    assert not (tmp_path / "D").exists()


def test_make_masks_two_images_with_one_name_in_two_sub_folders(tmp_path, capsys):
    """Masks are named by the image's relative path (issue 36), so both images get theirs."""
    from afmcli.cli import main

    ann = tmp_path / "D" / "labels" / "annotations" / "train_labels.json"
    ann.parent.mkdir(parents=True)
    gt_json(ann, IMAGES, CARS)
    main(["make-masks", str(tmp_path / "D"), "--workers", "1"])
    for size in ("s", "l"):
        assert sorted(p.relative_to(tmp_path / "D" / "labels" / f"gt_mask_{size}" / "train").as_posix()
                      for p in (tmp_path / "D" / "labels" / f"gt_mask_{size}" / "train").rglob("*.png")) == \
            ["seq0/frame001.png", "seq4/frame001.png"]


# --- category meaning ------------------------------------------------------------------------------

def test_a_json_with_its_own_category_table_is_scored_by_its_names(tmp_path, capsys):
    """Once refused; now the COCO view by the json's own table, the VisDrone view's absence said
    in one line (tests/test_eval_any_table.py: the shared aerial samples, ids checked by name)."""
    gt = gt_json(tmp_path / "gt.json", IMAGES, CARS, categories=[{"id": 0, "name": "human"},
                                                                  {"id": 4, "name": "vehicle"}])
    pred = results_json(tmp_path / "p.json", [det(1, [10, 10, 20, 20])])
    code, out, err = run(capsys, "evaluate", "--gt", gt, "--pred", pred, "--classwise")
    assert code == 0 and "vehicle" in out and "pedestrian" not in out
    assert err.strip().splitlines()[-1] == (
        "afm: warning: the VisDrone view does not apply: the toolkit scores VisDrone's ten classes by their "
        "ids, and the ground truth's table is another (0 human, 4 vehicle); the COCO view only")


@pytest.mark.parametrize("shift, expected", [
    (-1, "1 of 20 detections have category ids that are not in the ground truth (0; VisDrone's are 1..10); "
         "they are not scored. The ids look 0-based (0..9): VisDrone's start at 1 (pedestrian = 1); add 1 to "
         "every category_id"),
    (None, "2 of 20 detections have category ids that are not in the ground truth (-1, 12; VisDrone's are "
           "1..10); they are not scored"),
])
def test_odd_prediction_category_ids_are_named(tmp_path, capsys, shift, expected):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in range(1, 11)]
    anns = [{"id": i, "image_id": i, "category_id": i, "bbox": [5, 5, 10, 10], "iscrowd": 0} for i in range(1, 11)]
    gt = gt_json(tmp_path / "gt.json", images, anns)
    if shift is None:
        res = [det(i, [5, 5, 10, 10], 0.9, i) for i in range(1, 11)] + \
              [det(i, [50, 50, 10, 10], 0.5, c) for i, c in ((1, -1), (2, 12))]
    else:
        res = [det(i, [5, 5, 10, 10], 0.9, i + shift) for i in range(1, 11)]
    res += [det(i, [60, 40, 10, 10], 0.1, 3) for i in range(1, 11 - len(res) + 10)]
    _, err = evaluate_json(capsys, tmp_path, gt, results_json(tmp_path / "p.json", res))
    assert expected in " ".join(err.split())


def test_xyxy_boxes_are_named(tmp_path, capsys):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in range(1, 13)]
    anns = [{"id": i, "image_id": i, "category_id": 4, "bbox": [60, 50, 20, 20], "iscrowd": 0} for i in range(1, 13)]
    gt = gt_json(tmp_path / "gt.json", images, anns)
    xyxy = [det(i, [60, 50, 80, 70]) for i in range(1, 13)]
    _, err = evaluate_json(capsys, tmp_path, gt, results_json(tmp_path / "p.json", xyxy))
    assert "the boxes look like [x1, y1, x2, y2] (12 of 12 reach past the image edge" in " ".join(err.split())
    xywh = [det(i, [60, 50, 20, 20]) for i in range(1, 13)]
    _, err = evaluate_json(capsys, tmp_path, gt, results_json(tmp_path / "p.json", xywh))
    assert "look like" not in err


# --- corrupt images --------------------------------------------------------------------------------

def test_convert_refuses_a_jpeg_cut_to_a_third(tmp_path, capsys):
    src = split(tmp_path, size=(320, 240))
    path = src / "images" / "b.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    msg = error(capsys, "convert-visdrone", src, tmp_path / "D")
    assert msg == f"{path}: truncated JPEG (no end marker after the image data); the file is damaged"
    assert not (tmp_path / "D").exists()
    code, _, err = run(capsys, "convert-visdrone", src, tmp_path / "D", "--skip-bad")
    assert code == 0 and "truncated JPEG" in err
    assert sorted(p.name for p in (tmp_path / "D/images/train").iterdir()) == [MARKER, "a.jpg"]


def test_tif_and_webp_are_images_for_convert_too(tmp_path, capsys):
    src = split(tmp_path, stems=("a",), suffix=".tif")
    split(tmp_path, stems=("b",), suffix=".webp")
    assert run(capsys, "convert-visdrone", src, tmp_path / "D")[0] == 0
    coco = json.loads((tmp_path / "D/labels/annotations/train_labels.json").read_text())
    assert [img["file_name"] for img in coco["images"]] == ["a.tif", "b.webp"]


# --- bad values: one validator everywhere ----------------------------------------------------------

BAD_RESULTS = [
    (det(1, [1, 2, float("nan"), 4]), "results[1]: bbox must be 4 finite numbers, got [1, 2, nan, 4]"),
    (det(1, [1, 2, -3, 4]), "results[1]: bbox has a negative width or height: [1, 2, -3, 4]"),
    (det(1, [1, 2, 3, 4], float("inf")), "results[1]: score must be a finite number, got inf"),
    (dict(det(1, [1, 2, 3, 4]), image_id="1"), "results[1]: image_id must be an integer, got '1'"),
]


@pytest.mark.parametrize("bad, message", BAD_RESULTS)
@pytest.mark.parametrize("command", ["evaluate", "fuse", "to-visdrone"])
def test_bad_result_values_are_refused_by_every_subcommand(tmp_path, capsys, command, bad, message):
    gt = gt_json(tmp_path / "gt.json", IMAGES, CARS)
    pred = results_json(tmp_path / "p.json", [det(1, [10, 10, 20, 20]), bad])
    argv = {"evaluate": ["evaluate", "--gt", gt, "--pred", pred],
            "fuse": ["fuse", pred, "--out", tmp_path / "f.json"],
            "to-visdrone": ["convert-visdrone", pred, tmp_path / "out", "--to-visdrone", "--gt", gt]}[command]
    before = snapshot(tmp_path)
    assert error(capsys, *argv) == f"{pred}: {message}"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["evaluate", "fuse", "to-visdrone", "make-masks"])
def test_duplicate_image_ids_in_ground_truth_are_refused_by_every_subcommand(tmp_path, capsys, command):
    gt = tmp_path / "D" / "labels" / "annotations" / "train_labels.json"
    gt.parent.mkdir(parents=True)
    gt_json(gt, [IMAGES[0], dict(IMAGES[1], id=1)], CARS[:1])
    pred = results_json(tmp_path / "p.json", [det(1, [10, 10, 20, 20])])
    argv = {"evaluate": ["evaluate", "--gt", gt, "--pred", pred],
            "fuse": ["fuse", pred, "--out", tmp_path / "f.json", "--gt", gt],
            "to-visdrone": ["convert-visdrone", pred, tmp_path / "out", "--to-visdrone", "--gt", gt],
            "make-masks": ["make-masks", tmp_path / "D"]}[command]
    before = snapshot(tmp_path)
    assert error(capsys, *argv) == (f"{gt}: images[0] (seq0/frame001.jpg) and images[1] (seq4/frame001.jpg) "
                                    "have the same id 1")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("images"), "not a COCO json (needs an 'images' list)"),
    (lambda c: c["annotations"][0].update(image_id=999),
     "annotations[0] (id 1): image_id 999 is not an id in 'images'"),
    (lambda c: c["images"][0].update(width=0),
     "images[0] (seq0/frame001.jpg): width must be a positive integer, got 0"),
])
def test_make_masks_on_malformed_json_names_the_problem_and_leaves_no_folders(tmp_path, capsys, edit, message):
    ann = tmp_path / "D" / "labels" / "annotations" / "train_labels.json"
    ann.parent.mkdir(parents=True)
    coco = {"images": [dict(IMAGES[0])], "annotations": [dict(CARS[0])], "categories": coco_categories()}
    edit(coco)
    ann.write_text(json.dumps(coco))
    before = snapshot(tmp_path)
    assert error(capsys, "make-masks", tmp_path / "D") == f"{ann}: {message}"
    assert snapshot(tmp_path) == before


# --- the cap, and missing results ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_per_img_below_one_is_refused(tmp_path, capsys, value):
    pred = results_json(tmp_path / "p.json", [det(1, [1, 2, 3, 4])])
    assert error(capsys, "fuse", pred, "--out", tmp_path / "f.json", "--max-per-img", value) == \
        f"--max-per-img must be at least 1, got {value}"
    # infer checks it before loading anything (the config does not even exist)
    assert error(capsys, "infer", tmp_path / "no.py", tmp_path / "no.pth", pred, "--out", tmp_path / "o",
                 "--max-per-img", value) == f"--max-per-img must be at least 1, got {value}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_fuse_says_when_the_cap_cut_detections(tmp_path, capsys):
    pred = results_json(tmp_path / "p.json", [det(1, [k * 10, 0, 5, 5], 0.5 + k / 10) for k in range(3)]
                        + [det(2, [0, 0, 5, 5])])
    code, _, err = run(capsys, "fuse", pred, "--out", tmp_path / "f.json", "--max-per-img", "2")
    assert code == 0
    assert "afm: warning: --max-per-img 2 cut the fused detections of 1 of 2 images" in err
    fused = json.loads((tmp_path / "f.json").read_text())
    assert [d["score"] for d in fused if d["image_id"] == 1] == [0.7, 0.6]


def test_fuse_never_replaces_a_result_with_an_empty_one(tmp_path, capsys):
    good = results_json(tmp_path / "f.json", [det(1, [1, 2, 3, 4])])
    empty = results_json(tmp_path / "e.json", [])
    before = snapshot(tmp_path)
    assert error(capsys, "fuse", empty, "--out", good) == f"no detections in {empty}: nothing to fuse; {good} is " \
                                                          "left as it was"
    assert snapshot(tmp_path) == before


def test_results_covering_one_of_five_images_are_flagged(tmp_path, capsys):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in range(1, 6)]
    anns = [{"id": i, "image_id": i, "category_id": 4, "bbox": [5, 5, 10, 10], "iscrowd": 0} for i in range(1, 6)]
    gt = gt_json(tmp_path / "gt.json", images, anns)
    pred = results_json(tmp_path / "p.json", [det(1, [5, 5, 10, 10])])
    stats, err = evaluate_json(capsys, tmp_path, gt, pred)
    assert f"afm: warning: 4 of 5 images have no detections in {pred}: 2.jpg, 3.jpg, 4.jpg, 5.jpg" in \
        " ".join(err.split())
    assert stats["AR500"] == pytest.approx(20.0)
    assert error(capsys, "evaluate", "--gt", gt, "--pred", results_json(tmp_path / "e.json", [])) == \
        f"{tmp_path / 'e.json'}: no detections for any of the 5 images"


def test_pred_pointing_at_the_infer_folder_instead_of_its_visdrone_folder(tmp_path, capsys):
    gt = gt_json(tmp_path / "gt.json", IMAGES, CARS)
    run_dir = tmp_path / "results" / "val"
    (run_dir / "visdrone" / "seq0").mkdir(parents=True)
    (run_dir / "predictions.json").write_text("[]")
    assert error(capsys, "evaluate", "--gt", gt, "--pred", run_dir) == (
        f"{run_dir}: no result file for any of the 2 images (expected seq0/frame001.txt, ...); the VisDrone "
        f"files of `afm infer` are in {run_dir / 'visdrone'}")


# --- options and output paths are checked before any work ------------------------------------------

def test_overlap_out_of_range_is_named_before_reading_labels(tmp_path, capsys):
    assert error(capsys, "convert-visdrone", tmp_path / "missing", tmp_path / "D", "--slice", "64",
                 "--overlap", "1.0") == "--overlap must be a ratio in [0, 1), got 1.0"
    assert error(capsys, "infer", tmp_path / "no.py", tmp_path / "no.pth", tmp_path, "--out", tmp_path / "o",
                 "--overlap", "1.0") == "--overlap must be a ratio in [0, 1), got 1.0"
    assert list(tmp_path.iterdir()) == []


def test_many_tiles_are_announced(tmp_path, capsys):
    code, _, err = run(capsys, "infer", tmp_path / "no.py", tmp_path / "no.pth", tmp_path, "--out", tmp_path / "o",
                       "--overlap", "0.99")
    assert code == 2
    # step 640 - int(0.99 * 640) = 7 px: 196 columns (the last flush with the edge) x 124 rows
    assert "afm: warning: --slice 640 --overlap 0.99 makes 24,304 tiles for a 2000x1500 image; the usual overlap " \
           "is 0.2 to 0.25" in " ".join(err.split())
    src = split(tmp_path, stems=("a",), size=(96, 80))
    code, _, err = run(capsys, "convert-visdrone", src, tmp_path / "D", "--slice", "16", "--overlap", "0.9")
    # step 16 - int(0.9 * 16) = 2 px: 41 columns x 33 rows
    assert code == 0 and "makes 1,353 tiles for a 96x80 image" in " ".join(err.split())


def test_output_paths_that_are_files(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    pred = results_json(tmp_path / "p.json", [det(1, [1, 2, 3, 4])])
    gt = gt_json(tmp_path / "gt.json", IMAGES[:1])
    assert error(capsys, "convert-visdrone", pred, tmp_path / "file", "--to-visdrone", "--gt", gt) == \
        f"{tmp_path / 'file'}: exists and is a file; OUT must be a folder"
    assert error(capsys, "fuse", pred, "--out", tmp_path / "file" / "f.json") == \
        f"{tmp_path / 'file' / 'f.json'}: cannot write a file there: {tmp_path / 'file'} is a file, not a folder"
    assert error(capsys, "evaluate", "--gt", gt, "--pred", pred, "--json", tmp_path) == \
        f"{tmp_path}: is a folder; --json must be a file name"
    src = split(tmp_path)
    assert "is a file, not a folder" in error(capsys, "convert-visdrone", src, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_train_with_a_bad_data_root_leaves_no_work_dir(tmp_path, capsys):
    config = REPO / "configs" / "AFM" / "tood_tiny_synth.py"
    msg = error(capsys, "train", config, "--data-root", tmp_path / "nowhere", "--work-dir", tmp_path / "wd")
    assert msg.startswith(f"train_dataloader: annotation file {tmp_path / 'nowhere'}/")
    assert msg.endswith("not found (data_root " + str(tmp_path / "nowhere") + "/; set it with --data-root)")
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("content, detail", [(b"", "empty file"),
                                             (bytes(range(256)) * 40, "damaged or not a torch file")])
def test_a_corrupt_checkpoint_is_not_a_checkpoint(tmp_path, content, detail):
    from afmcli.engine.checkpoint import load_checkpoint_file
    from afmcli.errors import AfmError

    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(AfmError) as info:
        load_checkpoint_file(path)
    assert str(info.value).startswith(f"{path}: not a checkpoint ({detail}")
    assert "trust=True" not in str(info.value)  # damaged, not untrusted


def test_a_random_zip_is_not_a_checkpoint(tmp_path):
    import zipfile

    from afmcli.engine.checkpoint import load_checkpoint_file
    from afmcli.errors import AfmError

    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("readme.txt", "hello")
    with pytest.raises(AfmError, match=r"model.pth: not a checkpoint \(damaged or not a torch file") as info:
        load_checkpoint_file(path)
    assert "trust=True" not in str(info.value)  # damaged, not untrusted


# --- the command line ------------------------------------------------------------------------------

def test_usage_errors_are_one_afm_line(capsys):
    assert error(capsys, "fuse", "a.json", "--bogus").startswith("No such option: --bogus")
    assert error(capsys, "synth", "out", "--images", "many").startswith("Invalid value for '--images'")
    assert error(capsys, "evaluate", "--pred", "p") == "Missing option '--gt' (see `afm evaluate --help`)"


def test_debug_works_anywhere(tmp_path):
    for argv in (["--debug", "train", str(tmp_path / "x.py")], ["train", str(tmp_path / "x.py"), "--debug"]):
        proc = subprocess.run([sys.executable, "-m", "afmcli", *argv], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
        assert "config not found" in proc.stderr


def test_version(capsys):
    import afmcli

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"afm {afmcli.__version__}\n"


def test_shell_completion_script(capsys):
    code, out, err = run(capsys, "--show-completion", "bash")
    assert code == 0 and "_AFM_COMPLETE" in out, err


SUBCOMMANDS = ["convert", "convert-visdrone", "make-masks", "synth", "train", "infer", "export", "fuse", "evaluate", "demo",
               "env"]


def test_cli_starts_with_a_typer_that_has_no_flag_type_hook(monkeypatch):
    """An older typer (the GPU machines' image) has no display_type_rich: afm must still start."""
    import typer.core

    from afmcli import cli

    class OlderTyperOption:  # what typer.core.TyperOption offers there: no such hook
        pass

    monkeypatch.setattr(typer.core, "TyperOption", OlderTyperOption)
    cli._flags_show_no_type()
    assert not hasattr(OlderTyperOption, "display_type_rich")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_documents_every_option_and_ends_with_examples(name, capsys):
    import typer.main

    from afmcli.cli import app

    command = typer.main.get_command(app).commands[name]
    for param in command.params:
        assert (param.help or "").strip(), f"{name} {param.name}: no help text"
    code, out, _ = run(capsys, name, "--help")
    text = [line.strip(" │") for line in out.splitlines() if line.strip(" │")]
    assert code == 0 and "<bool>" not in out  # flags show as flags
    # The help ends with the examples, after the options.
    assert text.index("Examples:") > max(i for i, line in enumerate(text) if line.startswith("╰"))
    examples = text[text.index("Examples:") + 1:]
    assert 1 <= sum(line.startswith(f"afm {name}") for line in examples) <= 2


def test_no_library_noise_on_a_corrupt_image(tmp_path):
    src = split(tmp_path, stems=("a", "b"), suffix=".png")
    (src / "images" / "b.png").write_bytes((src / "images" / "b.png").read_bytes()[:100])
    src2 = split(tmp_path / "t", stems=("a",), suffix=".tif")
    (src2 / "images" / "a.tif").write_bytes(b"II*\x00" + b"\x00" * 50)
    for folder in (src, src2):
        proc = subprocess.run([sys.executable, "-m", "afmcli", "convert-visdrone", str(folder), str(tmp_path / "D")],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("afm: error: "), proc.stderr


def test_ctrl_c_prints_interrupted_and_leaves_no_temporaries(tmp_path):
    out = tmp_path / "synth"
    # Ctrl-C's default action in the child whatever this process inherited (a worker of the
    # test runner may have SIGINT ignored, and an ignored SIGINT stays ignored across exec).
    proc = subprocess.Popen([sys.executable, "-m", "afmcli", "synth", str(out), "--images", "400", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120

    def images_written() -> int:
        return sum(1 for tmp in tmp_path.glob(".synth.*") for _ in tmp.rglob("*.jpg"))

    while images_written() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "synth ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "afm: interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
