"""`afm evaluate` on any category table: the COCO view by class name, AI-TOD's size ranges,
ignored objects, the one category-id rule checked by name, the VisDrone view's one line."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_bad_inputs import error, run

from afmcli.cli import main

from afmcli.data.coco import coco_categories
from afmcli.errors import AfmError, ParameterError
from afmcli.inference.sources import open_source
from afmcli.evaluation.categories import CategoryTable, check_prediction_table
from afmcli.evaluation.coco_view import evaluate_coco
from afmcli.data.datasets import split_json
from afmcli.evaluation.loaders import load_ground_truth
from afmcli.evaluation.visdrone import ImageRows

SHARED = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
AERIAL = SHARED / "data" / "aerial-samples" / "visdrone2019-det-train-first50image.json"
needs_aerial = pytest.mark.skipif(not AERIAL.is_file(), reason=f"{AERIAL} not found (set AFM_SHARED)")


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def perfect(coco: dict, category=lambda cid: cid) -> list[dict]:
    """Every annotation found exactly, score 1 (falling in file order: no ties)."""
    return [{"image_id": a["image_id"], "category_id": category(a["category_id"]), "bbox": a["bbox"],
             "score": 1.0 - i * 1e-6} for i, a in enumerate(coco["annotations"])]


def test_aitod_size_ranges_hand_worked():
    """One class, four objects of sqrt(area) 4, 12, 24 and 40 px (AI-TOD's very tiny, tiny,
    small, medium) and one of 1 px (under every range but 'all'). Found exactly: the 4-px and
    24-px ones (scores 0.9, 0.8). Per range (pycocotools: a detection matched to an object
    outside the range is ignored, an object outside it is not counted):
    verytiny 1 of 1 found -> AP 100; tiny 0 of 1 -> 0; small 1 of 1 -> 100; medium 0 of 1 -> 0.
    all: 2 of 5 at precision 1 -> recall 0.4 -> 41 of COCO's 101 recall points -> 41/101.
    COCO's ranges on the same: tiny (< 16^2) holds 1, 4 and 12 px: 1 of 3 found -> 34/101."""
    gt = np.array([[10, 10, 4, 4, 1, 1, 0, 0], [50, 10, 12, 12, 1, 1, 0, 0], [100, 10, 24, 24, 1, 1, 0, 0],
                   [10, 100, 40, 40, 1, 1, 0, 0], [150, 150, 1, 1, 1, 1, 0, 0]], float)
    det = np.array([[10, 10, 4, 4, 0.9, 1, -1, -1], [100, 10, 24, 24, 0.8, 1, -1, -1]], float)
    images = [ImageRows("a", 200, 200, gt, det)]
    stats, per_class = evaluate_coco(images, ("person",), ranges="aitod")
    assert [k for k in stats if k.startswith("AP_")] == ["AP_verytiny", "AP_tiny", "AP_small", "AP_medium"]
    assert stats["AP_verytiny"] == pytest.approx(100) and stats["AP_small"] == pytest.approx(100)
    assert stats["AP_tiny"] == 0 and stats["AP_medium"] == 0
    assert stats["AP"] == pytest.approx(100 * 41 / 101) and list(per_class) == ["person"]
    coco_stats, _ = evaluate_coco(images, ("person",), ranges="coco")
    assert coco_stats["AP_tiny"] == pytest.approx(100 * 34 / 101) and math.isnan(coco_stats["AP_large"])


def test_ignore_flag_and_crowd_are_ignored_regions(tmp_path, capsys):
    """An object flagged ``ignore`` and a crowd one: a detection on them is neither TP nor
    FP, and they are not missed: AP 100 with the one real object found."""
    coco = {"images": [{"id": 5, "file_name": "x.jpg", "width": 100, "height": 100}],
            "categories": [{"id": 7, "name": "boat"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [10, 10, 20, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 5, "category_id": 7, "bbox": [50, 50, 20, 20], "ignore": 1},
                            {"id": 3, "image_id": 5, "category_id": 7, "bbox": [10, 60, 20, 20], "iscrowd": 1}]}
    gt = write(tmp_path / "gt.json", coco)
    pred = write(tmp_path / "p.json", [{"image_id": 5, "category_id": 7, "bbox": b, "score": s}
                                       for b, s in (([50, 50, 20, 20], 0.99), ([10, 60, 20, 20], 0.98),
                                                    ([10, 10, 20, 20], 0.5))])
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--pred", pred, "--view", "coco", "--json", tmp_path / "m.json")
    assert code == 0, err
    out = json.loads((tmp_path / "m.json").read_text())
    assert out["coco"]["AP"] == pytest.approx(100) and out["coco"]["AR10"] == pytest.approx(100)
    assert list(out["classwise"]["coco"]) == ["boat"]


@needs_aerial
def test_the_shared_aerial_samples_score_100_by_class_name(tmp_path, capsys):
    """The real COCO json (0 human, 1 vehicle; 3,326 boxes on 48 of its 50 images): its own boxes
    as detections score 100 in the COCO view, the table names its classes, the VisDrone view
    says in one line why not."""
    coco = json.loads(AERIAL.read_text())
    pred = write(tmp_path / "p.json", perfect(coco))
    code, out, err = run(capsys, "evaluate", "--gt", AERIAL, "--pred", pred, "--classwise",
                         "--json", tmp_path / "m.json", "--size-ranges", "aitod")
    assert code == 0, err
    assert err.strip().splitlines()[-1] == ("afm: warning: the VisDrone view does not apply: the toolkit scores VisDrone's ten "
                           "classes by their ids, and the ground truth's table is another (0 human, 1 vehicle); "
                           "the COCO view only")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert list(metrics) == ["coco", "classwise"]
    assert metrics["coco"]["AP"] == pytest.approx(100) and metrics["coco"]["AP50"] == pytest.approx(100)
    assert metrics["coco"]["AP_verytiny"] == pytest.approx(100)
    assert list(metrics["classwise"]["coco"]) == ["human", "vehicle"]
    assert all(row["AP"] == pytest.approx(100) for row in metrics["classwise"]["coco"].values())
    assert "human" in out and "vehicle" in out and "pedestrian" not in out


@needs_aerial
def test_the_visdrone_view_of_another_table_is_one_error(tmp_path, capsys):
    pred = write(tmp_path / "p.json", perfect(json.loads(AERIAL.read_text())))
    msg = error(capsys, "evaluate", "--gt", AERIAL, "--pred", pred, "--view", "visdrone")
    assert msg.startswith("the VisDrone view does not apply: the toolkit scores VisDrone's ten classes") and \
        msg.endswith("; use --view coco")


@needs_aerial
def test_remapped_ids_are_refused_in_one_line(tmp_path, capsys):
    """afm infer on a folder numbers the model's classes 1..K and records it: against the json's
    0 human, 1 vehicle that would score vehicles as humans' misses. One line, never a score."""
    coco = json.loads(AERIAL.read_text())
    out = tmp_path / "run"
    out.mkdir()
    pred = write(out / "predictions.json", perfect(coco, lambda cid: cid + 1))
    write(out / "categories.json", {"categories": [{"id": 1, "name": "human"}, {"id": 2, "name": "vehicle"}]})
    msg = error(capsys, "evaluate", "--gt", AERIAL, "--pred", pred)
    assert msg == (f"{pred}: category ids differ from {AERIAL}'s table: 'human' is id 1 in the detections but 0 "
                   "in the ground truth (the detections' table: 1 human, 2 vehicle); run `afm infer` with that "
                   "json as the source, so that the ids follow its table")


@needs_aerial
def test_shifted_ids_without_a_record_are_named(tmp_path, capsys):
    """Detections from elsewhere (no categories.json), ids 1-based against a table from 0."""
    coco = json.loads(AERIAL.read_text())
    pred = write(tmp_path / "p.json", perfect(coco, lambda cid: cid + 1))
    code, _, err = run(capsys, "evaluate", "--gt", AERIAL, "--pred", pred, "--view", "coco")
    assert code == 0
    assert (f"afm: warning: {pred}: 2118 of 3326 detections have category ids that are not in the ground truth "
            "(2; its ids are 0..1); they are not scored. The ids look 1-based (1..2): the ground truth's start at "
            "0 (human = 0); subtract 1 from every category_id") in err


def test_a_five_class_folder_run_against_visdrone_json_is_refused():
    """The issue's case: 1..5 (pedestrian, car, van, truck, bus) against VisDrone's ids."""
    run_table = CategoryTable((1, 2, 3, 4, 5), ("pedestrian", "car", "van", "truck", "bus"))
    visdrone = CategoryTable(tuple(c["id"] for c in coco_categories()), tuple(c["name"] for c in coco_categories()))
    with pytest.raises(AfmError, match="'car' is id 2 in the detections but 4 in the ground truth"):
        check_prediction_table(run_table, visdrone, "p.json", "gt.json")
    check_prediction_table(CategoryTable((1, 4, 5, 6, 9), run_table.names), visdrone, "p.json", "gt.json")
    with pytest.raises(AfmError, match="id 2 is 'boat' in the detections but 'people' in the ground truth"):
        check_prediction_table(CategoryTable((1, 2), ("pedestrian", "boat")), visdrone, "p.json", "gt.json")


def _yolo_dataset(root: Path) -> Path:
    """A YOLO data.yaml (classes boat, car, person): val has two images, 3 boxes."""
    for split, boxes in (("train", {"t0": ["0 0.5 0.5 0.2 0.2"]}),
                         ("val", {"v0": ["2 0.25 0.25 0.1 0.2", "0 0.5 0.5 0.2 0.2"], "day/v1": ["1 0.7 0.6 0.3 0.1"]})):
        for name, lines in boxes.items():
            image = root / "images" / split / f"{name}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), np.zeros((100, 200, 3), np.uint8))
            label = root / "labels" / split / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [boat, car, person]\n")
    return root / "data.yaml"


def test_a_data_yaml_as_gt_is_its_split_in_afm_cache(tmp_path, capsys, monkeypatch):
    """--gt data.yaml --split val: the val split converted into afm's cache (categories 1..3 in
    the data's order, the ids of a run on its image folder), nothing written beside the data;
    perfect detections of the 3 boxes (hand-worked from the labels) score 100 per class by name."""
    from test_bad_inputs import snapshot

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = _yolo_dataset(tmp_path / "yolo")
    before = snapshot(data.parent)
    # v0: person (2) at x 0.2..0.3 of 200 px, y 0.15..0.35 of 100; boat (0) 80..120 x 40..60; v1: car (1).
    boxes = {"v0": [(3, [40, 15, 20, 20]), (1, [80, 40, 40, 20])], "day/v1": [(2, [110, 55, 60, 10])]}
    ann, images = split_json(data, "val")
    assert ann.is_relative_to(tmp_path / "cache" / "afmcli") and images == ann.parents[2] / "images" / "val"
    coco = json.loads(ann.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "boat"), (2, "car"), (3, "person")]
    ids = {Path(img["file_name"]).with_suffix("").as_posix(): img["id"] for img in coco["images"]}
    pred = write(tmp_path / "p.json", [{"image_id": ids[name], "category_id": cid, "bbox": box, "score": 0.9}
                                       for name, found in boxes.items() for cid, box in found])
    write(tmp_path / "categories.json", {"categories": [{"id": i, "name": n}
                                                        for i, n in enumerate(("boat", "car", "person"), 1)]})
    for gt in (data, data.parent):  # the yaml, or the folder holding it
        code, out, err = run(capsys, "evaluate", "--gt", gt, "--split", "val", "--pred", pred, "--classwise",
                             "--json", tmp_path / "m.json")
        assert code == 0, err
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert list(metrics["classwise"]["coco"]) == ["boat", "car", "person"]
        assert metrics["coco"]["AP"] == pytest.approx(100)
    assert snapshot(data.parent) == before
    assert error(capsys, "evaluate", "--gt", data, "--split", "test", "--pred", pred) == \
        f"{data}: no split 'test' (it has train, val); choose one with --split"
    # `afm infer DATA --split val` runs on that json: its image ids and file names are the scored ones
    source = open_source(data, split="val")
    assert [(i.image_id, i.file_name) for i in source.items] == [(img["id"], img["file_name"]) for img in coco["images"]]
    with pytest.raises(ParameterError, match="a dataset names its own image folders"):
        open_source(data, images_dir=tmp_path, split="val")


@needs_aerial
def test_a_coco_dataset_yaml_as_gt_is_the_split_as_afm_reads_it(tmp_path, monkeypatch):
    """The shared COCO json (0 human, 1 vehicle; 50 images, 2 of them in visdrone-real) as a
    COCO dataset's val split: the 2 images there, human 1 and vehicle 2 (the data's order)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"
    data = write(tmp_path / "data.yaml", {"format": "coco", "val": {"ann": str(AERIAL), "images": str(images)}})
    truth = load_ground_truth(data, split="val")
    assert truth.table.names == ("human", "vehicle") and truth.table.ids == (1, 2)
    assert len(truth.names) == 2 and truth.images.parent.parent.is_relative_to(tmp_path / "cache")
    assert truth.source.endswith(f"(the val split of {data})")


def test_error_analysis_pr_curves_and_report_for_any_class_list(tmp_path, capsys):
    """Two images, classes boat (id 7) and person (id 3): the analysis, the PR curves and the
    report name those classes, never VisDrone's."""
    images, annotations, results = [], [], []
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for image_id in (1, 2):
        images.append({"id": image_id, "file_name": f"im{image_id}.jpg", "width": 160, "height": 120})
        cv2.imwrite(str(tmp_path / "images" / f"im{image_id}.jpg"), np.full((120, 160, 3), 80, np.uint8))
        for k in range(6):
            x, y = rng.uniform(0, 120), rng.uniform(0, 90)
            cid = (7, 3)[k % 2]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cid,
                                "bbox": [x, y, 20, 16], "iscrowd": 0})
            if k < 4:  # found; one of them as the other class
                results.append({"image_id": image_id, "category_id": cid if k else 10 - cid,
                                "bbox": [x + 1, y, 20, 16], "score": 0.9 - k / 10})
    gt = write(tmp_path / "gt.json", {"images": images, "annotations": annotations,
                                      "categories": [{"id": 7, "name": "boat"}, {"id": 3, "name": "person"}]})
    pred = write(tmp_path / "p.json", results)
    code, out, err = run(capsys, "evaluate", "--gt", gt, "--pred", pred, "--images", tmp_path / "images",
                         "--plots", tmp_path / "pr", "--analyse", tmp_path / "an", "--report", tmp_path / "rep",
                         "--size-ranges", "aitod")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pr").glob("*.png")) == ["all_classes.png", "boat.png", "person.png"]
    analysis = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert analysis["confusion_matrix"]["labels"] == ["boat", "person", "background"]
    # rows objects, columns detections: one boat found as a person per image
    assert np.array(analysis["confusion_matrix"]["counts"])[0, 1] == 2
    assert list(analysis["error_decomposition"]["per_class"]) == ["boat", "person"]
    assert list(analysis["error_decomposition"]["overall"]) == ["all", "verytiny", "tiny", "small", "medium"]
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "boat" in html and "pedestrian" not in html and not (tmp_path / "rep" / "pr").exists()
    assert (tmp_path / "rep" / "analysis" / "coco_pr.png").is_file()


def _run_folder(path: Path, names: dict, results: list[dict]) -> Path:
    """An `afm infer`-like output folder: predictions.json and its categories.json."""
    path.mkdir()
    write(path / "categories.json", {"categories": [{"id": k, "name": v} for k, v in names.items()]})
    return write(path / "predictions.json", results)


def test_fuse_refuses_inputs_of_other_category_tables(tmp_path, capsys):
    result = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]
    a = _run_folder(tmp_path / "a", {1: "human", 2: "vehicle"}, result)
    b = _run_folder(tmp_path / "b", {1: "vehicle", 2: "human"}, result)
    msg = error(capsys, "fuse", a, b, "--out", tmp_path / "f.json")
    assert msg == (f"{b}: its categories (1 vehicle, 2 human) differ from {a}'s (1 human, 2 vehicle); "
                   "fuse detections of the same category table")
    gt = write(tmp_path / "gt.json", {"images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}],
                                      "annotations": [], "categories": [{"id": 1, "name": "human"}]})
    msg = error(capsys, "fuse", a, a, "--out", tmp_path / "f.json", "--visdrone-dir", tmp_path / "v", "--gt", gt)
    assert msg.startswith("--visdrone-dir writes VisDrone's category ids 1..10;")
    assert not (tmp_path / "f.json").exists()
    # The fused file's table is recorded beside it (where afm evaluate looks), never replaced.
    (tmp_path / "fused").mkdir()
    main(["fuse", str(a), str(a), "--out", str(tmp_path / "fused" / "f.json")])
    assert json.loads((tmp_path / "fused" / "categories.json").read_text()) == \
        json.loads((tmp_path / "a" / "categories.json").read_text())
    msg = error(capsys, "fuse", b, b, "--out", tmp_path / "fused" / "g.json")
    assert msg == (f"{tmp_path / 'fused' / 'categories.json'} records other categories (1 human, 2 vehicle) than "
                   "the inputs' (1 vehicle, 2 human); write --out in another folder")


def test_api_evaluate_checks_the_detections_names(tmp_path):
    """``{image_id: Detections}`` carry their names (afmcli.predict_source): checked by name."""
    import afmcli
    from afmcli.detections import Detections

    gt = write(tmp_path / "gt.json", {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 0, "name": "human"}, {"id": 1, "name": "vehicle"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0}]})
    found = Detections([[10, 10, 30, 30]], [0.9], [1], {0: "human", 1: "vehicle"})
    assert afmcli.evaluate(gt, {1: found}, view="coco")["coco"]["AP"] == pytest.approx(100)
    folder_ids = Detections([[10, 10, 30, 30]], [0.9], [2], {1: "human", 2: "vehicle"})
    with pytest.raises(AfmError, match="'human' is id 1 in the detections but 0 in the ground truth"):
        afmcli.evaluate(gt, {1: folder_ids}, view="coco")


VISDRONE_REAL = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"


@pytest.mark.skipif(not VISDRONE_REAL.is_dir(), reason=f"{VISDRONE_REAL} not found (set AFM_SHARED)")
def test_an_official_visdrone_split_folder_as_gt_gives_the_toolkits_rows(tmp_path, monkeypatch):
    """--gt VisDrone2019-DET-train --split train (a dataset) and --gt .../annotations --images
    .../images (the toolkit's txt): the same images, sizes and rows (ignored regions and
    'others' included: 18,298 over the 324 images), VisDrone's table, so both views apply."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dataset = load_ground_truth(VISDRONE_REAL, split="train")
    txt = load_ground_truth(VISDRONE_REAL / "annotations", VISDRONE_REAL / "images")
    assert dataset.table.visdrone and (dataset.names, dataset.heights, dataset.widths) == \
        (txt.names, txt.heights, txt.widths)
    assert all(sorted(map(tuple, a)) == sorted(map(tuple, b)) for a, b in zip(dataset.rows, txt.rows))
    assert sum(len(r) for r in dataset.rows) == 18298


def test_a_run_converting_a_dataset_into_the_cache_makes_the_next_one_wait(tmp_path, monkeypatch):
    """Two first uses of one dataset at once: the second waits on the cache's lock (it is
    neither refused nor converting beside the first), then goes on."""
    import subprocess
    import sys

    from afmcli.io import cache_folder, output_lock

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = _yolo_dataset(tmp_path / "yolo")
    ann, _ = split_json(data, "val")
    ann.unlink()  # as if the holder had not written it yet
    code = ("import sys; from afmcli.data.datasets import split_json; "
            f"print(split_json({str(data)!r}, 'val')[0])")
    with output_lock(ann.parents[2], "a test holding the cache"):
        waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=3)
        assert not ann.exists()  # it waits, it does not convert beside the holder
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert Path(out.strip()) == ann and ann.is_file() and ann.parents[2] == cache_folder("datasets", ann.parts[-4])
