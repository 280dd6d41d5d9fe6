"""`afm export CONFIG CKPT --out MODEL.onnx`: a detector as an ONNX graph with its metadata.

The graph (afmcli.deploy.graph, an AFMNet's afmcli.deploy.afmnet_graph) takes a dynamic batch of BGR images of any height and width
(padded to the config's ``pad_size_divisor``) and gives the head's raw outputs per level;
the metadata (key ``afm``, JSON) holds what inference needs besides: class names, the test
pipeline's resize and padding, the normalisation's pad value, strides and the head's
test_cfg. afmcli.inference.backends.onnx_runtime runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from afmcli.errors import AfmError, ParameterError
from afmcli.io import atomic_path, check_output_file
from afmcli.inference.backends.onnx_runtime import FORMAT, METADATA_KEY

OPSET = 18  # GridSample (16), ScatterElements with max (18)
STANDARD_DOMAINS = ("", "ai.onnx")


def graph_and_metadata(model) -> tuple[torch.nn.Module, dict]:
    """The export graph of a loaded detector (afmcli.inference.backends.mmdet_backend.Model) and its metadata."""
    from afmcli.deploy.graph import TOODGraph
    from afmcli.inference.device_tiles import DeviceTiles

    module, cfg = model.module, model.cfg
    arch = type(module).__name__
    if arch not in ("TOOD", "AFMNet"):
        raise AfmError(f"{cfg.filename}: {arch} does not export (TOOD and AFMNet detectors do)")
    if arch == "AFMNet":
        check_afmnet(module, cfg.filename)
    head = module.bbox_head
    if head.anchor_type != "anchor_free":
        raise AfmError(f"{cfg.filename}: TOODHead anchor_type {head.anchor_type!r} does not export (anchor_free does)")
    try:
        geometry = DeviceTiles(model.pipeline.steps)  # the same one Resize + PackDetInputs
    except ParameterError as exc:
        raise AfmError(f"{cfg.filename}: {exc.args[0].split(': ', 1)[-1]}") from None
    pre = module.data_preprocessor
    mean = pre.mean.view(-1).tolist() if pre._enable_normalize else [0.0, 0.0, 0.0]
    std = pre.std.view(-1).tolist() if pre._enable_normalize else [1.0, 1.0, 1.0]
    bgr_to_rgb = bool(pre._channel_conversion)
    if float(pre.pad_value) != 0:
        raise AfmError(f"{cfg.filename}: data_preprocessor pad_value {pre.pad_value} does not export (0 does)")
    test_cfg = head.test_cfg
    meta = dict(
        format=FORMAT, arch=arch, classes=list(model.classes), config=Path(cfg.filename).name,
        scale=list(geometry.scale) if geometry.scale else None, keep_ratio=geometry.keep_ratio,
        pad_size_divisor=int(pre.pad_size_divisor),
        pad_value_bgr=(mean[::-1] if bgr_to_rgb else mean),  # normalised to 0 in the graph
        strides=[int(s[0]) for s in head.prior_generator.strides],
        test_cfg=dict(nms_pre=int(test_cfg.get("nms_pre", -1)), score_thr=float(test_cfg.get("score_thr", 0)),
                      min_bbox_size=float(test_cfg.get("min_bbox_size", -1)),
                      iou_threshold=float(test_cfg.nms.iou_threshold), max_per_img=int(test_cfg.max_per_img)),
        config_sha256=hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=repr).encode()).hexdigest())
    if test_cfg.nms.get("type", "nms") != "nms" or meta["test_cfg"]["nms_pre"] <= 0:
        raise AfmError(f"{cfg.filename}: the head's test_cfg (nms {test_cfg.nms}, nms_pre "
                       f"{meta['test_cfg']['nms_pre']}) does not export (type nms with nms_pre > 0 does)")
    if arch == "TOOD":
        return TOODGraph(module, mean, std, bgr_to_rgb).eval(), meta
    from afmcli.deploy.afmnet_graph import AFMNetGraph, carafe_shifted
    from afmcli.models.carafe import CARAFEUpsample

    for upsampler in module.modules():  # afm's CPU CARAFE loops over rows: the traceable form instead
        if isinstance(upsampler, CARAFEUpsample):
            upsampler.feature_reassemble = lambda x, mask, u=upsampler: carafe_shifted(
                x, mask.to(x.dtype), u.up_kernel, u.up_group, u.scale_factor)
    if hasattr(module.neck, "tensor_add"):  # FPN_CARAFE compares sizes on the host: slice always (a no-op if equal)
        module.neck.tensor_add = lambda a, b: a + b[:, :, :a.shape[2], :a.shape[3]]
        module.neck.slice_as = lambda src, dst: src[:, :, :dst.shape[2], :dst.shape[3]]
    hd_cfg = module.hd_head.test_cfg
    meta.update(hd_stride=int(module.hd_head.prior_generator.strides[0][0]),
                hd_test_cfg=dict(nms_pre=int(hd_cfg.nms_pre), score_thr=float(hd_cfg.score_thr),
                                 min_bbox_size=float(hd_cfg.get("min_bbox_size", -1)),
                                 iou_threshold=float(hd_cfg.nms.iou_threshold), max_per_img=int(hd_cfg.max_per_img)),
                # by role only once the HD head's merge warm-up is over (AFMNet.predict)
                merge_cfg={**module.merge_cfg, "by_role": bool(module.merge_cfg.get("by_role"))
                           and float(module.hd_merge_ramp()) >= 1},
                windows=dict(topk=module.affm.topk, window=module.affm.window))
    return AFMNetGraph(module, mean, std, bgr_to_rgb).eval(), meta


def check_afmnet(module, filename) -> None:
    """The AFMNet variants that export: every branch of the test-time graph present, windows on."""
    missing = [name for name in ("mask_estimator", "affm", "hd_head") if getattr(module, name) is None]
    if missing or module.test_heads != "both" or not module.p2_neck.runs_on_windows:
        raise AfmError(f"{filename}: this AFMNet variant does not export (it needs mask_estimator, affm and hd_head, "
                       f"test_heads both and a P2 neck that runs on windows; missing: {', '.join(missing) or 'none'})")


def non_standard_nodes(onnx_model) -> list[str]:
    """``domain::op_type`` of every node outside the standard ONNX domain (subgraphs included)."""
    found, graphs = [], [onnx_model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                found.append(f"{node.domain}::{node.op_type}")
            graphs.extend(attr.g for attr in node.attribute if attr.HasField("g"))
    return found


class CalibrationImages:
    """ONNX Runtime's calibration reader: for each image of ``folder`` (the first ``limit``),
    one batch of its ``slice``-px tiles and one of the whole image, through the model's
    test pipeline, as `afm infer` feeds them."""

    def __init__(self, folder: Path, meta: dict, limit: int, slice_size: int):
        from afmcli.data.images import list_images, read_image
        from afmcli.inference.backends.onnx_runtime import ArrayPipeline
        from afmcli.inference.tiles import iter_crops, plan_windows

        paths = list_images(folder)[:limit] if Path(folder).is_dir() else []
        if not paths:
            raise ParameterError(f"{{calib}} {folder}: no images to calibrate on", "calib")
        pipeline, self.batches = ArrayPipeline(meta), []
        for path in paths:
            image = read_image(path)
            windows = plan_windows(*image.shape[:2], slice_size, 0.25, True, False)[:8]
            self.batches += [pipeline(list(iter_crops(image, windows)))["inputs"], pipeline([image])["inputs"]]
        self.next = iter(self.batches)

    def get_next(self):
        batch = next(self.next, None)
        return None if batch is None else {"images": batch}


# The backbone and the neck (an AFMNet's under /detector/); the heads stay float: on the tiny TOOD
# an INT8 head cost 2.2 AP50, this 0.4.
QUANTIZED = ("/backbone/", "/neck/", "/detector/backbone/", "/detector/neck/")


def quantize_int8(fp32: Path, out: Path, calibration: CalibrationImages) -> None:
    """ONNX Runtime's static INT8 quantization (QDQ, per-channel weights, MinMax calibration)
    of the backbone and the neck; the head's nodes are left in float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    head = [node.name for node in onnx.load(str(fp32)).graph.node if not node.name.startswith(QUANTIZED)]
    quantize_static(str(fp32), str(out), calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head)


def export_onnx(config, checkpoint: str | os.PathLike, out: str | os.PathLike, trust: bool = False,
                probe_size: int = 320, calib: str | os.PathLike | None = None, calib_images: int = 8,
                calib_slice: int = 640) -> dict:
    """Export the detector of ``config`` + ``checkpoint`` to ``out`` (.onnx); returns its metadata.
    ``calib``: a folder of images: the model is quantized to INT8 (ONNX Runtime's static
    quantization), calibrated on ``calib_images`` of them (their ``calib_slice`` tiles and whole)."""
    import warnings

    import onnx

    from afmcli.inference.backends.mmdet_backend import load_model

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ParameterError(f"{{out}} {out}: the model file must end in .onnx", "out")
    check_output_file(out, "out")
    model = load_model(config, checkpoint, "cpu", trust)
    graph, meta = graph_and_metadata(model)
    meta["checkpoint_sha256"] = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    levels = len(meta["strides"])
    names = [f"scores_{i}" for i in range(levels)] + [f"boxes_{i}" for i in range(levels)]
    axes = {"images": {0: "batch", 2: "height", 3: "width"},
            **{name: {0: "batch", 2: f"h{name[-1]}", 3: f"w{name[-1]}"} for name in names}}
    if meta["arch"] == "AFMNet":  # a probe at the test scale: the windows fit (AFFM's windows_cheaper)
        size = max(meta["scale"] or [probe_size])
        probe = (torch.rand(2, 3, size, size) * 255, torch.tensor([[size, size], [size, size]]))
        names += ["hd_scores", "hd_boxes", "window_cores"]
        axes |= {"sizes": {0: "batch"}, "hd_scores": {0: "batch"}, "hd_boxes": {0: "batch"},
                 "window_cores": {0: "batch"}}
    else:
        probe = (torch.zeros(2, 3, probe_size, probe_size),)
    meta["int8"] = calib is not None
    # the calibration images are read first: a --calib without images is refused before the export
    calibration = None if calib is None else CalibrationImages(Path(calib), meta, calib_images, calib_slice)
    with atomic_path(out) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            # (nn.MultiheadAttention's fused fast path has no ONNX form; restored however the export ends)
            fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                torch.onnx.export(graph, probe, str(tmp), input_names=["images", "sizes"][:len(probe)],
                                  output_names=names, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            finally:
                torch.backends.mha.set_fastpath_enabled(fastpath)
        if calibration is not None:
            fp32 = tmp.with_name(tmp.name + ".fp32")
            tmp.rename(fp32)
            try:
                quantize_int8(fp32, tmp, calibration)
            finally:
                fp32.unlink(missing_ok=True)
        proto = onnx.load(str(tmp))
        extra = non_standard_nodes(proto)
        if extra:
            raise AfmError(f"{model.cfg.filename}: the graph has non-standard operators {sorted(set(extra))}")
        proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
        onnx.save(proto, str(tmp))
    return meta
