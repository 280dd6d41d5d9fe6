"""`afm infer` end to end with a tiny random TOOD on `afm synth` images."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from afmcli.cli import main
from afmcli.data.visdrone_format import read_visdrone_file
from afmcli.inference.backends.mmdet_backend import load_model

CONFIG = Path(__file__).parent / "fixtures" / "tiny_tood.py"


def save_tiny_checkpoint(path, config=CONFIG, classes=None, **cfg_model):
    """A random tiny TOOD saved as mmengine does, its class names in meta.dataset_meta: the
    config's, or ``classes`` (the head built for them, as training on them would)."""
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(config))
    if classes is not None:
        cfg.classes = tuple(classes)
        cfg_model["num_classes"] = len(classes)
    cfg.model.bbox_head.update(cfg_model)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():  # std 0.05: scores spread out (no near-ties), well above 0.01
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.normal_(mod.weight, 0, 0.05)
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": cfg.classes}}}, path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    main(["synth", str(root / "synth"), "--split", "val", "--images", "3", "--width", "700",
          "--height", "500"])
    ckpt = save_tiny_checkpoint(root / "tiny.pth")
    return root, root / "synth" / "images", ckpt


def run_infer(*args):
    main(["infer", str(CONFIG), *map(str, args)])


def test_batched_tiles_give_the_same_detections_as_one_at_a_time(setup):
    root, images, ckpt = setup
    model = load_model(CONFIG, ckpt)
    image = cv2.imread(str(sorted(images.glob("*.jpg"))[0]))
    crops = [image[0:320, 0:320], image[100:420, 200:520], image[180:500, 380:700]]
    for batch, single in zip(model(crops, 0.01), [model([c], 0.01)[0] for c in crops]):
        assert len(batch) == len(single) > 0
        np.testing.assert_array_equal(batch.labels, single.labels)
        np.testing.assert_allclose(batch.scores, single.scores, atol=1e-5)
        np.testing.assert_allclose(batch.boxes, single.boxes, atol=1e-2)


def test_infer_writes_every_output(setup, tmp_path):
    root, images, ckpt = setup
    out = tmp_path / "pred"
    run_infer(ckpt, images, "--out", out, "--slice", "320", "--batch-size", "4", "--viz",
              "--max-per-img", "200")
    fused = json.loads((out / "predictions.json").read_text())
    slices = json.loads((out / "sources" / "slices.json").read_text())
    full = json.loads((out / "sources" / "full.json").read_text())
    assert {r["image_id"] for r in fused} == {r["image_id"] for r in slices} == {1, 2, 3}
    for results in (fused, slices, full):
        assert {r["category_id"] for r in results} <= set(range(1, 11))
        for r in results:
            x, y, w, h = r["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 700 + 1e-6 and y + h <= 500 + 1e-6
    for image_id in (1, 2, 3):
        scores = [r["score"] for r in fused if r["image_id"] == image_id]
        assert 0 < len(scores) <= 200 and scores == sorted(scores, reverse=True)
    # The fused file is exactly `afm fuse` of the two sources with the same settings.
    refused = tmp_path / "refused.json"
    main(["fuse", str(out / "sources" / "slices.json"), str(out / "sources" / "full.json"),
          "--out", str(refused), "--max-per-img", "200"])
    assert json.loads(refused.read_text()) == fused
    names = sorted(p.stem for p in images.glob("*.jpg"))
    assert sorted(p.stem for p in (out / "visdrone").glob("*.txt")) == names
    rows = read_visdrone_file(out / "visdrone" / f"{names[0]}.txt")
    first = sorted((r for r in fused if r["image_id"] == 1), key=lambda r: -r["score"])
    assert len(rows) == len(first)
    np.testing.assert_allclose(rows[:, :4], [r["bbox"] for r in first], atol=1e-4)
    assert list(rows[:, 6]) == [-1] * len(rows) and np.all(np.diff(rows[:, 4]) <= 0)
    viz = cv2.imread(str(out / "viz" / f"{names[0]}.png"))
    assert viz.shape[1:] == (700, 3) and viz.shape[0] > 500  # the image, then its legend strip
    # Another run may replace its own outputs with --overwrite.
    run_infer(ckpt, images / f"{names[0]}.jpg", "--out", out, "--no-slices", "--overwrite")
    assert not (out / "sources" / "slices.json").exists() and (out / "sources" / "full.json").exists()


def test_unreadable_image_is_skipped_listed_and_exits_2(setup, tmp_path, capsys):
    root, images, ckpt = setup
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    good = sorted(images.glob("*.jpg"))[0]
    (mixed / good.name).write_bytes(good.read_bytes())
    (mixed / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "pred"
    with pytest.raises(SystemExit) as exc:
        run_infer(ckpt, mixed, "--out", out, "--slice", "320")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "1 image(s) could not be read" in err and "broken.jpg" in err
    assert sorted(p.name for p in (out / "visdrone").glob("*.txt")) == [f"{good.stem}.txt"]
    assert {r["image_id"] for r in json.loads((out / "predictions.json").read_text())} == {2}


def test_coco_json_source_maps_categories_by_name(setup, tmp_path):
    root, images, ckpt = setup
    ann = tmp_path / "Datasets" / "labels" / "annotations" / "val_labels.json"
    ann.parent.mkdir(parents=True)
    from afmcli.data.visdrone_format import CLASSES

    first = sorted(images.glob("*.jpg"))[0]
    ann.write_text(json.dumps({"images": [{"id": 42, "file_name": first.name, "width": 700, "height": 500}],
                               "categories": [{"id": 100 + i, "name": n} for i, n in enumerate(CLASSES)]}))
    out = tmp_path / "pred"
    run_infer(ckpt, ann, "--out", out, "--images", images, "--no-full-image", "--slice", "400")
    fused = json.loads((out / "predictions.json").read_text())
    assert {r["image_id"] for r in fused} == {42}
    assert {r["category_id"] for r in fused} <= set(range(100, 110))


def test_checkpoint_of_another_class_count_is_one_clear_line(setup, tmp_path, capsys):
    root, images, ckpt = setup
    other = save_tiny_checkpoint(tmp_path / "three.pth", num_classes=3)
    torch.save({"state_dict": torch.load(other)["state_dict"]}, other)  # no class names in meta
    with pytest.raises(SystemExit) as exc:
        run_infer(other, images, "--out", tmp_path / "pred")
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "does not match" in err and "shape mismatch" in err and "[3," in err and "[10," in err
    assert not (tmp_path / "pred").exists()


def test_config_whose_head_disagrees_with_its_classes(setup, tmp_path, capsys):
    """Without class names in the checkpoint the config's must agree with its head; with them
    (mmengine's meta.dataset_meta) the model is built for the checkpoint's classes."""
    root, images, ckpt = setup
    config = tmp_path / "three.py"
    config.write_text(f"_base_ = {str(CONFIG)!r}\nmodel = dict(bbox_head=dict(num_classes=3))\n")
    nameless = tmp_path / "nameless.pth"
    torch.save({"state_dict": torch.load(ckpt, weights_only=True)["state_dict"]}, nameless)
    with pytest.raises(SystemExit):
        main(["infer", str(config), str(nameless), str(images), "--out", str(tmp_path / "pred")])
    assert "the model has 3 classes but the test set lists 10" in capsys.readouterr().err
    assert load_model(config, ckpt).module.bbox_head.num_classes == 10


def test_nothing_to_run(setup, tmp_path, capsys):
    root, images, ckpt = setup
    with pytest.raises(SystemExit):
        run_infer(ckpt, images, "--out", tmp_path / "p", "--no-slices", "--no-full-image")
    assert "leave nothing to run" in capsys.readouterr().err


def test_infer_says_when_the_cap_cut_detections(setup, tmp_path, capsys):
    root, images, ckpt = setup
    run_infer(ckpt, images, "--out", tmp_path / "capped", "--slice", "320", "--max-per-img", "5")
    fused = json.loads((tmp_path / "capped" / "predictions.json").read_text())
    assert [sum(r["image_id"] == i for r in fused) for i in (1, 2, 3)] == [5, 5, 5]
    assert "afm: warning: 3 of 3 images reached --max-per-img 5" in capsys.readouterr().err
    run_infer(ckpt, images, "--out", tmp_path / "roomy", "--slice", "320", "--max-per-img", "100000")
    assert "reached --max-per-img" not in capsys.readouterr().err


def test_a_run_parses_its_config_once_and_checks_its_settings_once(setup, tmp_path, monkeypatch):
    from mmengine.config import Config

    import afmcli.inference.predict as predict

    root, images, ckpt = setup
    calls = {"parse": 0, "check": 0}
    parse, check = Config.fromfile, predict.check_fusion_options

    def counted_parse(*args, **kwargs):
        calls["parse"] += 1
        return parse(*args, **kwargs)

    def counted_check(*args, **kwargs):
        calls["check"] += 1
        return check(*args, **kwargs)

    monkeypatch.setattr(Config, "fromfile", counted_parse)
    monkeypatch.setattr(predict, "check_fusion_options", counted_check)
    run_infer(ckpt, images, "--out", tmp_path / "pred", "--slice", "320")  # 3 images, 6 tiles and a pass each
    assert calls == {"parse": 1, "check": 1}


def test_images_of_one_stem_in_two_folders_get_two_outputs(setup, tmp_path):
    """Images are named by their path relative to the images folder, never by the stem alone:
    seq0/x.jpg and seq4/x.jpg are two images, and `afm evaluate` finds each one's file."""
    from afmcli.data.coco import coco_categories

    root, images, ckpt = setup
    first, second = sorted(images.glob("*.jpg"))[:2]
    (tmp_path / "imgs" / "seq0").mkdir(parents=True)
    (tmp_path / "imgs" / "seq4").mkdir()
    (tmp_path / "imgs" / "seq0" / "x.jpg").write_bytes(first.read_bytes())
    (tmp_path / "imgs" / "seq4" / "x.jpg").write_bytes(second.read_bytes())
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "seq0/x.jpg", "width": 700, "height": 500},
                                         {"id": 2, "file_name": "seq4/x.jpg", "width": 700, "height": 500}],
                              "annotations": [{"id": 1, "image_id": 2, "category_id": 4, "bbox": [10, 10, 30, 20],
                                               "area": 600, "iscrowd": 0}],
                              "categories": coco_categories()}))
    out = tmp_path / "pred"
    run_infer(ckpt, gt, "--out", out, "--images", tmp_path / "imgs", "--no-slices", "--viz", "--yolo")
    fused = json.loads((out / "predictions.json").read_text())
    for name, image_id in (("seq0/x", 1), ("seq4/x", 2)):
        rows = read_visdrone_file(out / "visdrone" / f"{name}.txt")
        assert len(rows) == sum(r["image_id"] == image_id for r in fused) > 0
        assert (out / "yolo" / f"{name}.txt").is_file() and (out / "viz" / f"{name}.png").is_file()
    main(["evaluate", "--gt", str(gt), "--pred", str(out / "visdrone"), "--json", str(tmp_path / "m.json")])
    by_file = json.loads((tmp_path / "m.json").read_text())
    main(["evaluate", "--gt", str(gt), "--pred", str(out / "predictions.json"), "--json", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text())["visdrone"] == by_file["visdrone"]
