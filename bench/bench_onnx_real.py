"""AP of `afm infer MODEL.onnx` against `afm infer CONFIG CKPT` on real VisDrone photos.

    .venv/bin/python bench/bench_onnx_real.py [--iters 300] [--images 24] [--work /tmp/deploy38_real]

The tiny TOOD of bench/bench_infer.py trained --iters steps on the 324 real train photos of
shared/data/visdrone-real (converted with `afm convert-visdrone`), exported with `afm export`;
both run `afm infer` (640-px tiles + full pass, NMS) on every 13th photo (--images of them) and
are scored by `afm evaluate`'s code (COCO and VisDrone views). A parity check, not an accuracy
figure: the model is far from trained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import afmcli  # noqa: E402
from bench_infer import CONFIG, quiet, train  # noqa: E402

SHARED = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REAL = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--work", type=Path, default=Path("/tmp/deploy38_real"))
    args = parser.parse_args()
    work = args.work
    labels = work / "Datasets" / "labels" / "annotations" / "train_labels.json"
    if not labels.is_file():
        quiet("convert-visdrone", REAL, work / "Datasets", "--split", "train")
    gt = json.loads(labels.read_text())
    keep = {im["id"] for im in gt["images"][::13][:args.images]}
    subset = {key: [r for r in rows if (r["id"] if key == "images" else r["image_id"]) in keep]
              for key, rows in gt.items() if key in ("images", "annotations", "others")}
    (work / "eval.json").write_text(json.dumps({**gt, **subset}))
    ckpt = train(work, args.iters)
    onnx = work / "tood_real.onnx"
    quiet("export", CONFIG, ckpt, "--out", onnx)
    common = [work / "eval.json", "--images", work / "Datasets" / "images" / "train", "--slice", "640", "--overwrite"]
    for name, model in (("PyTorch", [CONFIG, ckpt]), ("ONNX Runtime", [onnx])):
        quiet("infer", *model, *common, "--out", work / name.split()[0].lower())
        m = afmcli.evaluate(work / "eval.json", work / name.split()[0].lower() / "predictions.json")
        print(f"{name:13s} COCO AP {m['coco']['AP']:.4f} AP50 {m['coco']['AP50']:.4f} AP_small "
              f"{m['coco']['AP_small']:.4f} | VisDrone AP {m['visdrone']['AP']:.4f} AP50 {m['visdrone']['AP50']:.4f}")


if __name__ == "__main__":
    main()
