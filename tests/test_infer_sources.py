"""What `afm infer` runs on (afmcli.inference.sources), category ids, and the output-folder guard."""

import json

import numpy as np
import pytest

from afmcli.data.layout import DatasetPaths
from afmcli.data.visdrone_format import CLASSES
from afmcli.errors import AfmError, ParameterError
from afmcli.inference.sources import ArrayImage, category_ids, open_source
from afmcli.inference.state import RunState


def test_folder_ids_follow_file_names(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt", "c.JPEG"):
        (tmp_path / name).write_bytes(b"x")
    source = open_source(tmp_path)
    assert [(i.image_id, i.file_name, i.name) for i in source.items] == [(1, "a.jpg", "a"), (2, "b.png", "b"),
                                                                        (3, "c.JPEG", "c")]
    assert source.categories is None and not source.is_video


def test_single_image_and_missing_source(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    assert [i.file_name for i in open_source(tmp_path / "x.jpg").items] == ["x.jpg"]
    with pytest.raises(AfmError, match="no such file or folder"):
        open_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AfmError, match="no images"):
        open_source(tmp_path / "empty")


def test_same_stem_twice_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(AfmError, match=r"a.jpg and a.png are two images with one name \(a\)"):
        open_source(tmp_path)


def test_unreadable_images_read_as_none_in_order(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((4, 6, 3), 7, np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    source = open_source(tmp_path)
    read = list(source.read(source.items))
    assert [item.name for item, _ in read] == ["a", "b"]
    assert read[0][1].shape == (4, 6, 3) and read[1][1] is None
    assert source.size(source.items[0]) == (6, 4) and source.size(source.items[1]) is None


def test_coco_json_images_resolve_in_the_datasets_layout(tmp_path):
    ann = tmp_path / "Datasets" / "labels" / "annotations" / "val_labels.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "z.jpg"},
                                          {"id": 9, "file_name": "seq0/z.jpg", "width": 5, "height": 4}],
                               "categories": [{"id": 4, "name": "car"}]}))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "z.jpg").write_bytes(b"x")
    source = open_source(ann, tmp_path / "elsewhere")
    assert [(i.image_id, i.path, i.name, i.size) for i in source.items] == [
        (7, tmp_path / "elsewhere" / "z.jpg", "z", None),
        (9, tmp_path / "elsewhere" / "seq0" / "z.jpg", "seq0/z", (5, 4))]  # named by relative path
    assert source.categories == [{"id": 4, "name": "car"}]
    with pytest.raises(ParameterError) as info:  # the default folder, Datasets/images/val/, has none of them
        open_source(ann)
    assert str(info.value) == (f"{ann}: none of its 2 image(s) exists (first: "
                               f"{tmp_path / 'Datasets' / 'images' / 'val' / 'z.jpg'}); check the path or images_dir")
    assert info.value.spelled({"images_dir": "--images"}).endswith("check the path or --images")


def test_dataset_paths_from_an_annotation_file(tmp_path):
    paths = DatasetPaths.from_ann_file(tmp_path / "D" / "labels" / "annotations" / "val_sliced_labels.json")
    assert (paths.root, paths.split, paths.images) == (tmp_path / "D", "val_sliced", tmp_path / "D/images/val_sliced")
    with pytest.raises(ParameterError, match="cannot tell the split from the name .*; pass images_dir DIR"):
        DatasetPaths.from_ann_file(tmp_path / "preds.json")


def test_frame_step_applies_to_videos_only(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    with pytest.raises(ParameterError, match="^frame_step applies to video sources$"):
        open_source(tmp_path, frame_step=2)
    with pytest.raises(ParameterError, match="^frame_step must be >= 1, got 0$"):
        open_source(tmp_path, frame_step=0)


def test_an_image_in_memory_is_one_item():
    image = np.zeros((3, 5, 3), np.uint8)
    source = ArrayImage(image)
    assert [(i.image_id, i.name, i.size) for i in source.items] == [(1, "image", (5, 3))]
    assert list(source.read(source.items))[0][1] is image
    with pytest.raises(ParameterError, match=r"^image must be a BGR uint8 array \(H, W, 3\), got ndarray float64"):
        ArrayImage(np.zeros((3, 5, 3)))


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
    with pytest.raises(AfmError, match="exists and is not a folder; choose another out$"):
        RunState(tmp_path / "file").check_targets(targets)
    out = tmp_path / "shared"
    out.mkdir()
    (out / "thesis.tex").write_text("")  # other files in OUT are fine: afm leaves them alone
    RunState(out).check_targets(targets)
    (out / "predictions.json").write_text("[]")
    with pytest.raises(AfmError, match="predictions.json: exists and was not written by afm infer"):
        RunState(out).check_targets(targets)
    RunState(out).folder.record(["predictions.json"])
    RunState(out).check_targets(targets)


def test_an_older_afm_s_list_of_outputs_is_taken_over(tmp_path):
    out = tmp_path / "out"
    (out / ".afm-infer").mkdir(parents=True)
    (out / ".afm-infer" / "outputs.json").write_text('["predictions.json", "visdrone"]')
    (out / "predictions.json").write_text("[]")
    RunState(out).check_targets(["predictions.json"])
    assert (out / ".afm-written").read_text() == "predictions.json\nvisdrone\n"
    assert not (out / ".afm-infer" / "outputs.json").exists()
