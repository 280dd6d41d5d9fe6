"""The one COCO json validator: every structural fault is one line naming the file
and the record (afmcli/data/coco_check.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from afmcli.data.coco_check import check_coco_gt, check_coco_results, load_coco_results
from afmcli.errors import AfmError

GT = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
                 {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "iscrowd": 0}],
      "categories": [{"id": 4, "name": "car"}]}
RES = [{"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "score": 0.5},
       {"image_id": 2, "category_id": 1, "bbox": [5.5, 6, 0, 8], "score": 1}]


def _gt(edit) -> dict:
    coco = copy.deepcopy(GT)
    edit(coco)
    return coco


def test_good_gt_and_results_pass():
    assert check_coco_gt(GT, "gt.json") is GT
    r = check_coco_results(RES, "r.json")
    assert r.image_ids.tolist() == [1, 2] and r.category_ids.tolist() == [4, 1]
    assert r.boxes.tolist() == [[1, 2, 3, 4], [5.5, 6, 0, 8]] and r.scores.tolist() == [0.5, 1.0]
    assert len(check_coco_results([], "r.json")) == 0


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("images"), "gt.json: not a COCO json (needs an 'images' list)"),
    (lambda c: c.pop("annotations"), "gt.json: not a COCO ground-truth json (no 'annotations')"),
    (lambda c: c["images"][1].pop("id"), "gt.json: images[1] has no 'id'"),
    (lambda c: c["images"][1].update(id="2"), "gt.json: images[1]: id must be an integer, got '2'"),
    (lambda c: c["images"][1].update(id=True), "gt.json: images[1]: id must be an integer, got True"),
    (lambda c: c["images"][1].update(id=1), "gt.json: images[0] (a.jpg) and images[1] (b.jpg) have the same id 1"),
    (lambda c: c["images"][1].update(file_name="a.png"),
     "gt.json: a.jpg and a.png are two images with one name (a); rename one (per-image outputs are named "
     "a.txt / a.png)"),
    (lambda c: c["images"][1].update(file_name="../b.jpg"),
     "gt.json: images[1]: file_name '../b.jpg' must be relative to the images folder, without '..'"),
    (lambda c: c["images"][0].pop("file_name"), "gt.json: images[0] needs a file_name, got {'id': 1, 'width': 100, "
     "'height': 50}"),
    (lambda c: c["images"][0].update(width=0), "gt.json: images[0] (a.jpg): width must be a positive integer, got 0"),
    (lambda c: c["images"][0].update(height=float("nan")),
     "gt.json: images[0] (a.jpg): height must be a positive integer, got nan"),
    (lambda c: c["annotations"][0].update(image_id=999),
     "gt.json: annotations[0] (id 1): image_id 999 is not an id in 'images'"),
    (lambda c: c["annotations"][0].pop("bbox"), "gt.json: annotations[0] (id 1) has no 'bbox'"),
    (lambda c: c["annotations"][0].update(bbox=[1, 2, float("nan"), 4]),
     "gt.json: annotations[0] (id 1): bbox must be 4 finite numbers, got [1, 2, nan, 4]"),
    (lambda c: c["annotations"][0].update(bbox=[1, 2, -3, 4]),
     "gt.json: annotations[0] (id 1): bbox has a negative width or height: [1, 2, -3, 4]"),
    (lambda c: c["annotations"][0].update(category_id=7),
     "gt.json: annotations[0] (id 1): category_id 7 is not in 'categories'"),
    (lambda c: c["annotations"][0].update(iscrowd=2), "gt.json: annotations[0] (id 1): iscrowd must be 0 or 1, got 2"),
    (lambda c: c["annotations"].append(dict(c["annotations"][0])),
     "gt.json: annotations[0] and annotations[1] have the same id 1"),
    (lambda c: c["categories"].append({"id": 4, "name": "van"}),
     "gt.json: categories[0] (car) and categories[1] (van) have the same id 4"),
])
def test_bad_gt_is_one_line_naming_the_record(edit, message):
    with pytest.raises(AfmError) as info:
        check_coco_gt(_gt(edit), "gt.json")
    assert str(info.value) == message


@pytest.mark.parametrize("entry, message", [
    ({"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4]}, "has no 'score'"),
    ({"image_id": "1", "category_id": 4, "bbox": [1, 2, 3, 4], "score": 1}, "image_id must be an integer, got '1'"),
    ({"image_id": 1, "category_id": 4.0, "bbox": [1, 2, 3, 4], "score": 1}, "category_id must be an integer, got 4.0"),
    ({"image_id": 1, "category_id": 4, "bbox": [1, 2, 3], "score": 1},
     "bbox must be [x, y, width, height], got [1, 2, 3]"),
    ({"image_id": 1, "category_id": 4, "bbox": [float("nan"), 2, 3, 4], "score": 1},
     "bbox must be 4 finite numbers, got [nan, 2, 3, 4]"),
    ({"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, -4], "score": 1},
     "bbox has a negative width or height: [1, 2, 3, -4]"),
    ({"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "score": float("inf")},
     "score must be a finite number, got inf"),
    ({"image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4], "score": "0.5"},
     "score must be a finite number, got '0.5'"),
    ([1, 2, 3], "expected an object {image_id, category_id, bbox, score}, got [1, 2, 3]"),
])
def test_bad_result_is_one_line_naming_the_index(entry, message):
    with pytest.raises(AfmError) as info:
        check_coco_results([RES[0], entry], "r.json")
    assert str(info.value) == f"r.json: results[1]: {message}"


def test_results_file_with_json_nan_and_infinity(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]')
    with pytest.raises(AfmError, match=r"^.*r.json: results\[0\]: score must be a finite number, got nan$"):
        load_coco_results(path)
    path.write_text('{"image_id": 1}')
    with pytest.raises(AfmError, match=r"r.json: not a COCO results json .* got dict$"):
        load_coco_results(path)


def test_results_arrays_keep_file_order():
    rng = np.random.default_rng(0)
    res = [{"image_id": int(i), "category_id": 1, "bbox": [float(x), 0, 1, 1], "score": float(s)}
           for i, x, s in zip(rng.integers(1, 4, 50), rng.uniform(0, 9, 50), rng.uniform(0, 1, 50))]
    r = check_coco_results(json.loads(json.dumps(res)), "r.json")
    assert r.boxes[:, 0].tolist() == [d["bbox"][0] for d in res]
    assert r.image_ids.tolist() == [d["image_id"] for d in res]
