"""TOODHead's test-time decoding: mmdet's per-image loop against afmcli's batched one.

    .venv/bin/python bench/bench_decode.py [--batch-sizes 1 8 32 64] [--rounds 5] [--device cpu|cuda:0]
        [--work /tmp/afm_bench_infer] [--train-iters 200]

The model and images are bench_infer.py's (the tiny TOOD trained --train-iters steps on
`afm synth` data, cached in --work; its 1600x1000 val images cut into 512-px tiles). For
each batch size, one batch of tiles goes through the network once; then its head outputs
are decoded (score filter, top-k, rescale, NMS per image) by
- mmdet: ``TOODHead.predict_by_feat`` (what `model.test_step` runs), and
- batched: afmcli.models.batched_predict (what `afm infer` and afmcli.load_model run),
and the table gives the dispatched operators and host syncs of one decoding (counted as in
bench_train.py --count-ops), its time (median of --rounds, the two interleaved), and
whether the detections are the same (exactly; ties in score may swap places). For scale,
the operators of the network's forward pass on the same batch. A second table takes the
whole batch, network included, to numpy detections per tile: plain mmdet (`test_step`,
then each image's boxes, scores and labels to the host) against `Model.forward`, and
`Model.forward_windows` (`--device-tiles`: the tiles cut on the device from one image, its
windows repeated up to the batch size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import afmcli
from afmcli.inference.tiles import iter_crops, plan_windows
from bench_infer import CONFIG, device_name, make_data, train, val_split
from bench_train import op_counter


def same(want, got) -> bool:
    """Equal detections; rows whose scores tie exactly may be in either order."""
    def rows(r):
        return sorted(torch.cat([r.scores[:, None], r.labels[:, None].float(), r.bboxes], 1).tolist())
    return len(want) == len(got) and torch.equal(want.scores, got.scores) and rows(want) == rows(got)


def measure(runs: dict, rounds: int, sync) -> tuple[dict, dict, dict]:
    """Each of ``runs`` (name: callable) once under the operator counter, then ``rounds``
    timed rounds, the runs interleaved: (results, counts, median ms) by name."""
    results, counts, times = {}, {}, {name: [] for name in runs}
    for name, run in runs.items():
        with op_counter() as counts[name]:
            results[name] = run()
    for _ in range(rounds):
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    return results, counts, {name: 1000 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/afm_bench_infer"))
    parser.add_argument("--train-iters", type=int, default=200)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    make_data(args.work, 4, (1600, 1000))
    ckpt = train(args.work, args.train_iters, args.device)
    split = val_split(args.work)
    gt = json.loads(split.ann_file.read_text())
    tiles = []
    for img in gt["images"]:
        image = cv2.imread(str(split.images / img["file_name"]))
        windows = plan_windows(*image.shape[:2], 512, 0.25)
        tiles += iter_crops(image, windows)
    # --device-tiles: the last image on the device, its windows repeated up to the batch size
    on_device = torch.as_tensor(image).to(args.device)
    model = afmcli.load_model(CONFIG, ckpt, device=args.device)
    detector, head = model.module, model.module.bbox_head
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    table = Table(title=f"TOODHead decoding of one batch of 512-px tiles, tiny TOOD ({device_name(args.device)})")
    for col in ("batch", "forward ops", "decoding", "ops", "host syncs", "ms", "ms / tile", "detections",
                "same as mmdet", "ops vs mmdet", "ms vs mmdet"):
        table.add_column(col, justify="right")
    for batch in args.batch_sizes:
        crops = [tiles[i % len(tiles)] for i in range(batch)]
        with torch.no_grad():
            data = detector.data_preprocessor(model.pipeline(crops), False)
            metas = [s.metainfo for s in data["data_samples"]]
            with op_counter() as forward:
                outs = head(detector.extract_feat(data["inputs"]))
            decoders = {"mmdet": lambda: type(head).predict_by_feat(head, *outs, batch_img_metas=metas, rescale=True),
                        "batched": lambda: head.predict_by_feat(*outs, batch_img_metas=metas, rescale=True)}
            results, counts, ms = measure(decoders, args.rounds, sync)
        agree = sum(same(a, b) for a, b in zip(results["mmdet"], results["batched"]))
        for name in decoders:
            table.add_row(str(batch), str(forward.ops), name, str(counts[name].ops), str(counts[name].syncs),
                          f"{ms[name]:.1f}", f"{ms[name] / batch:.2f}", str(sum(map(len, results[name]))),
                          "" if name == "mmdet" else f"{agree}/{batch}",
                          "" if name == "mmdet" else f"{counts[name].ops / counts['mmdet'].ops:.2f}x",
                          "" if name == "mmdet" else f"{ms[name] / ms['mmdet']:.2f}x")
    whole = Table(title="One batch to detections on the host, network included")
    for col in ("batch", "path", "ops", "host syncs", "ms", "ms vs mmdet"):
        whole.add_column(col, justify="right")
    for batch in args.batch_sizes:
        data = model.pipeline([tiles[i % len(tiles)] for i in range(batch)])
        cut = windows[np.arange(batch) % len(windows)]
        paths = {"mmdet test_step + per-image copies": lambda: mmdet_detections(detector, head, data),
                 "afmcli Model.forward": lambda: model.forward(data, 0.0),
                 "afmcli Model.forward_windows (--device-tiles)": lambda: model.forward_windows(on_device, cut, 0.0)}
        _, counts, ms = measure(paths, args.rounds, sync)
        first = next(iter(paths))
        for name in paths:
            whole.add_row(str(batch), name, str(counts[name].ops), str(counts[name].syncs), f"{ms[name]:.1f}",
                          "" if name == first else f"{ms[name] / ms[first]:.2f}x")
    console = Console(width=160)
    console.print(table)
    console.print(whole)


@torch.no_grad()
def mmdet_detections(detector, head, data) -> list[tuple]:
    """What plain mmdet does with a batch: test_step with TOODHead's own decoding, then each
    image's results to numpy."""
    batched = head.__dict__.pop("predict_by_feat")
    try:
        samples = detector.test_step(data)
    finally:
        head.predict_by_feat = batched
    return [(p.bboxes.cpu().numpy(), p.scores.cpu().numpy(), p.labels.cpu().numpy())
            for p in (s.pred_instances for s in samples)]


if __name__ == "__main__":
    main()
