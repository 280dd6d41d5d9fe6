"""`afm infer` on CUDA gives the CPU's detections, to float tolerance, also with --fp16 and
--device-tiles; the fusion's NMS on CUDA keeps the CPU's boxes (GPU only)."""

import json

import numpy as np
import pytest
import torch

from afmcli.cli import main
from test_infer_e2e import CONFIG, save_tiny_checkpoint


def strong_matched(cpu: list[dict], gpu: list[dict], box_px: float, score: float) -> tuple[int, int]:
    """(CPU detections with score >= 0.05 that have a CUDA one of the same image and class
    within ``box_px`` and ``score``, those detections): scores near the 0.01 threshold or
    near-tied boxes may differ in float noise."""
    matched = 0
    strong = [d for d in cpu if d["score"] >= 0.05]
    for d in strong:
        cands = [g for g in gpu if g["image_id"] == d["image_id"] and g["category_id"] == d["category_id"]]
        best = min(cands, key=lambda g: np.abs(np.subtract(g["bbox"], d["bbox"])).max(), default=None)
        if best is not None and np.abs(np.subtract(best["bbox"], d["bbox"])).max() < box_px \
                and abs(best["score"] - d["score"]) < score:
            matched += 1
    return matched, len(strong)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("flags,box_px,score", [([], 0.05, 1e-3), (["--fp16", "--device-tiles"], 1.0, 5e-3)],
                         ids=["fp32", "fp16-device-tiles"])
def test_infer_on_cuda_matches_cpu(flags, box_px, score, tmp_path, monkeypatch):
    # cuDNN convolutions default to TF32 on Ampere and later (10-bit mantissa): boxes then
    # move by up to a pixel. Parity is checked in full float32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    main(["synth", str(tmp_path / "synth"), "--split", "val", "--images", "2", "--width", "900",
          "--height", "600"])
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pth")
    preds = {}
    for device in ("cpu", "cuda:0"):
        out = tmp_path / device.replace(":", "")
        main(["infer", str(CONFIG), str(ckpt), str(tmp_path / "synth" / "images"), "--out", str(out),
              "--slice", "320", "--device", device, *(flags if device != "cpu" else [])])
        preds[device] = json.loads((out / "predictions.json").read_text())
    cpu, gpu = preds["cpu"], preds["cuda:0"]
    assert len(cpu) > 20
    matched, strong = strong_matched(cpu, gpu, box_px, score)
    print(f"CPU {len(cpu)} detections, CUDA {len(gpu)} ({' '.join(flags) or 'fp32'}); {matched}/{strong} "
          "with score >= 0.05 matched")
    assert matched >= (0.99 if not flags else 0.95) * strong
    assert abs(len(gpu) - len(cpu)) <= 0.02 * len(cpu) + 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fusion_nms_on_cuda_keeps_the_cpu_boxes():
    from afmcli.detections import Detections
    from afmcli.inference.fusion import fuse_image

    rng = np.random.default_rng(0)
    xy, wh = rng.uniform(0, 1500, (4000, 2)), rng.uniform(4, 60, (4000, 2))
    dets = Detections(np.hstack([xy, xy + wh]), rng.uniform(0.01, 1, 4000), rng.integers(1, 11, 4000))
    cpu, gpu = fuse_image([dets], "nms", 0.6), fuse_image([dets], "nms", 0.6, device="cuda:0")
    assert 500 < len(cpu) < 4000
    np.testing.assert_array_equal(gpu.boxes, cpu.boxes)
    np.testing.assert_array_equal(gpu.labels, cpu.labels)
    np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=1e-6)
