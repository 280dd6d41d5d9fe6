"""`afm export` to ONNX and `afm infer MODEL.onnx` on ONNX Runtime, against the PyTorch model
on real VisDrone images (a tiny random-weight TOOD: the head's outputs and the detections
must be the same numbers, whatever the weights)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from afmcli.cli import main
from afmcli.inference.backends.mmdet_backend import load_model
from afmcli.inference.backends.speed import dense_head_outputs

from test_infer_e2e import CONFIG, save_tiny_checkpoint
from test_infer_scale import fail_after, one_thread  # noqa: F401 (one torch thread: an autouse fixture)

pytest.importorskip("onnxruntime")

# The project's shared/ sits beside the checkout; AFM_SHARED moves it.
SHARED = Path(os.environ.get("AFM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REAL = SHARED / "data" / "visdrone-real" / "VisDrone2019-DET-train"
# a 1400x788, a 960x540 and a 1360x765 photo
REAL_NAMES = ("0000072_07660_d_0000012", "0000079_00507_d_0000001", "0000084_01781_d_0000005")
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real VisDrone images not found at {REAL} (set AFM_SHARED)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    ckpt = save_tiny_checkpoint(root / "tiny.pth")
    main(["export", str(CONFIG), str(ckpt), "--out", str(root / "tiny.onnx")])
    return root, ckpt, root / "tiny.onnx"


def assert_same_detections(want_boxes, want_scores, want_labels, got_boxes, got_scores, got_labels,
                           box_atol=1e-2, score_atol=1e-5):
    """One to one, each detection has its twin: same label, boxes within ``box_atol`` pixels,
    scores within ``score_atol`` (the order of near-tied scores is free)."""
    want_boxes, got_boxes = np.asarray(want_boxes, float).reshape(-1, 4), np.asarray(got_boxes, float).reshape(-1, 4)
    assert len(want_boxes) == len(got_boxes)
    far = np.abs(want_boxes[:, None] - got_boxes[None]).max(axis=2)
    far[np.asarray(want_labels)[:, None] != np.asarray(got_labels)[None]] = np.inf
    twin = far.argmin(axis=1)
    assert len(set(twin.tolist())) == len(twin)
    assert far[np.arange(len(twin)), twin].max(initial=0) <= box_atol
    np.testing.assert_allclose(np.asarray(got_scores)[twin], want_scores, atol=score_atol)


def real_images() -> list[np.ndarray]:
    return [cv2.imread(str(REAL / "images" / f"{name}.jpg")) for name in REAL_NAMES]


def test_grid_sample_equals_mmcv_deform_sampling_with_out_of_map_offsets():
    from mmdet.models.dense_heads import TOODHead

    from afmcli.deploy.graph import grid_deform_sampling

    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 4, 9, 13, generator=g) * 10
    offset = torch.randn(2, 8, 9, 13, generator=g) * 3
    offset[:, :, :2] = 40 * torch.sign(torch.randn(2, 8, 2, 13, generator=g))  # far outside the map
    offset[:, :, 2:4] = torch.randint(-2, 3, (2, 8, 2, 13), generator=g).float()  # on pixel centres, at the edge
    offset[0, 0, 5, 5], offset[0, 1, 5, 5] = -5.5, -13.25  # straddles the top-left corner (y -0.5, x -8.25)
    want = TOODHead.deform_sampling(None, feat, offset)  # mmcv's deform_conv2d kernel
    got = grid_deform_sampling(feat, offset)
    assert (want == 0).any() and (want != 0).mean(dtype=torch.float) > 0.5  # both regimes are exercised
    assert (got - want).abs().max() <= 1e-5 * feat.abs().max()


def test_graph_has_only_standard_operators_and_samples_with_gridsample(exported):
    import onnx

    model = onnx.load(str(exported[2]))
    domains = {node.domain for node in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    ops = {node.op_type for node in model.graph.node}
    assert "GridSample" in ops and not {"DeformConv", "MMCVDeformConv2d"} & ops
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


def test_metadata_holds_what_inference_needs(exported):
    from afmcli.inference.backends.onnx_runtime import read_metadata

    meta = read_metadata(exported[2])
    assert meta["classes"][:2] == ["pedestrian", "people"] and len(meta["classes"]) == 10
    assert meta["scale"] == [512, 512] and meta["keep_ratio"] and meta["pad_size_divisor"] == 32
    assert meta["pad_value_bgr"] == pytest.approx([103.53, 116.28, 123.675])
    assert meta["strides"] == [8, 16, 32]
    assert meta["test_cfg"] == dict(nms_pre=500, score_thr=0.01, min_bbox_size=0.0, iou_threshold=0.6,
                                    max_per_img=300)


@needs_real
def test_raw_head_outputs_equal_pytorch_on_real_images(exported):
    from afmcli.inference.backends.onnx_runtime import OnnxModel

    root, ckpt, onnx_path = exported
    torch_model, onnx_model = load_model(CONFIG, ckpt), OnnxModel(onnx_path, threads=1)
    image = real_images()[0]
    tiles = [image[0:640, 0:640], image[148:788, 760:1400]]
    for batch in (tiles, [image]):  # tiles of one size, and the full image (1400x788 -> 512x288, padded)
        want = dense_head_outputs(torch_model.module, torch_model.pipeline(batch))
        got = onnx_model.raw(onnx_model.pipeline(batch))
        assert [tuple(w.shape) for w in want] == [g.shape for g in got]
        levels = len(got) // 2
        for w, g in zip(want[:levels], got[:levels]):  # scores in [0, 1]
            np.testing.assert_allclose(g, w.numpy(), atol=2e-5)
        for w, g in zip(want[levels:], got[levels:]):  # boxes in stride units (up to ~100): float32 rounding
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-4)


@needs_real
def test_detections_equal_pytorch_on_real_images(exported):
    from afmcli.inference.backends.onnx_runtime import OnnxModel

    root, ckpt, onnx_path = exported
    torch_model, onnx_model = load_model(CONFIG, ckpt), OnnxModel(onnx_path, threads=1)
    image = real_images()[1]
    for batch in ([image[0:512, 0:512], image[28:540, 448:960]], [image]):
        for want, got in zip(torch_model(batch, 0.02), onnx_model(batch, 0.02)):
            assert len(want) > 10
            assert_same_detections(want.boxes, want.scores, want.labels, got.boxes, got.scores, got.labels)


def coco_gt(path: Path) -> Path:
    """Our COCO json of REAL_NAMES from their official VisDrone labels (classes 1..10)."""
    from afmcli.data.visdrone_format import read_visdrone_file

    classes = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor")
    images, annotations = [], []
    for i, name in enumerate(REAL_NAMES, 1):
        h, w = cv2.imread(str(REAL / "images" / f"{name}.jpg")).shape[:2]
        images.append(dict(id=i, file_name=f"{name}.jpg", width=w, height=h))
        for row in read_visdrone_file(REAL / "annotations" / f"{name}.txt"):
            x, y, bw, bh, _, cat = row[:6]
            if 1 <= cat <= 10:
                annotations.append(dict(id=len(annotations) + 1, image_id=i, category_id=int(cat), iscrowd=0,
                                        bbox=[float(x), float(y), float(bw), float(bh)], area=float(bw * bh)))
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=[dict(id=k, name=n) for k, n in enumerate(classes, 1)])))
    return path


@needs_real
def test_afm_infer_onnx_equals_pytorch_on_real_images_and_resumes_with_a_worker(exported, tmp_path, monkeypatch):
    import afmcli

    root, ckpt, onnx_path = exported
    gt = coco_gt(tmp_path / "gt.json")
    common = [str(gt), "--images", str(REAL / "images"), "--score-thr", "0.05", "--max-per-img", "300"]
    main(["infer", str(CONFIG), str(ckpt), *common, "--out", str(tmp_path / "torch")])
    fail_after(monkeypatch, 1)  # killed after one image: the rerun does the other two
    with pytest.raises(SystemExit):
        main(["infer", str(onnx_path), *common, "--out", str(tmp_path / "onnx")])
    monkeypatch.undo()
    main(["infer", str(onnx_path), *common, "--out", str(tmp_path / "onnx"), "--workers", "1"])  # tiles in a worker
    want, got = (json.loads((tmp_path / d / "predictions.json").read_text()) for d in ("torch", "onnx"))
    assert len(want) > 100
    for image_id in range(1, len(REAL_NAMES) + 1):
        a, b = ([r for r in rows if r["image_id"] == image_id] for rows in (want, got))
        assert_same_detections(*([r[k] for r in a] for k in ("bbox", "score", "category_id")),
                               *([r[k] for r in b] for k in ("bbox", "score", "category_id")), box_atol=2e-2)
    ap = [afmcli.evaluate(gt, tmp_path / d / "predictions.json", view="coco")["coco"]["AP"] for d in ("torch", "onnx")]
    assert abs(ap[0] - ap[1]) <= 0.1


def test_onnx_path_imports_no_openmmlab(exported, tmp_path):
    root, ckpt, onnx_path = exported
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    code = f"""
import sys
import afmcli
from afmcli.cli import main
model = afmcli.load_model({str(onnx_path)!r})
dets = afmcli.predict(model, {str(image)!r}, slice=128)
try:
    main(["infer", {str(onnx_path)!r}, {str(image)!r}, "--out", {str(tmp_path / 'out')!r}, "--slice", "128"])
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {{'mmcv', 'mmdet', 'mmengine'}})
print('loaded:', loaded, len(dets))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded: []" in out.stdout
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_onnx_model_refuses_pytorch_only_options(exported, tmp_path, capsys):
    root, ckpt, onnx_path = exported
    with pytest.raises(SystemExit):
        main(["infer", str(onnx_path), str(tmp_path), "--out", str(tmp_path / "o"), "--fp16"])
    assert "--fp16 applies to PyTorch models (config + checkpoint), not to an ONNX model" in capsys.readouterr().err


@needs_real
def test_int8_export_is_quantized_standard_and_runs(exported, tmp_path, capsys):
    import onnx

    from afmcli.inference.backends.onnx_runtime import OnnxModel, read_metadata

    root, ckpt, _ = exported
    with pytest.raises(SystemExit):
        main(["export", str(CONFIG), str(ckpt), "--out", str(tmp_path / "q.onnx"), "--int8"])
    assert "--int8 and --calib go together" in capsys.readouterr().err
    main(["export", str(CONFIG), str(ckpt), "--out", str(tmp_path / "q.onnx"), "--int8", "--calib",
          str(REAL / "images"), "--calib-images", "2"])
    proto = onnx.load(str(tmp_path / "q.onnx"))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert read_metadata(tmp_path / "q.onnx")["int8"]
    image = real_images()[1]
    dets = OnnxModel(tmp_path / "q.onnx", threads=1)([image[0:512, 0:512]], 0.02)[0]
    assert len(dets) > 0 and dets.boxes.shape[1] == 4


def test_int8_without_calibration_images_is_refused_before_the_export(exported, tmp_path, capsys, monkeypatch):
    root, ckpt, _ = exported
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("exported before --calib was checked"))
    with pytest.raises(SystemExit):
        main(["export", str(CONFIG), str(ckpt), "--out", str(tmp_path / "q.onnx"), "--int8", "--calib",
              str(tmp_path / "empty")])
    assert f"--calib {tmp_path / 'empty'}: no images to calibrate on" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()


def test_carafe_as_shifted_slices_equals_afms_carafe():
    from afmcli.deploy.afmnet_graph import carafe_shifted
    from afmcli.models.carafe import carafe_torch

    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 5, 7, generator=g)
    masks = torch.randn(2, 2 * 9, 10, 14, generator=g).view(2, 2, 9, 10, 14).softmax(dim=2).view(2, 18, 10, 14)
    want = carafe_torch(features, masks, 3, 2, 2)
    assert (carafe_shifted(features, masks, 3, 2, 2) - want).abs().max() <= 1e-6


@pytest.mark.parametrize("window, roi_size", [(24, 8), (20, 8), (7, 4)])
def test_roi_align_as_matrices_equals_mmcv(window, roi_size):
    from mmcv.ops import roi_align

    from afmcli.deploy.afmnet_graph import roi_align_matrix

    margin = 2
    crops = torch.randn(3, 4, window + 2 * margin, window + 2 * margin, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[i, margin, margin, margin + window, margin + window] for i in range(3)], dtype=torch.float32)
    want = roi_align(crops, rois, roi_size, 1.0, 0, "avg", True)
    a = torch.from_numpy(roi_align_matrix(window + 2 * margin, margin, window, roi_size)).float()
    assert (a @ crops @ a.t() - want).abs().max() <= 1e-5


@pytest.mark.slow
@needs_real
def test_afmnet_exports_to_standard_operators_and_equals_pytorch_on_real_images(tmp_path):
    import onnx

    from afmcli.errors import AfmError
    from afmcli.inference.backends.onnx_runtime import OnnxModel

    config = Path(__file__).parents[1] / "configs" / "AFM" / "afmnet_tiny_synth.py"
    ckpt = save_tiny_checkpoint(tmp_path / "afmnet.pth", config=config)
    saved = torch.load(ckpt, weights_only=False)
    for key in saved["state_dict"]:  # every branch on: the HD head past its merge warm-up, the gates open
        if key == "hd_merge_step":
            saved["state_dict"][key] = torch.tensor(1e6)
        elif key.endswith("gate"):
            saved["state_dict"][key] = torch.full_like(saved["state_dict"][key], 0.7)
    torch.save(saved, ckpt)
    main(["export", str(config), str(ckpt), "--out", str(tmp_path / "afmnet.onnx")])
    proto = onnx.load(str(tmp_path / "afmnet.onnx"))
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert {"GridSample", "ScatterElements"} <= {n.op_type for n in proto.graph.node}
    torch_model, onnx_model = load_model(config, ckpt), OnnxModel(tmp_path / "afmnet.onnx", threads=1)
    image = real_images()[1]
    for batch in ([image[0:512, 0:512], image[28:540, 448:960]], [image]):  # tiles, and the full 960x540 photo
        for want, got in zip(torch_model(batch, 0.02), onnx_model(batch, 0.02)):
            assert len(want) > 10
            assert_same_detections(want.boxes, want.scores, want.labels, got.boxes, got.scores, got.labels)
    # A tile and the whole photo in one batch: both padded to the larger input (512x512 against
    # 512x288), as PyTorch pads them. The GroupNorms of TOOD's head then count the padding (as in
    # mmdet), so the photo scores otherwise than alone; afm never batches sizes: a full-image pass
    # is a batch of its own, an image's tiles have one size.
    mixed = [image[0:512, 0:512], image]
    batch = onnx_model(mixed, 0.02)
    for want, got in zip(torch_model(mixed, 0.02), batch):
        assert_same_detections(want.boxes, want.scores, want.labels, got.boxes, got.scores, got.labels)
    alone = onnx_model(mixed[:1], 0.02)[0]  # the larger input is not padded: as alone
    assert_same_detections(alone.boxes, alone.scores, alone.labels, batch[0].boxes, batch[0].scores, batch[0].labels)
    with pytest.raises(AfmError, match="too small for this AFMNet's 4 windows of 24x24 stride-4 cells"):
        onnx_model([image[:20, :400]])  # resized to 512x26: 8 rows of stride-4 cells


def mmcv_nms_loop(boxes, scores, thr):
    """mmcv's nms_cpu kernel transcribed (float32, offset 0), the reference for box_nms."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[order, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(len(order), bool)
    for i in range(len(order)):
        if alive[i]:
            rest = np.arange(i + 1, len(order))
            w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
            inter = w * h
            alive[rest[inter / (areas[i] + areas[rest] - inter) > np.float32(thr)]] = False
    return order[alive]


def test_box_nms_equals_mmcv_batched_nms():
    from mmcv.ops import batched_nms as mmcv_batched_nms

    from afmcli.inference.box_nms import batched_nms, nms

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (3000, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(2, 40, (3000, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(3000).astype(np.float32) / 3000  # distinct: the order is defined
    labels = rng.integers(0, 5, 3000)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), mmcv_nms_loop(boxes, scores, 0.5))
    for n in (3000, 12000):  # offsets, and class by class past mmcv's split_thr
        b, s, lab = (np.resize(a, (n,) + a.shape[1:]) for a in (boxes, scores, labels))
        b = (b + np.arange(n)[:, None] // 3000 * 400).astype(np.float32)  # copies side by side
        s = (rng.permutation(n) / n).astype(np.float32)
        _, want = mmcv_batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(lab),
                                   dict(type="nms", iou_threshold=0.6))
        np.testing.assert_array_equal(batched_nms(b, s, lab, 0.6), want.numpy())


def test_onnx_model_sharded_over_two_gloo_ranks_equals_one_process(exported, tmp_path):
    from test_infer_scale import FAST, run_ranks, tree

    onnx_path = exported[2]
    main(["synth", str(tmp_path / "synth"), "--split", "val", "--images", "4", "--width", "192", "--height", "144"])
    images = tmp_path / "synth" / "images"
    main(["infer", str(onnx_path), str(images), "--out", str(tmp_path / "one"), *FAST])
    run_ranks(["infer", str(onnx_path), str(images), "--out", str(tmp_path / "two"), *FAST])
    assert tree(tmp_path / "two") == tree(tmp_path / "one") and "predictions.json" in tree(tmp_path / "one")
