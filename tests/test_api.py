"""The Python API (afmcli/api.py): the same detections as `afm infer`, to the bit; the same
numbers as `afm evaluate`; errors that name the API's keywords; the README's example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import afmcli
from afmcli.cli import main
from afmcli.detections import detections_to_results
from afmcli.errors import AfmError, AfmWarning, ParameterError
from test_infer_e2e import CONFIG, save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_and_checkpoint(tmp_path_factory):
    ckpt = save_tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny.pth")
    return afmcli.load_model(CONFIG, ckpt), ckpt


def infer_json(ckpt: Path, source: Path, out: Path, *args: str) -> list[dict]:
    main(["infer", str(CONFIG), str(ckpt), str(source), "--out", str(out), *args])
    return json.loads((out / "predictions.json").read_text())


def test_predict_on_an_image_equals_afm_infer(model_and_checkpoint, synth_split, tmp_path):
    model, ckpt = model_and_checkpoint
    image = sorted(synth_split.images.glob("*.jpg"))[2]
    expected = infer_json(ckpt, image, tmp_path / "out", "--slice", "320", "--overlap", "0.2")
    dets = afmcli.predict(model, image, slice=320, overlap=0.2)
    assert len(expected) > 10
    assert detections_to_results(1, dets) == expected  # every float, every detection, in order
    assert dets.names == [model.classes[c - 1] for c in dets.labels]  # VisDrone's ids, named
    # The pixels in memory (as OpenCV reads them) are the same image.
    again = afmcli.predict(model, cv2.imread(str(image)), slice=320, overlap=0.2)
    np.testing.assert_array_equal(again.boxes, dets.boxes)
    np.testing.assert_array_equal(again.scores, dets.scores)


def test_predict_source_and_evaluate_equal_afm_infer_and_afm_evaluate(model_and_checkpoint, synth_split, tmp_path):
    model, ckpt = model_and_checkpoint
    coco = json.loads(synth_split.ann_file.read_text())
    coco["images"] = coco["images"][3:5]  # two of them, ids 4 and 5
    for key in ("annotations", "others"):
        coco[key] = [a for a in coco[key] if a["image_id"] in (4, 5)]
    gt = tmp_path / "two.json"
    gt.write_text(json.dumps(coco))
    expected = infer_json(ckpt, gt, tmp_path / "out", "--images", str(synth_split.images), "--slice", "400",
                          "--max-per-img", "60", "--method", "soft-nms")
    results = list(afmcli.predict_source(model, gt, images_dir=synth_split.images, slice=400, max_per_img=60,
                                         fusion="soft-nms"))
    assert [item.image_id for item, _ in results] == [4, 5]
    assert [r for item, dets in results for r in detections_to_results(item.image_id, dets)] == expected
    # The metrics of the detections in memory are `afm evaluate --json`'s of the written file.
    main(["evaluate", "--gt", str(gt), "--pred", str(tmp_path / "out" / "predictions.json"),
          "--json", str(tmp_path / "metrics.json")])
    metrics = afmcli.evaluate(gt, {item.image_id: dets for item, dets in results})
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"visdrone", "coco", "classwise"} and 0 <= metrics["coco"]["AP50"] <= 100
    assert set(afmcli.evaluate(gt, tmp_path / "out" / "visdrone", view="visdrone")) == {"visdrone", "classwise"}


def test_errors_name_the_api_keywords(model_and_checkpoint, synth_split, tmp_path):
    model, _ = model_and_checkpoint
    image = sorted(synth_split.images.glob("*.jpg"))[0]
    for kwargs, message in ((dict(slice=0), "slice and batch_size must be >= 1, got 0 and 8"),
                            (dict(overlap=1.0), "overlap must be a ratio in [0, 1), got 1.0"),
                            (dict(fusion="wbf", match="ios"), "match ios works with nms and greedy-nmm, not wbf"),
                            (dict(slices=False, full=False), "slices=False and full=False together leave nothing")):
        with pytest.raises(ParameterError, match=re.escape(message)):
            afmcli.predict(model, image, **kwargs)
    with pytest.raises(ParameterError, match="holds 8 images or frames; image is one image"):
        afmcli.predict(model, synth_split.images)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(AfmError, match="broken.jpg: not a readable image"):
        afmcli.predict(model, tmp_path / "broken.jpg")
    with pytest.raises(ParameterError, match="^view must be one of visdrone, coco, both, got 'all'$"):
        afmcli.evaluate(synth_split.ann_file, [], view="all")


def test_an_unreadable_image_of_a_source_is_skipped_with_a_warning(model_and_checkpoint, synth_split, tmp_path):
    model, _ = model_and_checkpoint
    good = sorted(synth_split.images.glob("*.jpg"))[0]
    (tmp_path / "a.jpg").write_bytes(good.read_bytes())
    (tmp_path / "b.jpg").write_bytes(b"truncated")
    with pytest.warns(AfmWarning, match="b.jpg: not a readable image .*; skipped"):
        results = list(afmcli.predict_source(model, tmp_path, full=False, slice=320))
    assert [item.name for item, _ in results] == ["a"]


def readme_example() -> str:
    """The first python block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_example_runs_on_a_demo_folder(tmp_path, monkeypatch, capsys):
    """The example as written, on what `make demo` leaves (a mini demo_out/: two small val
    images, one tile each, and an untrained tiny AFMNet in place of the trained one)."""
    import torch
    from mmdet.registry import MODELS

    from afmcli.cli import app
    from afmcli.data.visdrone_format import CLASSES
    from afmcli.engine.demo import DEMO_CONFIG, make_synthetic_split
    from afmcli.engine.train import load_config

    make_synthetic_split(app, tmp_path / "demo_out", train_images=1, val_images=2, width=320, height=240)
    torch.manual_seed(0)
    cfg = load_config(DEMO_CONFIG)
    (tmp_path / "demo_out" / "work_dir").mkdir()
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict(), "meta": {"dataset_meta": {"classes": CLASSES}}},
               tmp_path / "demo_out" / "work_dir" / "epoch_12.pth")
    monkeypatch.chdir(tmp_path)
    code = readme_example().replace('"configs/', f'"{REPO}/configs/')
    namespace: dict = {}
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), namespace)
    assert set(namespace["metrics"]) == {"visdrone", "coco", "classwise"}
    assert isinstance(namespace["dets"], afmcli.Detections) and len(namespace["predictions"]) == 2
    assert capsys.readouterr().out.strip()  # it shows what it found


def test_the_dataset_api_is_exported(tmp_path):
    """open_dataset, convert_dataset and train are afmcli's, the functions `afm convert` and
    `afm train --data` run; evaluate takes a dataset and its split."""
    from afmcli.data import datasets
    from afmcli.engine import train

    assert afmcli.open_dataset is datasets.open_dataset and afmcli.convert_dataset is datasets.convert_dataset
    assert afmcli.train is train.train
    assert {"open_dataset", "convert_dataset", "train"} <= set(afmcli.__all__)
    with pytest.raises(AfmError, match="no such dataset file or folder"):
        afmcli.open_dataset(tmp_path / "missing.yaml")
