"""`afm train CONFIG --data data.yaml` against the same YOLO data converted by hand to afm's
layout with a hand-edited config (the 8 keys mmdet users set): same seed, same metrics?
And the setup time of each.

The data: a 5-class YOLO dataset (pedestrian, car, van, truck, bus) built from the real
VisDrone images and labels in ../shared/data/visdrone-real (images linked, never copied).

    .venv/bin/python bench/bench_own_data.py                 # 4 train + 2 val images, 2 epochs
    .venv/bin/python bench/bench_own_data.py --epochs 3 --out /tmp/own

The hand conversion here is written from the formats' documentation (ultralytics' label
format, COCO's bbox), independently of afmcli's readers: the tests use it as the reference
for afm's YOLO reader.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AFM_SHARED", ROOT.parent / "shared"))
VISDRONE = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"
CLASSES = ("pedestrian", "car", "van", "truck", "bus")
VISDRONE_IDS = (1, 4, 5, 6, 9)  # VisDrone's ids of CLASSES
TRAIN = ("0000107_01998_d_0000054", "0000182_00411_d_0000037", "0000199_00000_d_0000162",
         "0000239_08430_d_0000022")
VAL = ("0000201_00446_d_0000173", "0000243_01000_d_0000003")


def make_yolo_5class(out: Path, train=TRAIN, val=VAL, src: Path = VISDRONE) -> Path:
    """A YOLO dataset of VisDrone images (linked) with 5-class labels; returns its data.yaml.
    Boxes are clipped to the image, as a converter writing YOLO labels must."""
    from PIL import Image

    for split, stems in (("train", train), ("val", val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            image = src / "images" / f"{stem}.jpg"
            link = out / "images" / split / image.name
            if not link.exists():
                link.symlink_to(image)
            with Image.open(image) as img:
                width, height = img.size
            lines = []
            for raw in (src / "annotations" / f"{stem}.txt").read_text().splitlines():
                values = [int(v) for v in raw.strip().rstrip(",").split(",") if v != ""]
                if len(values) < 8 or values[4] != 1 or values[5] not in VISDRONE_IDS:
                    continue
                x1, y1 = max(values[0], 0), max(values[1], 0)
                x2, y2 = min(values[0] + values[2], width), min(values[1] + values[3], height)
                if x2 <= x1 or y2 <= y1:
                    continue
                lines.append(f"{VISDRONE_IDS.index(values[5])} {(x1 + x2) / 2 / width:.6f} "
                             f"{(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n")
            (out / "labels" / split / f"{stem}.txt").write_text("".join(lines))
    names = "".join(f"  {k}: {n}\n" for k, n in enumerate(CLASSES))
    (out / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return out / "data.yaml"


def hand_convert(yolo_root: Path, out: Path) -> dict[str, Path]:
    """YOLO -> COCO json + linked images, the way a user writes it by hand; {split: json}."""
    from PIL import Image

    jsons = {}
    for split in ("train", "val"):
        images = sorted((yolo_root / "images" / split).glob("*.jpg"))
        coco = {"images": [], "annotations": [],
                "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for image_id, image in enumerate(images, start=1):
            with Image.open(image) as img:
                width, height = img.size
            link = out / "images" / split / image.name
            if not link.exists():
                link.symlink_to(image.resolve())
            coco["images"].append({"id": image_id, "file_name": image.name, "width": width, "height": height})
            for line in (yolo_root / "labels" / split / f"{image.stem}.txt").read_text().splitlines():
                c, xc, yc, w, h = (float(v) for v in line.split())
                box = [(xc - w / 2) * width, (yc - h / 2) * height, w * width, h * height]
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                            "category_id": int(c) + 1, "bbox": box, "area": box[2] * box[3],
                                            "iscrowd": 0})
        (out / "labels" / "annotations").mkdir(parents=True, exist_ok=True)
        jsons[split] = out / "labels" / "annotations" / f"{split}_labels.json"
        jsons[split].write_text(json.dumps(coco))
    return jsons


def tiny_config(path: Path, base: str = "tood_tiny_synth.py", scale: int = 512, epochs: int = 2) -> Path:
    """A user's config inheriting a shipped tiny config: smaller images, ``epochs`` epochs."""
    path.write_text(f"""_base_ = '{ROOT / 'configs' / 'AFM' / base}'
img_scale = ({scale}, {scale})
train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True), dict(type='RandomFlip', prob=0.5),
    dict(type='RenderObjectMasks', strides=(8, 16), kind='oval', small_area=32 * 32),
    dict(type='PackAFMInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=4)]
default_hooks = dict(checkpoint=dict(interval={epochs}), logger=dict(interval=1))
""")
    return path


def hand_config(path: Path, base: Path, root: Path) -> Path:
    """The keys a user sets by hand for a 5-class dataset in afm's layout (afm's VisDroneMetric,
    inherited, scores any class list: only its ann_file changes)."""
    path.write_text(f"""_base_ = '{base}'
classes = {CLASSES!r}
data_root = '{root}/'
model = dict(bbox_head=dict(num_classes=5))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                        ann_file='labels/annotations/train_labels.json', data_prefix=dict(img='images/train/')))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                      ann_file='labels/annotations/val_labels.json', data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'labels/annotations/val_labels.json', classwise=True)
test_evaluator = val_evaluator
""")
    return path


def _scalars(work_dir: Path) -> tuple[dict, list]:
    """The last validation's metrics and every training iteration's loss."""
    logs = sorted(work_dir.glob("*/vis_data/scalars.json"))
    rows = [json.loads(line) for line in logs[-1].read_text().splitlines()]
    metrics = {k: v for row in rows if "coco/bbox_mAP" in row for k, v in row.items() if k.startswith("coco/")}
    return metrics, [row["loss"] for row in rows if "loss" in row]


def _afm(*argv: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "afmcli", *argv], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_own_data"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scale", type=int, default=512)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_yaml = make_yolo_5class(out / "yolo")
    config = tiny_config(out / "user_tiny.py", scale=args.scale, epochs=args.epochs)

    start = time.perf_counter()
    hand_convert(out / "yolo", out / "by_hand")
    convert_s = time.perf_counter() - start
    hand = hand_config(out / "hand_tiny.py", config, out / "by_hand")
    hand_s = _afm("train", str(hand), "--work-dir", str(out / "work_hand"))

    sys.path.insert(0, str(ROOT))
    from afmcli.engine.data_config import prepare_data

    start = time.perf_counter()
    prepare_data(data_yaml, out / "work_prepare_only")
    prepare_s = time.perf_counter() - start
    data_s = _afm("train", str(config), "--data", str(data_yaml), "--work-dir", str(out / "work_data"))

    (by_hand, hand_loss), (by_data, data_loss) = _scalars(out / "work_hand"), _scalars(out / "work_data")
    print(f"{'metric':28} {'by hand':>9} {'--data':>9}")
    for key in sorted(by_hand):
        print(f"{key:28} {by_hand[key]:9.4f} {by_data.get(key, float('nan')):9.4f}")
    same = json.dumps(by_hand, sort_keys=True) == json.dumps(by_data, sort_keys=True)  # nan == nan here
    print(f"metrics equal: {same}; training losses equal at all {len(hand_loss)} logged iterations: "
          f"{hand_loss == data_loss} (first {hand_loss[0]:.4f}, last {hand_loss[-1]:.4f})")
    print(f"data setup: by hand (conversion script) {convert_s:.2f} s + a config with 6 keys; "
          f"--data (read, check, link, json) {prepare_s:.2f} s, no config edits")
    print(f"whole run (afm train, {args.epochs} epochs): by hand {hand_s:.1f} s, --data {data_s:.1f} s")


if __name__ == "__main__":
    main()
