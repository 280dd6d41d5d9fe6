"""Sliced inference: ours (true batches) beside SAHI, and slicing vs full image alone.

    .venv/bin/python bench/bench_infer.py [--val-images 4] [--size 1600x1000] [--slice 512]
        [--batch-sizes 1 8 32] [--workers 4] [--train-iters 200] [--work /tmp/afm_bench_infer] [--device cuda:0]

In one run, on `afm synth` data:
1. trains the tiny plain-mmdet TOOD (tests/fixtures/tiny_tood.py) for --train-iters
   steps on 512x512 synth images (cached in --work), so the detector finds things;
2. runs the same model, images, tiles (SAHI placement, --slice, --overlap 0.25), full-image
   pass and fusion (class-aware NMS, IoU 0.6) through
   - SAHI: sahi.models.mmdet.MmdetDetectionModel + sahi.predict.get_sliced_prediction
     (one tile per forward pass, mmdet's DetInferencer pipeline), and
   - ours: afmcli.inference (the `afm infer` path) at batch 1 and at each of --batch-sizes,
     in each of --precisions (fp16: `afm infer --fp16`), with --fuse-conv-bn: BatchNorms folded,
     with --device-tiles: also with the tiles cut and resized on the device, with
     --channels-last: also the last precision's model in channels-last memory;
   - with --workers N: `afm infer` itself, files to files (decoding in N workers, pinned
     memory on CUDA), at each batch size; its time includes decoding and writing;
   and reports images/s, the ratio, whether the detections are the same (matched count,
   max box / score difference) and, on CUDA, the GPU's mean utilisation while each ran
   (nvidia-smi, sampled every 50 ms);
3. evaluates (afmcli.evaluation: COCO view with AP_small / AP_tiny, and the VisDrone
   toolkit's AP) slicing + fusion vs the full-image pass alone vs SAHI.
Timings exclude model loading; images are read before timing. Each table prints as soon as
it is complete (speed, accuracy, then `afm infer` files to files), so a run cut short by a
time limit keeps what it finished; --max-time bounds the interleaved loop (the images
started by then are finished by every pipeline, the tables say how many ran).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import afmcli
from afmcli.cli import main as afm
from afmcli.data.layout import DatasetPaths
from afmcli.detections import Detections, detections_to_results
from afmcli.inference.fusion import overlap
from afmcli.inference.predict import PredictSettings, image_units, predict_units
from afmcli.io import write_json

CONFIG = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny_tood.py"
MAX_DETS = 100_000  # no cap while comparing with SAHI (its NMS path has none)


def quiet(*args):
    """Run an `afm` subcommand, discarding its table."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        afm(list(map(str, args)))


def make_data(work: Path, val_images: int, size: tuple[int, int]) -> None:
    if not (work / "Datasets" / "labels" / "annotations" / "train_labels.json").is_file():
        quiet("synth", work / "synth_train", "--split", "train", "--images", 60, "--width", 512,
              "--height", 512, "--seed", 1)
        quiet("convert-visdrone", work / "synth_train", work / "Datasets", "--split", "train")
    if not val_split(work).ann_file.is_file():
        quiet("synth", work / "synth_val", "--split", "val", "--images", val_images, "--width", size[0],
              "--height", size[1], "--seed", 2)
        quiet("convert-visdrone", work / "synth_val", work / "Datasets", "--split", "val")


def train(work: Path, iters: int, device: str = "cpu") -> Path:
    """A short AdamW run of the tiny TOOD (batch 2); the checkpoint is cached per iteration count."""
    ckpt = work / f"tiny_tood_{iters}.pth"
    if ckpt.is_file():
        return ckpt
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper
    from mmdet.datasets import CocoDataset
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(CONFIG))
    torch.manual_seed(0)
    random.seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device)  # the data preprocessor moves each batch to the model's device
    dataset = CocoDataset(
        data_root=str(work / "Datasets"), ann_file="labels/annotations/train_labels.json",
        data_prefix=dict(img="images/train/"), metainfo=dict(classes=cfg.classes),
        filter_cfg=dict(filter_empty_gt=True), pipeline=[
            dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
            dict(type="Resize", scale=(512, 512), keep_ratio=True), dict(type="RandomFlip", prob=0.5),
            dict(type="PackDetInputs")])
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=10))
    model.train()
    from mmengine.logging import MessageHub

    hub = MessageHub.get_current_instance()  # TOODHead reads the epoch from here (the Runner sets it)
    hub.update_info("epoch", 0)  # ATSS assignment first
    start = time.perf_counter()
    for it in range(iters):
        for group in optim.optimizer.param_groups:  # linear warm-up over 50 steps
            group["lr"] = 2e-3 * min(1.0, (it + 1) / 50)
        if it == iters // 3:
            hub.update_info("epoch", model.bbox_head.initial_epoch)  # then task-aligned assignment
        losses = model.train_step(pseudo_collate([dataset[random.randrange(len(dataset))] for _ in range(2)]), optim)
        if it % 50 == 0 or it == iters - 1:
            print(f"train {it + 1}/{iters}: loss {float(losses['loss']):.3f} ({time.perf_counter() - start:.0f} s)")
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": cfg.classes}}}, ckpt)
    return ckpt


def ours_one(model, image, args, batch_size, slices=True, device_tiles=False) -> Detections:
    """One image through the `afm infer` path (tiles in batches + full pass, fused): afmcli.predict."""
    return afmcli.predict(model, image, slice=args.slice, overlap=args.overlap, batch_size=batch_size,
                          slices=slices, score_thr=args.score_thr, max_per_img=MAX_DETS, device_tiles=device_tiles)


def ours_raw(model, image, args, batch_size) -> Detections:
    """The tile and full-image detections of one image before fusion, as `afm infer` records them."""
    s = PredictSettings(slice_size=args.slice, overlap=args.overlap, batch_size=batch_size,
                        score_thr=args.score_thr, max_per_img=MAX_DETS)
    ((_, result, _),) = predict_units(model, image_units(1, image, model.pipeline, s), list(range(1, 11)), s)
    return Detections.concat([result.slices, result.full])


def sahi_model(ckpt: Path, args):
    from sahi.models.mmdet import MmdetDetectionModel

    return MmdetDetectionModel(model_path=str(ckpt), config_path=str(CONFIG), device=args.device,
                               confidence_threshold=args.score_thr, load_at_init=True)


def sahi_one(model, image, args, iou: float = 0.6) -> Detections:
    from sahi.predict import get_sliced_prediction

    result = get_sliced_prediction(
        image[:, :, ::-1].copy(), model, slice_height=args.slice, slice_width=args.slice,  # SAHI wants RGB
        overlap_height_ratio=args.overlap, overlap_width_ratio=args.overlap,
        perform_standard_pred=True, postprocess_type="NMS", postprocess_match_metric="IOU",
        postprocess_match_threshold=iou, postprocess_class_agnostic=False, verbose=0)
    preds = result.object_prediction_list
    return Detections(np.array([p.bbox.to_xyxy() for p in preds]).reshape(-1, 4), [p.score.value for p in preds],
                      [p.category.id + 1 for p in preds])


def compare(ours: list[Detections], theirs: list[Detections]) -> tuple[int, int, int, float, float]:
    """(ours, theirs, matched, max box diff, max score diff): each of our boxes, best
    score first, takes the free same-class SAHI box nearest in (box, score), if their
    IoU > 0.99."""
    n_ours = n_theirs = matched = 0
    box_diff = score_diff = 0.0
    for a, b in zip(ours, theirs):
        n_ours, n_theirs = n_ours + len(a), n_theirs + len(b)
        free = np.ones(len(b), bool)
        for i in np.argsort(-a.scores, kind="stable"):
            cand = np.flatnonzero(free & (b.labels == a.labels[i]))
            if not len(cand):
                continue
            dist = np.abs(b.boxes[cand] - a.boxes[i]).max(axis=1) + 1000 * np.abs(b.scores[cand] - a.scores[i])
            j = cand[np.argmin(dist)]
            if overlap(a.boxes[i], b.boxes[j:j + 1], "iou")[0] > 0.99:
                free[j] = False
                matched += 1
                box_diff = max(box_diff, float(np.abs(a.boxes[i] - b.boxes[j]).max()))
                score_diff = max(score_diff, abs(float(a.scores[i] - b.scores[j])))
    return n_ours, n_theirs, matched, box_diff, score_diff


def val_split(work: Path) -> DatasetPaths:
    """The synth val split of --work (its labels and images)."""
    return DatasetPaths(work / "Datasets", "val")


def evaluate(work: Path, labels: Path, image_ids: list[int], dets: list[Detections], tag: str) -> dict[str, float]:
    pred = work / f"pred_{tag}.json"
    write_json(pred, [r for i, d in zip(image_ids, dets) for r in detections_to_results(i, d.top(500))])
    return evaluate_file(labels, pred)


def evaluate_file(labels: Path, pred: Path) -> dict[str, float]:
    m = afmcli.evaluate(labels, pred)
    coco, vd = m["coco"], m["visdrone"]
    return {"AP": coco["AP"], "AP50": coco["AP50"], "AP_small": coco["AP_small"], "AP_tiny": coco["AP_tiny"],
            "VisDrone AP": vd["AP"], "VisDrone AP50": vd["AP50"]}


def afm_infer_files(ckpt: Path, args, batch_size: int) -> tuple[float, Path]:
    """`afm infer` files to files (decoding in --workers processes, pinned memory on CUDA,
    streaming records, final files): seconds without model loading, and predictions.json."""
    from afmcli.inference.run import InferSettings, run_inference

    out = args.work / f"afm_infer_b{batch_size}_w{args.workers}"
    settings = InferSettings(slice_size=args.slice, overlap=args.overlap, batch_size=batch_size,
                             score_thr=args.score_thr, max_per_img=500)
    load = time.perf_counter()
    afmcli.load_model(CONFIG, ckpt, device=args.device)  # what run_inference's own load costs, taken off below
    load = time.perf_counter() - load
    stats = run_inference(CONFIG, ckpt, val_split(args.work).images, out, settings,
                          device=args.device, workers=args.workers, overwrite=True)
    return stats.seconds - load, out / "predictions.json"


class GpuUtilisation:
    """Mean GPU utilisation (nvidia-smi's, percent) while each named pipeline runs: a thread
    samples every 50 ms and books each sample to the pipeline running at that moment."""

    def __init__(self, device: str):
        self.index = torch.device(device).index or 0
        self.samples: dict[str, list[float]] = {}
        self.current: str | None = None
        self.enabled = device.startswith("cuda") and shutil.which("nvidia-smi") is not None
        if self.enabled:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            out = subprocess.run(["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            name = self.current
            if name is not None and out.strip().isdigit():
                self.samples.setdefault(name, []).append(float(out))
            time.sleep(0.05)

    def mean(self, name: str) -> str:
        values = self.samples.get(name)
        return f"{np.mean(values):.0f}%" if values else "-"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-images", type=int, default=4)
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--slice", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8], help="tiles per forward pass")
    parser.add_argument("--workers", type=int, default=0, help="> 0: also time `afm infer` files to files "
                        "with this many decoding workers, at each batch size")
    parser.add_argument("--score-thr", type=float, default=0.01)
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/afm_bench_infer"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda:0 (both runs use it)")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "fp16"), default=["fp32"],
                        help="ours: fp32 and/or fp16 (afm infer --fp16) rows")
    parser.add_argument("--fuse-conv-bn", action="store_true", help="ours: backbone BatchNorms folded")
    parser.add_argument("--device-tiles", action="store_true", help="ours: also rows with the tiles cut on "
                        "the device (afm infer --device-tiles)")
    parser.add_argument("--channels-last", action="store_true", help="ours: also rows of the last precision's "
                        "model in channels-last memory (afm infer --channels-last), at each --batch-sizes")
    parser.add_argument("--max-time", type=float, default=None, help="seconds for the interleaved loop: "
                        "no image starts after that (default: every image)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    args.work.mkdir(parents=True, exist_ok=True)

    make_data(args.work, args.val_images, size)
    ckpt = train(args.work, args.train_iters, args.device)
    gt = json.loads(val_split(args.work).ann_file.read_text())
    image_ids = [img["id"] for img in gt["images"]]
    images = [cv2.imread(str(val_split(args.work).images / img["file_name"])) for img in gt["images"]]
    models = {p: afmcli.load_model(CONFIG, ckpt, device=args.device, fp16=p == "fp16",
                                   fuse_conv_bn=args.fuse_conv_bn) for p in args.precisions}
    model = next(iter(models.values()))
    # (precision label, model, batch sizes): channels-last beside the last precision only (fp16
    # in the GPU call), so that the rows, and the time they take, grow by --batch-sizes alone
    batch_sizes = sorted({1, *args.batch_sizes})
    variants = [(p, m, batch_sizes) for p, m in models.items()]
    if args.channels_last:
        last = args.precisions[-1]
        nhwc = afmcli.load_model(CONFIG, ckpt, device=args.device, fp16=last == "fp16",
                                 fuse_conv_bn=args.fuse_conv_bn, channels_last=True)
        variants.append((f"{last}, channels-last", nhwc, sorted(args.batch_sizes)))

    sahi = sahi_model(ckpt, args)
    runs = {"SAHI (1 tile / pass)": lambda im: sahi_one(sahi, im, args)}
    tilings = [False, True] if args.device_tiles else [False]
    ours = {f"ours, batch {b}{'' if p == 'fp32' else ', ' + p}{', device tiles' if t else ''}":
            (lambda im, b=b, m=m, t=t: ours_one(m, im, args, b, device_tiles=t))
            for p, m, sizes in variants for t in tilings for b in sizes}
    runs.update(ours)
    runs["ours, full image only"] = lambda im: ours_one(model, im, args, 1, slices=False)
    for run in runs.values():  # warm-up (allocator, thread pools)
        run(images[0])
    # Interleaved per image, so that load from other processes hits every pipeline alike.
    dets = {name: [] for name in runs}
    secs = dict.fromkeys(runs, 0.0)
    gpu = GpuUtilisation(args.device)
    loop_start = time.perf_counter()
    for done, image in enumerate(images):
        if args.max_time is not None and done and time.perf_counter() - loop_start > args.max_time:
            break
        for name, run in runs.items():
            gpu.current = name
            start = time.perf_counter()
            dets[name].append(run(image))
            secs[name] += time.perf_counter() - start
            gpu.current = None
    sahi_name = next(iter(runs))
    t_sahi = secs[sahi_name]
    n = len(dets[sahi_name])
    speed = Table(title=f"{n} of {len(images)} images {size[0]}x{size[1]}, slice {args.slice}, overlap {args.overlap}, "
                        f"score >= {args.score_thr}, NMS 0.6{', BNs folded' if args.fuse_conv_bn else ''} "
                        f"({device_name(args.device)})")
    for col in ("pipeline", "seconds", "images/s", "speed vs SAHI", "detections", "matched to SAHI",
                "max box diff (px)", "max score diff", "GPU busy"):
        speed.add_column(col, justify="right")
    for name in runs:
        if name.endswith("full image only"):
            speed.add_row(name, f"{secs[name]:.2f}", f"{n / secs[name]:.3f}", f"{t_sahi / secs[name]:.2f}x",
                          str(sum(map(len, dets[name]))), "-", "-", "-", gpu.mean(name))
            continue
        n_ours, n_sahi, matched, box_diff, score_diff = compare(dets[name], dets[sahi_name])
        speed.add_row(name, f"{secs[name]:.2f}", f"{n / secs[name]:.3f}", f"{t_sahi / secs[name]:.2f}x",
                      str(n_ours), f"{matched}/{n_sahi}", f"{box_diff:.4f}", f"{score_diff:.2e}", gpu.mean(name))
    # Before fusion (SAHI's NMS at IoU > 1 keeps everything): the raw tile + full-image boxes.
    raw_ours = ours_raw(model, images[0], args, batch_sizes[-1])
    n_ours, n_sahi, matched, box_diff, score_diff = compare([raw_ours], [sahi_one(sahi, images[0], args, 1.01)])
    speed.add_row("raw, before fusion (image 1)", "-", "-", "-", str(n_ours), f"{matched}/{n_sahi}",
                  f"{box_diff:.4f}", f"{score_diff:.2e}", "-")
    console = Console(width=160)
    console.print(speed)
    gt_path = labels_of(args.work, gt, n)
    accuracy = Table(title=f"Accuracy on {n} synth val images (percent; COCO view and VisDrone toolkit)")
    results = {"full image only": evaluate(args.work, gt_path, image_ids, dets["ours, full image only"], "full")}
    results.update({f"slices + full, fused ({name})": evaluate(
        args.work, gt_path, image_ids, dets[name], name.replace(", ", "_").replace(" ", "")) for name in ours})
    results["SAHI"] = evaluate(args.work, gt_path, image_ids, dets[sahi_name], "sahi")
    console.print(metrics_table(accuracy, results))
    if args.workers > 0:  # includes decoding and writing; SAHI's time does not
        scaled = f" (SAHI's time scaled from {n})" if n < len(images) else ""
        files = Table(title=f"`afm infer` files to files, all {len(images)} images, --workers {args.workers}{scaled}")
        files_results = {}
        for col in ("pipeline", "seconds", "images/s", "speed vs SAHI"):
            files.add_column(col, justify="right")
        for b in batch_sizes:
            name = f"afm infer files->files, batch {b}"
            sec, pred = afm_infer_files(ckpt, args, b)
            files.add_row(name, f"{sec:.2f}", f"{len(images) / sec:.3f}", f"{t_sahi / n * len(images) / sec:.2f}x")
            files_results[name] = evaluate_file(val_split(args.work).ann_file, pred)
        console.print(files)
        console.print(metrics_table(Table(title="Accuracy of `afm infer` files to files, all images"), files_results))


def labels_of(work: Path, gt: dict, n: int) -> Path:
    """The val labels of the first ``n`` images (all of them: the file itself)."""
    if n == len(gt["images"]):
        return val_split(work).ann_file
    keep = {img["id"] for img in gt["images"][:n]}
    path = work / f"val_labels_first{n}.json"
    # Every per-image record list (annotations, VisDrone's "others") keeps those images' records.
    write_json(path, {key: [r for r in value if r.get("image_id", -1) in keep]
                      if key not in ("images", "categories") and isinstance(value, list) else value
                      for key, value in {**gt, "images": gt["images"][:n]}.items()})
    return path


def metrics_table(table: Table, results: dict[str, dict[str, float]]) -> Table:
    table.add_column("detections")
    for key in next(iter(results.values())):
        table.add_column(key, justify="right")
    for name, res in results.items():
        table.add_row(name, *["-" if v is None else f"{v:.2f}" for v in res.values()])  # None: no objects
    return table


if __name__ == "__main__":
    main()
