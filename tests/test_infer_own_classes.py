"""A model of its own classes through `afm infer` and the Python API: the checkpoint's class
names, the one category-id rule recorded in categories.json and checked at evaluation, the
writers that can and cannot express the class list, and what notebooks hand to predict."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_infer_e2e import CONFIG, save_tiny_checkpoint  # CONFIG lists VisDrone's 10 classes

import afmcli
from afmcli.cli import main
from afmcli.errors import AfmError, ParameterError

FIVE = ("pedestrian", "car", "van", "truck", "bus")
TWO = ("human", "vehicle")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    return {"five": save_tiny_checkpoint(root / "five.pth", classes=FIVE),
            "two": save_tiny_checkpoint(root / "two.pth", classes=TWO)}


@pytest.fixture(scope="module")
def vis_json(tmp_path_factory, synth_split):
    """Two of the synthetic split's images as a VisDrone-table json source."""
    coco = json.loads(synth_split.ann_file.read_text())
    keep = {img["id"] for img in coco["images"][:2]}
    coco["images"] = [img for img in coco["images"] if img["id"] in keep]
    for key in ("annotations", "others"):
        coco[key] = [a for a in coco.get(key, []) if a["image_id"] in keep]
    path = tmp_path_factory.mktemp("src") / "val.json"
    path.write_text(json.dumps(coco))
    return path, synth_split.images, [synth_split.images / img["file_name"] for img in coco["images"]]


def infer(ckpt, source, out, *extra):
    main(["infer", str(CONFIG), str(ckpt), str(source), "--out", str(out), "--no-slices", *map(str, extra)])


def table(out: Path) -> dict:
    return {c["id"]: c["name"] for c in json.loads((out / "categories.json").read_text())["categories"]}


def test_the_checkpoint_names_the_classes_over_the_config(ckpts):
    model = afmcli.load_model(CONFIG, ckpts["five"])
    assert model.classes == FIVE and model.module.bbox_head.num_classes == 5


def test_one_id_rule_recorded_and_checked_at_evaluation(ckpts, vis_json, tmp_path, capsys):
    """Folder: 1..5 in the model's order; VisDrone json: its ids by name (1, 4, 5, 6, 9). The
    folder run's predictions against the json are one error, the json run's are scored."""
    ann, images_dir, files = vis_json
    folder = tmp_path / "folder_images"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    infer(ckpts["five"], folder, tmp_path / "a")
    infer(ckpts["five"], ann, tmp_path / "b", "--images", images_dir)
    assert table(tmp_path / "a") == dict(zip((1, 2, 3, 4, 5), FIVE))
    assert table(tmp_path / "b") == dict(zip((1, 4, 5, 6, 9), FIVE))
    for out in ("a", "b"):
        ids = {r["category_id"] for r in json.loads((tmp_path / out / "predictions.json").read_text())}
        assert ids and ids <= set(table(tmp_path / out))
    # VisDrone's txt files say what the detections are only with VisDrone's ids.
    assert not (tmp_path / "a" / "visdrone").exists() and (tmp_path / "b" / "visdrone").is_dir()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["evaluate", "--gt", str(ann), "--pred", str(tmp_path / "a" / "predictions.json")])
    assert "'car' is id 2 in the detections but 4 in the ground truth" in capsys.readouterr().err
    main(["evaluate", "--gt", str(ann), "--pred", str(tmp_path / "b" / "predictions.json"), "--view", "coco"])


def test_a_folder_run_scored_against_a_json_of_other_ids(ckpts, vis_json, tmp_path, capsys):
    """images.json names the file of each image id: a folder run (ids in its listing) scored
    against a json that numbers the images the other way round, under a prefix, scores as the
    run on that json does, with one warning; without the record, on the wrong images."""
    from test_bad_inputs import run

    _, _, files = vis_json
    folder = tmp_path / "imgs" / "val"
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    names = sorted(f.name for f in files)
    infer(ckpts["five"], folder, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "images.json").read_text()) == \
        [{"id": i, "file_name": name} for i, name in enumerate(names, start=1)]
    # The ground truth: the folder run's best 5 detections of each image, ids reversed.
    gt_id = {i: len(names) + 1 - i for i in range(1, len(names) + 1)}
    found = json.loads((tmp_path / "a" / "predictions.json").read_text())
    objects = [r for i in gt_id
               for r in sorted((r for r in found if r["image_id"] == i), key=lambda r: -r["score"])[:5]]
    gt = tmp_path / "val.json"
    gt.write_text(json.dumps({
        "images": [{"id": gt_id[i], "file_name": f"val/{name}", "width": 640, "height": 480}
                   for i, name in enumerate(names, start=1)],
        "categories": [{"id": k, "name": name} for k, name in enumerate(FIVE, start=1)],
        "annotations": [{"id": k, "image_id": gt_id[r["image_id"]], "category_id": r["category_id"], "bbox": r["bbox"],
                         "area": r["bbox"][2] * r["bbox"][3], "iscrowd": 0} for k, r in enumerate(objects, start=1)]}))
    infer(ckpts["five"], gt, tmp_path / "b", "--images", tmp_path / "imgs")
    assert json.loads((tmp_path / "b" / "images.json").read_text()) == \
        [{"id": gt_id[i], "file_name": f"val/{name}"} for i, name in enumerate(names, start=1)]

    def ap(out: str) -> tuple[float, str]:
        code, _, err = run(capsys, "evaluate", "--gt", gt, "--pred", tmp_path / out / "predictions.json",
                           "--view", "coco", "--json", tmp_path / f"{out}.json")
        assert code == 0, err
        return json.loads((tmp_path / f"{out}.json").read_text())["coco"]["AP"], err

    (ap_a, warned), (ap_b, said) = ap("a"), ap("b")
    assert ap_a == ap_b > 50 and said == ""
    assert warned.strip().splitlines() == [
        f"afm: warning: {tmp_path / 'a' / 'images.json'}: the detections number their images otherwise than {gt} "
        f"(image 1 is {names[0]}, the ground truth's image 2); the 2 images are matched by file name"]
    (tmp_path / "a" / "images.json").unlink()
    assert ap("a")[0] < ap_b


def test_writers_of_another_class_list(ckpts, vis_json, tmp_path, capsys):
    """human, vehicle: predictions, YOLO (class = index in the model's list) and drawings are
    written, VisDrone's txt is not."""
    _, _, files = vis_json
    out = tmp_path / "two"
    infer(ckpts["two"], files[0], out, "--yolo", "--viz", "--viz-score", "0")
    assert table(out) == {1: "human", 2: "vehicle"}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["categories.json", "images.json", "predictions.json", "sources", "viz", "yolo"]
    classes = {int(line.split()[0]) for f in (out / "yolo").glob("*.txt") for line in f.read_text().splitlines()}
    assert classes and classes <= {0, 1}


def test_api_predict_takes_what_notebooks_hold(ckpts, vis_json):
    from PIL import Image

    _, _, files = vis_json
    model = afmcli.load_model(CONFIG, ckpts["two"])
    kw = dict(slices=False)
    bgr = cv2.imread(str(files[0]))
    want = afmcli.predict(model, files[0], **kw)
    assert len(want) and set(want.names) <= set(TWO) and want.categories == {1: "human", 2: "vehicle"}
    for got in (afmcli.predict(model, bgr, **kw), afmcli.predict(model, bgr[:, :, ::-1].copy(), channels="rgb", **kw),
                afmcli.predict(model, Image.open(files[0]), **kw)):
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-4)
    both = afmcli.predict(model, [files[0], bgr], **kw)
    assert isinstance(both, list) and len(both) == 2
    np.testing.assert_allclose(both[1].scores, want.scores, atol=1e-6)


@pytest.mark.parametrize("image, message", [
    (42, "image must be an image file's path, a uint8 array (H, W, 3) or a PIL image, or a list of them; got int"),
    ({"a": 1}, "image must be an image file's path, a uint8 array (H, W, 3) or a PIL image, or a list of them; "
               "got dict"),
])
def test_api_predict_refuses_anything_else_naming_image(ckpts, image, message):
    model = afmcli.load_model(CONFIG, ckpts["two"])
    with pytest.raises(ParameterError) as exc:
        afmcli.predict(model, image)
    assert str(exc.value) == message


def test_api_predict_on_a_config_path_names_model():
    with pytest.raises(AfmError, match=r"^model must be a model from afmcli.load_model\(config, checkpoint\), got str"):
        afmcli.predict("config.py", np.zeros((8, 8, 3), np.uint8))


def test_api_channels_other_than_bgr_rgb_is_refused(ckpts):
    model = afmcli.load_model(CONFIG, ckpts["two"])
    with pytest.raises(ParameterError, match="^channels must be one of bgr, rgb, got 'hsv'"):
        afmcli.predict(model, np.zeros((8, 8, 3), np.uint8), channels="hsv")


def test_vid_is_refused_for_another_class_list(ckpts, tmp_path, capsys):
    """VisDrone-VID files name classes by VisDrone's ids: one line, nothing written."""
    from test_infer_scale import write_video

    write_video(tmp_path / "clip.avi", 2)
    with pytest.raises(SystemExit):
        infer(ckpts["two"], tmp_path / "clip.avi", tmp_path / "out", "--vid")
    assert capsys.readouterr().err.strip() == ("afm: error: --vid writes VisDrone's category ids 1..10; the model's "
                                               "classes (human, vehicle) are not VisDrone's")
    assert not (tmp_path / "out").exists()


def test_with_classes_sets_every_head_of_a_shipped_config():
    """AFMNet's main and HD heads, built for two classes from a config that lists ten."""
    from mmdet.registry import MODELS

    from afmcli.engine.train import load_config
    from afmcli.inference.backends.mmdet_backend import config_classes, with_classes

    cfg = with_classes(load_config(Path(__file__).parents[1] / "configs" / "AFM" / "afmnet_tiny_synth.py"), TWO)
    assert config_classes(cfg) == TWO
    model = MODELS.build(cfg.model)
    heads = [m for m in model.modules() if hasattr(m, "num_classes") and hasattr(m, "cls_out_channels")]
    assert len(heads) >= 2 and {h.num_classes for h in heads} == {2}


def test_with_classes_leaves_a_two_stage_models_rpn_alone():
    """The one num_classes rule of `afm train --data` (afmcli.engine.class_keys): the RPN is class-agnostic."""
    from mmengine.config import Config

    from afmcli.inference.backends.mmdet_backend import with_classes

    cfg = with_classes(Config(dict(model=dict(rpn_head=dict(num_classes=1), roi_head=dict(bbox_head=dict(num_classes=80))),
                                   test_dataloader=dict(dataset=dict()))), TWO)
    assert cfg.model.rpn_head.num_classes == 1 and cfg.model.roi_head.bbox_head.num_classes == 2
