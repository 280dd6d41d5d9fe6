"""What `afm infer` runs on, category ids, and its output-folder guard."""

import json

import pytest

from afmcli.data.visdrone_format import CLASSES
from afmcli.errors import AfmError
from afmcli.inference.state import RunState
from afmcli.inference.sources import category_ids, json_images_dir, resolve_source


def test_folder_ids_follow_file_names(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt", "c.JPEG"):
        (tmp_path / name).write_bytes(b"x")
    items, categories = resolve_source(tmp_path)
    assert [(i.image_id, i.file_name) for i in items] == [(1, "a.jpg"), (2, "b.png"), (3, "c.JPEG")]
    assert categories is None


def test_single_image_and_missing_source(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    assert [i.file_name for i in resolve_source(tmp_path / "x.jpg")[0]] == ["x.jpg"]
    with pytest.raises(AfmError, match="no such file or folder"):
        resolve_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AfmError, match="no images"):
        resolve_source(tmp_path / "empty")


def test_same_stem_twice_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(AfmError, match=r"a.jpg and a.png are two images with one name \(a\)"):
        resolve_source(tmp_path)


def test_coco_json_images_resolve_in_the_datasets_layout(tmp_path):
    ann = tmp_path / "Datasets" / "labels" / "annotations" / "val_labels.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "z.jpg"}],
                               "categories": [{"id": 4, "name": "car"}]}))
    items, categories = resolve_source(ann)
    assert items[0].path == tmp_path / "Datasets" / "images" / "val" / "z.jpg" and items[0].image_id == 7
    assert categories == [{"id": 4, "name": "car"}]
    assert resolve_source(ann, tmp_path / "elsewhere")[0][0].path == tmp_path / "elsewhere" / "z.jpg"
    assert json_images_dir(ann.with_name("val_sliced_labels.json")).name == "val_sliced"
    with pytest.raises(AfmError, match="pass --images"):
        json_images_dir(tmp_path / "preds.json")


def test_category_ids_by_name_else_visdrone_order():
    assert category_ids(CLASSES, None) == list(range(1, 11))
    shuffled = [{"id": 100 + i, "name": n} for i, n in enumerate(reversed(CLASSES))]
    assert category_ids(CLASSES, shuffled) == [109 - i for i in range(10)]
    with pytest.raises(AfmError, match="no category named 'bus'"):
        category_ids(("car", "bus"), [{"id": 1, "name": "car"}], "gt.json")


def test_out_dir_guard_refuses_only_paths_afm_did_not_write(tmp_path):
    targets = ["predictions.json", "visdrone"]
    RunState(tmp_path / "new").check_targets(targets)
    (tmp_path / "file").write_text("")
    with pytest.raises(AfmError, match="exists and is not a folder"):
        RunState(tmp_path / "file").check_targets(targets)
    out = tmp_path / "shared"
    out.mkdir()
    (out / "thesis.tex").write_text("")  # other files in OUT are fine: afm leaves them alone
    RunState(out).check_targets(targets)
    (out / "predictions.json").write_text("[]")
    with pytest.raises(AfmError, match="predictions.json: exists and was not written by afm infer"):
        RunState(out).check_targets(targets)
    RunState(out).set_outputs({"predictions.json"})
    RunState(out).check_targets(targets)
