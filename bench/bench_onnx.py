"""ONNX Runtime against PyTorch eager on the CPU, beside SAHI; then INT8.

    .venv/bin/python bench/bench_onnx.py [--val-images 4] [--size 1600x1000] [--slice 512]
        [--batch-sizes 1 8 32] [--threads 1] [--train-iters 200] [--int8] [--calib-images 8]
        [--real DIR --real-images 4] [--work /tmp/afm_bench_infer] [--device cuda:0 [--fp16]]

In one run: the tiny plain-mmdet TOOD of bench/bench_infer.py (trained there on `afm synth`
data for --train-iters steps, cached in --work), exported with `afm export` (and with
--int8, `afm export --int8 --calib` on the synth train images); then each row in its own
process (so its peak memory is its own), the same images, tiles (--slice, overlap 0.25),
full-image pass and NMS fusion through
- PyTorch: afmcli.predict on the mmdet model (`afm infer CONFIG CKPT`), at each batch size;
- ONNX Runtime: afmcli.predict on the exported model (`afm infer MODEL.onnx`), same batches;
- SAHI: sahi.predict.get_sliced_prediction on the mmdet model (one tile per pass);
with --threads torch / ONNX Runtime threads each. Reported: tiles/s, images/s, the ratio
to PyTorch at the same batch, peak RSS of the process, the COCO AP / AP50 of the synth val
images, and the largest difference of the detections from PyTorch's at that batch. With
--real: also the speed on the first --real-images photos of that folder (no labels read).
With --device cuda:N the rows are the GPU's instead: PyTorch (and with --fp16 `afm infer
--fp16`) against ONNX Runtime's CUDA and TensorRT execution providers (with --fp16 TensorRT in
fp16), no SAHI, no INT8 (a row whose provider is missing says so and is skipped).
Timings exclude loading; images are read before timing; one warm-up image first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_infer import CONFIG, MAX_DETS, evaluate_file, make_data, quiet, train, val_split  # noqa: E402


LABELS = {"torch": "PyTorch eager", "torch-fp16": "PyTorch eager fp16", "onnx": "ONNX Runtime",
          "onnx-int8": "ONNX Runtime INT8", "onnx-cuda": "ONNX Runtime CUDA", "onnx-trt": "ONNX Runtime TensorRT",
          "onnx-trt-fp16": "ONNX Runtime TensorRT fp16", "sahi": "SAHI (mmdet)"}


def row(args) -> None:
    """One row in this process: print its numbers as JSON."""
    import torch

    import afmcli
    from afmcli.data.images import read_image
    from afmcli.detections import detections_to_results
    from afmcli.inference.tiles import plan_windows
    from afmcli.io import write_json

    torch.set_num_threads(args.threads)
    kind, batch = args.row.split(":")
    images = [read_image(p) for p in args.images]
    if kind.startswith("onnx-cuda") or kind.startswith("onnx-trt"):
        import onnxruntime as ort

        needed = "TensorrtExecutionProvider" if "trt" in kind else "CUDAExecutionProvider"
        if needed not in ort.get_available_providers():
            print(json.dumps(dict(skipped=f"no {needed} in this onnxruntime")))
            return
    if kind == "sahi":
        from bench_infer import sahi_model, sahi_one

        args.device, args.score_thr, args.overlap = "cpu", 0.01, 0.25
        model = sahi_model(Path(args.ckpt), args)
        run = lambda image: sahi_one(model, image, args)  # noqa: E731
    else:
        index = args.device.split(":")[1] if ":" in args.device else "0"
        if kind.startswith("onnx"):
            device = {"onnx-cuda": f"cuda:{index}", "onnx-trt": f"tensorrt:{index}",
                      "onnx-trt-fp16": f"tensorrt:{index}"}.get(kind, "cpu")
            model = afmcli.load_model(args.onnx, device=device, threads=args.threads)
            if kind == "onnx-trt-fp16":  # TensorRT builds its engine in fp16
                model.set_provider_options(trt_fp16_enable=True)
        else:
            model = afmcli.load_model(CONFIG, args.ckpt, device=args.device, fp16=kind == "torch-fp16")
        run = lambda image: afmcli.predict(model, image, slice=args.slice, overlap=0.25,  # noqa: E731
                                           batch_size=int(batch), score_thr=0.01, max_per_img=MAX_DETS)
    run(images[0])  # warm-up
    start = time.perf_counter()
    dets = [run(image) for image in images]
    seconds = time.perf_counter() - start
    tiles = sum(len(plan_windows(*im.shape[:2], args.slice, 0.25)) for im in images)
    write_json(Path(args.dets), [r for i, d in zip(args.ids, dets) for r in detections_to_results(i, d.top(500))])
    print(json.dumps(dict(seconds=seconds, images=len(images), tiles=tiles, rss_mb=peak_rss_mb())))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: its own, unlike getrusage's ru_maxrss, which
    Linux carries over from the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(args, tag: str, kind: str, images: list[Path], ids: list[int]) -> dict:
    out = args.work / f"onnx_bench_{tag}.json"
    cmd = [sys.executable, __file__, "--row", kind, "--ckpt", str(args.ckpt), "--onnx", str(args.onnx_for[kind]),
           "--device", args.device,
           "--slice", str(args.slice), "--threads", str(args.threads), "--dets", str(out),
           "--images", *map(str, images), "--ids", *map(str, ids)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:  # the table goes on; the error's last line in its row
        print(f"row {kind} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return {"skipped": "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**stats, "dets": out}


def max_difference(a: Path, b: Path) -> str:
    """Largest |score| difference over same-image same-class boxes matched at IoU > 0.99, and the count ratio."""
    from afmcli.inference.fusion import overlap

    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    worst, matched = 0.0, 0
    for image_id in {r["image_id"] for r in ra}:
        pa = [r for r in ra if r["image_id"] == image_id]
        pb = [r for r in rb if r["image_id"] == image_id]
        bb = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in pb)]).reshape(-1, 4)
        for r in pa:
            x, y, w, h = r["bbox"]
            iou = overlap(np.array([x, y, x + w, y + h]), bb, "iou") if len(bb) else np.zeros(0)
            same = [j for j in np.flatnonzero(iou > 0.99) if pb[j]["category_id"] == r["category_id"]]
            if same:
                matched += 1
                worst = max(worst, min(abs(pb[j]["score"] - r["score"]) for j in same))
    return f"{matched}/{len(ra)} matched, score diff {worst:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-images", type=int, default=4)
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--slice", type=int, default=512)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--int8", action="store_true", help="also the INT8 model (afm export --int8)")
    parser.add_argument("--calib-images", type=int, default=8)
    parser.add_argument("--no-sahi", action="store_true")
    parser.add_argument("--real", type=Path, default=None, help="a folder of real photos: speed rows on them too")
    parser.add_argument("--real-images", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/afm_bench_infer"))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda:N for the GPU rows")
    parser.add_argument("--fp16", action="store_true", help="GPU: also PyTorch fp16 and TensorRT fp16 rows")
    # one row (internal)
    parser.add_argument("--row", default=None)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--onnx", default=None)
    parser.add_argument("--dets", default=None)
    parser.add_argument("--images", nargs="*", default=[])
    parser.add_argument("--ids", type=int, nargs="*", default=[])
    args = parser.parse_args()
    if args.row:
        return row(args)

    from rich.console import Console
    from rich.table import Table

    from afmcli.data.images import list_images

    console = Console(width=160)
    args.work.mkdir(parents=True, exist_ok=True)
    make_data(args.work, args.val_images, tuple(int(v) for v in args.size.split("x")))
    args.ckpt = train(args.work, args.train_iters)
    onnx = args.work / f"tiny_tood_{args.train_iters}.onnx"
    quiet("export", CONFIG, args.ckpt, "--out", onnx)
    on_gpu = args.device.startswith("cuda")
    backends = (["torch", "torch-fp16", "onnx-cuda", "onnx-trt", "onnx-trt-fp16"] if args.fp16 else
                ["torch", "onnx-cuda", "onnx-trt"]) if on_gpu else ["torch", "onnx"]
    args.onnx_for = {f"{k}:{b}": onnx for b in args.batch_sizes for k in backends} | {"sahi:1": onnx}
    if args.int8 and not on_gpu:
        onnx8 = args.work / f"tiny_tood_{args.train_iters}_int8.onnx"
        quiet("export", CONFIG, args.ckpt, "--out", onnx8, "--int8", "--calib", args.work / "Datasets" / "images" /
              "train", "--calib-images", args.calib_images, "--calib-slice", args.slice)
        args.onnx_for |= {f"onnx-int8:{b}": onnx8 for b in args.batch_sizes}
    split = val_split(args.work)
    gt = json.loads(split.ann_file.read_text())
    images = [split.images / im["file_name"] for im in gt["images"]]
    ids = [im["id"] for im in gt["images"]]
    sets = [("synth", images, ids)]
    if args.real:
        real = list_images(args.real)[:args.real_images]
        sets.append(("real", real, list(range(1, len(real) + 1))))
    for name, paths, image_ids in sets:
        table = Table(title=f"{args.device}, {args.threads} thread(s): {len(paths)} {name} images, {args.slice}-px "
                            "tiles + full pass, NMS")
        for col in ("pipeline", "batch", "tiles/s", "images/s", "x PyTorch", "peak RSS MB", "AP", "AP50",
                    "vs PyTorch"):
            table.add_column(col, justify="left" if col in ("pipeline", "vs PyTorch") else "right")
        kinds = [k for k in args.onnx_for if k != "sahi:1"] + ([] if args.no_sahi or on_gpu else ["sahi:1"])
        kinds.sort(key=lambda k: int(k.split(":")[1]))
        results = {}
        for kind in kinds:
            r = results[kind] = run_row(args, f"{name}_{kind.replace(':', '_')}", kind, paths, image_ids)
            if "skipped" in r:
                table.add_row(kind, "", r["skipped"])
                continue
            base = results.get(f"torch:{kind.split(':')[1]}")
            metrics = evaluate_file(split.ann_file, r["dets"]) if name == "synth" else {}
            table.add_row(LABELS[kind.split(":")[0]], kind.split(":")[1],
                          f"{r['tiles'] / r['seconds']:.2f}", f"{r['images'] / r['seconds']:.3f}",
                          f"{(base['seconds'] / r['seconds']):.2f}" if base else "",
                          f"{r['rss_mb']:.0f}", f"{metrics.get('AP', float('nan')):.1f}",
                          f"{metrics.get('AP50', float('nan')):.1f}",
                          max_difference(base["dets"], r["dets"]) if base and base is not r else "")
        console.print(table)


if __name__ == "__main__":
    main()
