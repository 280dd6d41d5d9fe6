"""`afm train CONFIG --data DATA`: every class key set from the data for the shipped configs
and a user's config inheriting them; hand configs checked; fine-tuning onto other classes;
tiny models trained one epoch on real images (YOLO 5-class, the shared COCO json)."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from afmcli.data.datasets import open_dataset
from afmcli.engine.class_keys import num_classes_in, set_num_classes
from afmcli.engine.data_config import apply_data, prepare_data
from afmcli.engine.train import inner_datasets, load_config, prepare_config
from afmcli.errors import AfmError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFM_SHARED", ROOT.parent / "shared")) / "data"
VISDRONE = SHARED / "visdrone-real" / "VisDrone2019-DET-train"
COCO_SAMPLE = SHARED / "aerial-samples" / "visdrone2019-det-train-first50image.json"
needs_real = pytest.mark.skipif(not VISDRONE.is_dir() or not COCO_SAMPLE.is_file(),
                                reason=f"real data not found under {SHARED} (set AFM_SHARED)")

spec = importlib.util.spec_from_file_location("bench_own_data", ROOT / "bench" / "bench_own_data.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def _tiny_yolo(tmp_path, names=("boat", "car", "person")) -> Path:
    import cv2

    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(root / "images" / split / f"{k}.png"), np.full((96, 128, 3), 60 * k, np.uint8))
            (root / "labels" / split / f"{k}.txt").write_text(f"{k} 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: {list(names)}\n")
    return root / "data.yaml"


@pytest.mark.parametrize("config", ["tood_r50_visdrone.py", "AFMNet-tood_r50_k13.py", "AFMNet-tood_r50_k13_sliced.py",
                                    "AFMNet-tood_r50_k13_sliced_full.py", "tood_tiny_synth.py",
                                    "afmnet_tiny_synth.py"])
def test_shipped_configs_take_the_data_classes(tmp_path, config):
    path = ROOT / "configs" / "AFM" / config
    cfg = prepare_config(load_config(path, ["load_from=None"]), path, tmp_path / "work")
    prepared = prepare_data(_tiny_yolo(tmp_path), cfg.work_dir, slice_size=64)
    apply_data(cfg, prepared)
    assert num_classes_in(cfg.model) and set(num_classes_in(cfg.model)) == {3}
    if "AFMNet" in config or "afmnet" in config:
        assert cfg.model.hd_head.num_classes == 3 and cfg.model.bbox_head.num_classes == 3
    leaves = inner_datasets(cfg, LOADERS)
    assert leaves and all(tuple(d.metainfo.classes) == ("boat", "car", "person") for _, d in leaves)
    for key, dataset in leaves:
        ann = Path(dataset.data_root) / dataset.ann_file
        split = "train" if key == "train_dataloader" else "val"
        assert ann.parent.parent.parent == Path(cfg.work_dir) / "data" and ann.name.startswith(split)
        assert [c["name"] for c in json.loads(ann.read_text())["categories"]] == ["boat", "car", "person"]
        assert (Path(dataset.data_root) / dataset.data_prefix.img).is_dir()
    train_anns = [d.ann_file for k, d in leaves if k == "train_dataloader"]
    if "sliced" in config:
        assert "labels/annotations/train_sliced_labels.json" in train_anns
    for key in ("val_evaluator", "test_evaluator"):  # afm's metric, per class by name, for any class list
        assert cfg[key].type == "VisDroneMetric" and cfg[key].classwise and cfg[key].ann_file.endswith("val_labels.json")
    assert cfg.default_hooks.checkpoint.save_best == "coco/AP50"


def test_visdrone_classes_keep_the_visdrone_metric(tmp_path):
    src = tmp_path / "src"
    import cv2

    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    cv2.imwrite(str(src / "images" / "a.png"), np.zeros((50, 100), np.uint8))
    (src / "annotations" / "a.txt").write_text("1,1,20,30,1,4,0,0\n")
    path = ROOT / "configs" / "AFM" / "tood_tiny_synth.py"
    cfg = prepare_config(load_config(path), path, tmp_path / "work")
    apply_data(cfg, prepare_data(src, cfg.work_dir))
    assert cfg.val_evaluator.type == "VisDroneMetric" and cfg.default_hooks.checkpoint.save_best == "coco/AP50"
    assert cfg.model.bbox_head.num_classes == 10


def test_hand_config_mistakes_are_one_line(tmp_path):
    """The keys a hand-made config misses, each named before training (mmdet: 'need at least
    one array to concatenate', or a KeyError after the first validation)."""
    from afmcli.engine.train import check_data_files

    data = bench.make_yolo_5class(tmp_path / "yolo", train=bench.TRAIN[:1], val=bench.VAL[:1]) \
        if VISDRONE.is_dir() else _tiny_yolo(tmp_path, bench.CLASSES)
    if not VISDRONE.is_dir():
        pytest.skip("real data missing")
    bench.hand_convert(data.parent, tmp_path / "hand")
    base = bench.tiny_config(tmp_path / "user.py", epochs=1)
    good = bench.hand_config(tmp_path / "hand.py", base, tmp_path / "hand")
    text = good.read_text()
    cases = {
        "metainfo": (text.replace("metainfo=dict(classes=classes)", "metainfo=dict(classes=('x', 'y'))"),
                     "none of metainfo.classes (x, y) is a category of"),
        "num_classes": (text.replace("num_classes=5", "num_classes=10"),
                        "the model's num_classes is 10 but train_dataloader's metainfo.classes has 5"),
        "save_best": (text + "default_hooks = dict(checkpoint=dict(save_best='visdrone/AP'))\n",
                      "save_best 'visdrone/AP': VisDroneMetric reports the toolkit's view for VisDrone's ten "
                      "classes only, and val_dataloader's metainfo.classes are others (pedestrian, car, van, "
                      "truck, ...): set save_best='coco/AP50'"),
        "save_best CocoMetric": (text.replace("test_evaluator = val_evaluator", "test_evaluator = val_evaluator\n"
                                              "val_evaluator = dict(_delete_=True, type='CocoMetric', "
                                              "ann_file=data_root + 'labels/annotations/val_labels.json')"),
                                 "save_best 'coco/AP50' is not a key CocoMetric reports"),
    }
    cfg = prepare_config(load_config(good), good, tmp_path / "w")
    check_data_files(cfg)  # the complete hand config passes
    for name, (variant, message) in cases.items():
        path = tmp_path / f"{name}.py"
        path.write_text(variant)
        cfg = prepare_config(load_config(path), path, tmp_path / "w")
        with pytest.raises(AfmError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_data_files(cfg)


def test_class_dependent_keys_are_the_classification_layers():
    from afmcli.engine.class_change_hook import class_dependent_keys
    from mmdet.registry import MODELS

    cfg = load_config(ROOT / "configs" / "AFM" / "afmnet_tiny_synth.py")
    model = MODELS.build(cfg.model)
    keys = class_dependent_keys(cfg.model, {k: v.shape for k, v in model.state_dict().items()})
    assert keys == {"bbox_head.tood_cls.weight", "bbox_head.tood_cls.bias",
                    "hd_head.tood_cls.weight", "hd_head.tood_cls.bias"}


class _Runner:
    """What ClassChangeHook reads of a Runner."""

    def __init__(self, cfg, model, classes, load_from="old.pth"):
        from types import SimpleNamespace

        self.cfg, self.model, self._resume, self._load_from = cfg, model, False, load_from
        self.train_dataloader = SimpleNamespace(dataset=SimpleNamespace(metainfo={"classes": classes}))


def test_same_count_other_names_drops_cls_layers():
    """5 classes -> 5 other classes: the shapes fit, mmengine would keep the old class weights."""
    from afmcli.engine.class_change_hook import ClassChangeHook
    from mmdet.registry import MODELS

    cfg = load_config(ROOT / "configs" / "AFM" / "tood_tiny_synth.py")
    cfg.model.bbox_head.num_classes = 5
    model = MODELS.build(cfg.model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoint = {"state_dict": state, "meta": {"dataset_meta": {"classes": ("a", "b", "c", "d", "e")}}}
    with pytest.warns(UserWarning, match=r"its classes \(5 \(a, b, c, d, \.\.\.\)\) differ from the data's "
                                         r"5 \(v, w, x, y, \.\.\.\).*classification layers start fresh"):
        ClassChangeHook().after_load_checkpoint(_Runner(cfg, model, ("v", "w", "x", "y", "z")), checkpoint)
    assert "bbox_head.tood_cls.weight" not in state and "backbone.conv1.weight" in state
    same = {"state_dict": dict(model.state_dict()), "meta": {"dataset_meta": {"classes": ("a", "b", "c", "d", "e")}}}
    ClassChangeHook().after_load_checkpoint(_Runner(cfg, model, ("a", "b", "c", "d", "e")), same)
    assert "bbox_head.tood_cls.weight" in same["state_dict"]
    mmdet2 = {"state_dict": dict(model.state_dict()), "meta": {"CLASSES": ("a", "b", "c", "d", "e")}}  # model zoo
    with pytest.warns(UserWarning, match="classification layers start fresh"):
        ClassChangeHook().after_load_checkpoint(_Runner(cfg, model, ("v", "w", "x", "y", "z")), mmdet2)
    assert "bbox_head.tood_cls.weight" not in mmdet2["state_dict"]


def test_classes_shared_by_name_keep_their_trained_rows():
    """10 classes -> (car, new, pedestrian): car and pedestrian keep their checkpoint rows, in the
    data's order, in both heads of AFMNet; 'new' keeps the model's own initialisation."""
    import torch

    from afmcli.engine.class_change_hook import ClassChangeHook
    from mmdet.registry import MODELS

    old = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor")
    cfg = load_config(ROOT / "configs" / "AFM" / "afmnet_tiny_synth.py")
    trained = MODELS.build(cfg.model)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in trained.state_dict().items()}
    ckpt_state = dict(state)
    classes = ("car", "new", "pedestrian")
    set_num_classes(cfg.model, 3)
    model = MODELS.build(cfg.model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoint = {"state_dict": state, "meta": {"dataset_meta": {"classes": old}}}
    with pytest.warns(UserWarning, match=r"keep the trained weights of the 2 classes shared by name "
                                         r"\(car, pedestrian\), the others start fresh"):
        ClassChangeHook().after_load_checkpoint(_Runner(cfg, model, classes), checkpoint)
    for head in ("bbox_head", "hd_head"):
        for part in ("weight", "bias"):
            key = f"{head}.tood_cls.{part}"
            assert torch.equal(state[key][0], ckpt_state[key][3]) and torch.equal(state[key][2], ckpt_state[key][0])
            assert torch.equal(state[key][1], init[key][1])
    assert all(torch.equal(state[k], ckpt_state[k]) for k in state if k.startswith(("backbone.", "neck.")))
    model.load_state_dict(state)  # every key, every shape: nothing missing


def _cli(capsys, *argv):
    from afmcli.cli import main

    try:
        main(list(map(str, argv)))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return out


def _train(tmp_path, capsys, *argv):
    return _cli(capsys, "train", *argv)


def _checkpoint(work_dir: Path) -> dict:
    from afmcli.engine.checkpoint import load_checkpoint_file

    [path] = sorted(work_dir.glob("epoch_*.pth"))
    return load_checkpoint_file(path, trust=True)


def _metric_names(work_dir: Path) -> set[str]:
    """The class names of the per-class validation metrics in the run's log."""
    import re

    [log] = sorted(work_dir.glob("*/*.log"))
    names = set(re.findall(r"coco/(\S+)_AP50: ", log.read_text()))
    assert names
    return names


def _infer_and_evaluate(tmp_path, capsys, config: Path, work_dir: Path, data, classes) -> dict:
    """The user's next two commands after `afm train CONFIG --data DATA --work-dir W`:
    `afm infer CONFIG W/epoch_1.pth DATA --split val --slice 640`, then `afm evaluate --gt DATA
    --split val`. The table names the data's classes and no other; categories.json matches
    the ground truth's table by name and id. Returns the metrics json."""
    from afmcli.data.datasets import split_json

    _cli(capsys, "infer", config, work_dir / "epoch_1.pth", data, "--split", "val", "--out", tmp_path / "r",
         "--slice", 640, "--score-thr", 0.001)
    written = json.loads((tmp_path / "r" / "categories.json").read_text())["categories"]
    gt_json, _ = split_json(Path(data), "val")
    truth = json.loads(gt_json.read_text())["categories"]
    assert [(c["id"], c["name"]) for c in written] == [(c["id"], c["name"]) for c in truth] \
        == list(enumerate(classes, 1))
    out = _cli(capsys, "evaluate", "--gt", data, "--split", "val", "--pred", tmp_path / "r" / "predictions.json",
               "--classwise", "--json", tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert tuple(metrics["classwise"]["coco"]) == tuple(classes)
    table_rows = {line.split("│")[1].strip() for line in out.out.splitlines() if line.count("│") == 5}
    assert table_rows == set(classes)  # the per-class table: the data's names, no other
    return metrics


@needs_real
def test_real_yolo_5class_sliced_train_one_epoch_and_finetune_from_10(tmp_path, capsys, monkeypatch):
    """The real 5-class YOLO set, sliced 640 crops, tiny TOOD one epoch, fine-tuned from a
    10-class (VisDrone) checkpoint: backbone weights kept, the classification rows of the five
    VisDrone names carried over to the data's order; then
    sliced inference and `afm evaluate --gt data.yaml --split val`."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from mmdet.registry import MODELS

    from afmcli.data.visdrone_format import CLASSES as VISDRONE

    data = bench.make_yolo_5class(tmp_path / "yolo", train=bench.TRAIN[:2], val=bench.VAL[:1])
    config = bench.tiny_config(tmp_path / "user.py", scale=320, epochs=1)
    ten = MODELS.build(load_config(config).model)  # the VisDrone head: 10 classes
    old = {k: v.clone() for k, v in ten.state_dict().items()}
    torch.save({"state_dict": old, "meta": {"dataset_meta": {"classes": VISDRONE}}}, tmp_path / "ten.pth")

    out = _train(tmp_path, capsys, config, "--data", data, "--slice", 640, "--work-dir", tmp_path / "w",
                 "--cfg-options", f"load_from={tmp_path / 'ten.pth'}", "optim_wrapper.optimizer.lr=0")
    assert "pedestrian" in out.out and "crops" in out.out  # the data summary
    assert "its classes (10 (pedestrian, people, bicycle, car, ...)) differ from the data's 5 " \
           "(pedestrian, car, van, truck, ...): kept backbone, neck and box branches" in out.err.replace("\n", " ")
    ckpt = _checkpoint(tmp_path / "w")
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == bench.CLASSES
    state = ckpt["state_dict"]
    for key in ("backbone.conv1.weight", "neck.fpn_convs.0.conv.weight", "bbox_head.tood_reg.weight"):
        assert torch.equal(state[key], old[key]), key  # lr 0: as loaded
    assert "keep the trained weights of the 5 classes shared by name" in out.err.replace("\n", " ")
    rows = [VISDRONE.index(name) for name in bench.CLASSES]  # pedestrian, car, van, truck, bus: 0, 3, 4, 5, 8
    for key in ("bbox_head.tood_cls.weight", "bbox_head.tood_cls.bias"):
        assert old[key].shape[0] == 10 and torch.equal(state[key], old[key][rows]), key
    assert _metric_names(tmp_path / "w") <= set(bench.CLASSES)
    crops = json.loads((tmp_path / "w/data/labels/annotations/train_sliced_labels.json").read_text())
    assert len(crops["images"]) > 2 and [c["name"] for c in crops["categories"]] == list(bench.CLASSES)
    _infer_and_evaluate(tmp_path, capsys, config, tmp_path / "w", data, bench.CLASSES)


@needs_real
def test_real_coco_json_human_vehicle_afmnet_one_epoch(tmp_path, capsys, monkeypatch):
    """The shared COCO json (categories 0 human, 1 vehicle; 2 of its 50 images are in
    visdrone-real) as a COCO dataset yaml (train and val): tiny AFMNet one epoch, the names in
    the checkpoint and the metrics; then sliced inference and `afm evaluate --gt DATA`."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dataset = open_dataset(COCO_SAMPLE, VISDRONE)
    assert dataset.classes == ("human", "vehicle")
    split = dataset.read("train")
    assert split.counts["images"] == 2 and split.counts["labels missing images"] == 48
    data = tmp_path / "coco.yaml"
    data.write_text(f"format: coco\ntrain: {{ann: {COCO_SAMPLE}, images: {VISDRONE}}}\n"
                    f"val: {{ann: {COCO_SAMPLE}, images: {VISDRONE}}}\n")
    config = bench.tiny_config(tmp_path / "user.py", base="afmnet_tiny_synth.py", scale=320, epochs=1)
    _train(tmp_path, capsys, config, "--data", data, "--work-dir", tmp_path / "w")
    ckpt = _checkpoint(tmp_path / "w")
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == ("human", "vehicle")
    assert ckpt["state_dict"]["hd_head.tood_cls.weight"].shape[0] == 2
    assert _metric_names(tmp_path / "w") == {"human", "vehicle"}
    _infer_and_evaluate(tmp_path, capsys, config, tmp_path / "w", data, ("human", "vehicle"))


@needs_real
def test_yolo_reader_matches_the_hand_conversion(tmp_path):
    """afm's YOLO reader against the independent by-hand conversion (bench_own_data)."""
    data = bench.make_yolo_5class(tmp_path / "yolo")
    hand = bench.hand_convert(data.parent, tmp_path / "hand")
    dataset = open_dataset(data)
    for name in ("train", "val"):
        split = dataset.read(name)
        ref = json.loads(hand[name].read_text())
        assert [r["file_name"] for r in split.records] == [i["file_name"] for i in ref["images"]]
        assert [(r["width"], r["height"]) for r in split.records] == [(i["width"], i["height"]) for i in ref["images"]]
        ours = [(k + 1, a["category_id"], a["bbox"]) for k, lab in enumerate(split.labels) for a in lab.annotations]
        theirs = [(a["image_id"], a["category_id"], a["bbox"]) for a in ref["annotations"]]
        assert [o[:2] for o in ours] == [t[:2] for t in theirs]
        np.testing.assert_allclose([o[2] for o in ours], [t[2] for t in theirs], atol=1e-3)
        assert split.counts["labels"] == len(ref["annotations"]) > 20


def test_planned_paths_are_where_prepare_data_writes(tmp_path):
    """The other ranks of a distributed run point their config where rank 0 wrote."""
    data = _tiny_yolo(tmp_path)
    written = prepare_data(data, tmp_path / "w", slice_size=64)
    planned = prepare_data(data, tmp_path / "w", slice_size=64, write=False)
    for a, b in zip(written.splits, planned.splits):
        assert (a.name, a.ann_file, a.images, a.sliced_ann_file, a.sliced_images) == \
            (b.name, b.ann_file, b.images, b.sliced_ann_file, b.sliced_images)
    assert planned.classes == written.classes and planned.val.name == "val"


@pytest.mark.slow
def test_data_with_two_cpu_processes(tmp_path):
    """torchrun, 2 processes, --data: rank 0 writes the data, rank 1 waits and reads it."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = _tiny_yolo(tmp_path)
    config = bench.tiny_config(tmp_path / "user.py", scale=128, epochs=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "afmcli", "train", str(config), "--launcher", "pytorch", "--data", str(data),
           "--work-dir", str(tmp_path / "w"), "--cfg-options", "train_dataloader.batch_size=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("--data") == 1  # one summary: rank 0's
    ckpt = _checkpoint(tmp_path / "w")
    assert tuple(ckpt["meta"]["dataset_meta"]["classes"]) == ("boat", "car", "person")


@needs_real
def test_real_coco_json_convert_sliced_from_the_cli(tmp_path, capsys):
    from test_data_convert import _run

    code, out = _run(capsys, "convert", str(COCO_SAMPLE), str(tmp_path / "D"), "--images", str(VISDRONE),
                     "--slice", "640", "--workers", "1")
    assert code == 0, out.err
    text = " ".join(out.out.split())
    assert "coco: human, vehicle" in text and "labels missing images │ 48" in text
    for name in ("train_labels.json", "train_sliced_labels.json"):
        coco = json.loads((tmp_path / "D/labels/annotations" / name).read_text())
        assert [c["name"] for c in coco["categories"]] == ["human", "vehicle"]
        assert {a["category_id"] for a in coco["annotations"]} == {1, 2}
    crops = json.loads((tmp_path / "D/labels/annotations/train_sliced_labels.json").read_text())
    assert {Path(i["file_name"]).parent.as_posix() for i in crops["images"]} == {"images"}  # its sub-folder kept
    assert all((tmp_path / "D/images/train_sliced" / i["file_name"]).is_file() for i in crops["images"])


def test_num_classes_of_a_two_stage_model_leave_the_rpn_alone():
    from mmengine.config import ConfigDict

    from afmcli.engine.class_keys import set_num_classes

    model = ConfigDict(rpn_head=dict(num_classes=1), roi_head=dict(bbox_head=[dict(num_classes=80), dict(num_classes=80)]))
    assert set_num_classes(model, 5) == 2 and num_classes_in(model) == [5, 5]
    assert model.rpn_head.num_classes == 1


def test_prepare_data_keeps_an_unchanged_split_and_redoes_a_changed_one(tmp_path):
    data = _tiny_yolo(tmp_path)
    first = prepare_data(data, tmp_path / "w", slice_size=64)
    stamps = {s.name: (s.ann_file.stat().st_mtime_ns, s.images.stat().st_mtime_ns) for s in first.splits}
    again = prepare_data(data, tmp_path / "w", slice_size=64)
    assert all(s.stats.reused for s in again.splits)
    assert {s.name: (s.ann_file.stat().st_mtime_ns, s.images.stat().st_mtime_ns) for s in again.splits} == stamps
    assert again.train.stats.crops == first.train.stats.crops > 0
    (data.parent / "labels" / "val" / "0.txt").write_text("1 0.25 0.5 0.25 0.25\n")
    changed = prepare_data(data, tmp_path / "w", slice_size=64)
    assert changed.train.stats.reused and not changed.val.stats.reused
    coco = json.loads(changed.val.ann_file.read_text())
    assert coco["annotations"][0]["category_id"] == 2 and coco["annotations"][0]["bbox"] == [16, 36, 32, 24]
    other = prepare_data(data, tmp_path / "w", slice_size=32)  # other options: cut again
    assert not other.train.stats.reused


def test_data_options_without_data_are_refused(tmp_path, capsys):
    from test_data_convert import _run

    code, out = _run(capsys, "train", str(ROOT / "configs/AFM/tood_tiny_synth.py"), "--slice", "640")
    assert code == 2 and out.err.strip() == "afm: error: --images, --slice, --overlap and --skip-bad go with --data DATA"
    code, out = _run(capsys, "train", str(ROOT / "configs/AFM/tood_tiny_synth.py"), "--data", str(_tiny_yolo(tmp_path)),
                     "--data-root", str(tmp_path))
    assert code == 2 and "--data and --data-root both name the data: give one" in out.err
