"""`afm evaluate` checks the file name of each image id `afm infer` recorded (images.json)
against the ground truth's: other ids are matched by file name (one warning), files the ground
truth lacks are one error; results without images.json are scored as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bad_inputs import error, run

from afmcli.errors import AfmError, AfmWarning
from afmcli.evaluation.image_ids import gt_image_ids

BOX = {"a.jpg": [10, 10, 20, 20], "b.jpg": [60, 60, 20, 20]}  # one object each, apart


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def gt_json(path: Path, order: list[tuple[int, str]]) -> Path:
    """One 'boat' per image; ``order``: (id, file_name) of the json's images."""
    return write(path, {"images": [{"id": i, "file_name": f, "width": 100, "height": 100} for i, f in order],
                        "categories": [{"id": 1, "name": "boat"}],
                        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": BOX[Path(f).name],
                                         "iscrowd": 0} for i, f in order]})


def folder_run(out: Path, record: bool = True) -> Path:
    """`afm infer` on a folder holding a.jpg, b.jpg: ids 1, 2 in its listing, each object found."""
    out.mkdir()
    write(out / "categories.json", {"categories": [{"id": 1, "name": "boat"}]})
    if record:
        write(out / "images.json", [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}])
    return write(out / "predictions.json", [{"image_id": i, "category_id": 1, "bbox": BOX[f], "score": 0.9}
                                            for i, f in ((1, "a.jpg"), (2, "b.jpg"))])


def ap(tmp_path: Path, capsys, gt: Path, pred: Path) -> tuple[float, str]:
    code, _, err = run(capsys, "evaluate", "--gt", gt, "--pred", pred, "--view", "coco", "--json", tmp_path / "m.json")
    assert code == 0, err
    return json.loads((tmp_path / "m.json").read_text())["coco"]["AP"], err


def test_ids_in_another_order_are_matched_by_file_name(tmp_path, capsys):
    """The json numbers b.jpg 1 and a.jpg 2 (under a prefix): by id every detection would be
    on the other image (AP 0); matched by file name both are found (AP 100), said in one line."""
    gt = gt_json(tmp_path / "gt.json", [(1, "images/val/b.jpg"), (2, "images/val/a.jpg")])
    pred = folder_run(tmp_path / "run")
    got, err = ap(tmp_path, capsys, gt, pred)
    assert got == pytest.approx(100)
    assert err.strip().splitlines() == [
        f"afm: warning: {tmp_path / 'run' / 'images.json'}: the detections number their images otherwise than "
        f"{gt} (image 1 is a.jpg, the ground truth's image 2); the 2 images are matched by file name"]


def test_same_ids_same_files_say_nothing(tmp_path, capsys):
    gt = gt_json(tmp_path / "gt.json", [(1, "a.jpg"), (2, "b.jpg")])
    got, err = ap(tmp_path, capsys, gt, folder_run(tmp_path / "run"))
    assert got == pytest.approx(100) and err == ""


def test_an_image_the_ground_truth_lacks_is_one_error(tmp_path, capsys):
    gt = gt_json(tmp_path / "gt.json", [(1, "b.jpg")])
    msg = error(capsys, "evaluate", "--gt", gt, "--pred", folder_run(tmp_path / "run"))
    assert msg == (f"{tmp_path / 'run' / 'images.json'}: the detections' images do not match {gt}: 1 of the 2 "
                   "images the detections are of are not in it (first: a.jpg); run `afm infer` with the ground "
                   "truth's json or dataset as the source, so that the image ids are its own")


def test_without_images_json_ids_are_taken_as_they_are(tmp_path, capsys):
    """Detections from elsewhere: scored by id, as before (here on the wrong images: AP 0)."""
    gt = gt_json(tmp_path / "gt.json", [(1, "b.jpg"), (2, "a.jpg")])
    got, err = ap(tmp_path, capsys, gt, folder_run(tmp_path / "run", record=False))
    assert got == 0 and err == ""


def test_matching_is_by_whole_path_components_never_the_stem():
    """x/a.jpg is not a.jpg under y/; xa.jpg does not end in a.jpg; two d*/a.jpg are ambiguous."""
    images = [{"id": 7, "file_name": "y/a.jpg"}, {"id": 8, "file_name": "x/a.png"}, {"id": 9, "file_name": "xa.jpg"}]
    with pytest.warns(AfmWarning, match=r"^r: .* \(image 1 is x/a.jpg, the ground truth's image 8\)"):
        assert gt_image_ids({1: "x/a.jpg", 2: "xa.jpg"}, images, "r", "gt") == {1: 8, 2: 9}
    assert gt_image_ids({8: "a.jpg"}, images[1:2], "r", "gt") is None  # its own id, under a prefix
    with pytest.raises(AfmError, match=r"a.jpg matches more than one image"):
        gt_image_ids({1: "a.jpg"}, images, "r", "gt")
    with pytest.raises(AfmError, match=r"1 of the 1 images .* not in it \(first: z/a.jpg\)"):
        gt_image_ids({1: "z/a.jpg"}, images, "r", "gt")


def test_a_damaged_record_is_one_error(tmp_path, capsys):
    gt = gt_json(tmp_path / "gt.json", [(1, "a.jpg"), (2, "b.jpg")])
    pred = folder_run(tmp_path / "run")
    write(tmp_path / "run" / "images.json", [{"id": "1", "file_name": "a.jpg"}])
    msg = error(capsys, "evaluate", "--gt", gt, "--pred", pred)
    assert msg.startswith(f"{tmp_path / 'run' / 'images.json'}: not an image list written by afm (")


def test_fuse_records_the_inputs_images_and_refuses_two_files_at_one_id(tmp_path, capsys):
    a, b = folder_run(tmp_path / "a"), folder_run(tmp_path / "b")
    (tmp_path / "fused").mkdir()
    code, _, err = run(capsys, "fuse", a, b, "--out", tmp_path / "fused" / "f.json")
    assert code == 0, err
    assert json.loads((tmp_path / "fused" / "images.json").read_text()) == \
        json.loads((tmp_path / "a" / "images.json").read_text())
    gt = gt_json(tmp_path / "gt.json", [(1, "b.jpg"), (2, "a.jpg")])
    assert ap(tmp_path, capsys, gt, tmp_path / "fused" / "f.json")[0] == pytest.approx(100)  # matched by name
    write(tmp_path / "b" / "images.json", [{"id": 1, "file_name": "b.jpg"}, {"id": 2, "file_name": "a.jpg"}])
    msg = error(capsys, "fuse", a, b, "--out", tmp_path / "g.json")
    assert msg == (f"{tmp_path / 'b' / 'images.json'}: image 1 is b.jpg, another input's a.jpg; fuse detections "
                   "of the same images (runs on the same source)")
    msg = error(capsys, "fuse", b, b, "--out", tmp_path / "fused" / "g.json")
    assert msg == (f"{tmp_path / 'fused' / 'images.json'} records other images than the inputs'; write --out in "
                   "another folder")
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "fused" / "g.json").exists()
