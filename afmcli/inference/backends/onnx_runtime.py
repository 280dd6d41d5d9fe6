"""An `afm export`ed ONNX model on ONNX Runtime: the detector without mmcv, mmdet or mmengine.

The graph gives the head's raw outputs per level (class scores, boxes in stride units; an
AFMNet's also its HD head's cells and its windows);
the test pipeline's geometry (resize, pad) runs before it in OpenCV, and the head's test-time
decoding (score filter, top-k, rescale, size filter, per-class NMS) after it in numpy, as
afmcli.models.batched_predict does in torch: same operations in float32, so the same
detections up to float rounding. Everything needed comes from the model's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from afmcli.detections import Detections
from afmcli.errors import AfmError, ParameterError
from afmcli.inference.box_nms import batched_nms

METADATA_KEY = "afm"
FORMAT = 1


def is_onnx(path) -> bool:
    return str(path).lower().endswith(".onnx")


def read_metadata(path: str | os.PathLike) -> dict:
    """The afm metadata of an exported model (without building a session)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise AfmError(f"{path}: ONNX model not found")
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # a truncated or foreign file: onnx's protobuf error
        raise AfmError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    if METADATA_KEY not in props:
        raise AfmError(f"{path}: no afm metadata in this ONNX model (export it with `afm export`)")
    meta = json.loads(props[METADATA_KEY])
    if meta.get("format") != FORMAT:
        raise AfmError(f"{path}: afm metadata format {meta.get('format')}; this afm reads format {FORMAT}")
    return meta


def rescale_size(width: int, height: int, scale: Sequence[int]) -> tuple[int, int]:
    """mmcv.rescale_size: the largest size with the aspect ratio that fits ``scale``."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * factor + 0.5), int(height * factor + 0.5)


class ArrayPipeline:
    """The test pipeline's geometry on BGR uint8 images (mmdet's Resize with cv2's bilinear,
    then the data preprocessor's padding to a multiple of ``pad_divisor``; the channel flip
    and normalisation are in the graph): one float32 (N, 3, H, W) batch, padded with the BGR
    mean (0 once normalised), and each image's scale factors (w, h)."""

    def __init__(self, meta: dict):
        self.scale = tuple(meta["scale"]) if meta.get("scale") else None
        self.keep_ratio = bool(meta["keep_ratio"])
        self.pad_divisor = int(meta["pad_size_divisor"])
        self.pad_value = np.asarray(meta["pad_value_bgr"], dtype=np.float32)

    def size(self, width: int, height: int) -> tuple[int, int]:
        if self.scale is None:
            return width, height
        return rescale_size(width, height, self.scale) if self.keep_ratio else self.scale

    def __call__(self, images: Sequence[np.ndarray]) -> dict:
        resized, factors = [], []
        for image in images:
            height, width = image.shape[:2]
            new_w, new_h = self.size(width, height)
            resized.append(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
                           if self.scale is not None else image)
            factors.append((new_w / width, new_h / height))
        d = self.pad_divisor
        height = -(-max(r.shape[0] for r in resized) // d) * d
        width = -(-max(r.shape[1] for r in resized) // d) * d
        batch = np.empty((len(resized), 3, height, width), dtype=np.float32)
        batch[:] = self.pad_value[None, :, None, None]
        for i, r in enumerate(resized):
            batch[i, :, :r.shape[0], :r.shape[1]] = r.transpose(2, 0, 1)
        return dict(inputs=batch, scale_factors=np.asarray(factors, dtype=np.float64),
                    sizes=np.asarray([r.shape[:2] for r in resized], dtype=np.int64))


def decode_tood(scores: Sequence[np.ndarray], boxes: Sequence[np.ndarray], strides: Sequence[int],
                scale_factor: Sequence[float], cfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's TOODHead test-time decoding (afmcli.models.batched_predict, mmdet's
    predict_by_feat) from its per-level scores (C, h, w) and boxes (4, h, w) in stride units:
    (boxes (k, 4), scores (k,), labels (k,)) best first, in the image's pixels."""
    n_cls = scores[0].shape[0]
    all_boxes, all_scores, all_labels, all_valid = [], [], [], []
    for level_scores, level_boxes, stride in zip(scores, boxes, strides):
        flat = level_scores.transpose(1, 2, 0).reshape(-1)
        points = level_boxes.transpose(1, 2, 0).reshape(-1, 4) * np.float32(stride)
        above = flat > np.float32(cfg["score_thr"])
        masked = np.where(above, flat, np.float32(-np.inf))
        k = min(cfg["nms_pre"], len(flat))
        top = np.argpartition(-masked, k - 1)[:k] if k < len(flat) else np.arange(len(flat))
        top = top[np.argsort(-masked[top], kind="stable")]
        all_boxes.append(points[top // n_cls])
        all_scores.append(masked[top])
        all_labels.append(top % n_cls)
        all_valid.append(above[top])
    out_boxes, out_scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    labels, valid = np.concatenate(all_labels), np.concatenate(all_valid)
    sx, sy = scale_factor
    out_boxes = out_boxes * np.asarray([1 / sx, 1 / sy, 1 / sx, 1 / sy], dtype=np.float32)
    if cfg.get("min_bbox_size", -1) >= 0:
        valid &= (out_boxes[:, 2] - out_boxes[:, 0] > cfg["min_bbox_size"]) & \
                 (out_boxes[:, 3] - out_boxes[:, 1] > cfg["min_bbox_size"])
    out_boxes, out_scores, labels = out_boxes[valid], out_scores[valid], labels[valid]
    keep = batched_nms(out_boxes, out_scores, labels, cfg["iou_threshold"])[:cfg["max_per_img"]]
    return out_boxes[keep], out_scores[keep], labels[keep]


def merge_afmnet(main, hd, cores: np.ndarray, cfg: dict):
    """afmcli.models.afmnet's merge of the main head's and the HD head's detections of one
    image ((boxes, scores, labels) each): class-aware NMS over both, the best max_per_img kept;
    with by_role first each head in its role (small boxes in a window core from the HD head alone)."""
    if cfg.get("by_role"):
        def small(boxes):
            return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) < np.float32(cfg.get("small_area", 1024))

        centre = (main[0][:, None, :2] + main[0][:, None, 2:]) / 2
        in_core = ((centre >= cores[:, :2]) & (centre < cores[:, 2:])).all(axis=2).any(axis=1)
        keep_main, keep_hd = ~(small(main[0]) & in_core), small(hd[0])
        main, hd = tuple(x[keep_main] for x in main), tuple(x[keep_hd] for x in hd)
    boxes, scores, labels = (np.concatenate([a, b]) for a, b in zip(main, hd))
    keep = batched_nms(boxes, scores, labels, cfg["iou_threshold"])[:cfg["max_per_img"]]
    return boxes[keep], scores[keep], labels[keep]


def decode_afmnet(outputs: Sequence[np.ndarray], meta: dict, scale_factor, size) -> tuple:
    """One image's AFMNet detections from its graph outputs (main levels' scores and boxes,
    then the HD cells' scores (P, C) and boxes (P, 4), the window cores (k, 4)), as
    AFMNet.predict decodes them: each head as TOODHead, the HD boxes clipped to the image, merged."""
    levels = len(meta["strides"])
    main = decode_tood(outputs[:levels], outputs[levels:2 * levels], meta["strides"], scale_factor, meta["test_cfg"])
    hd_scores, hd_boxes, cores = outputs[2 * levels:]
    hd = decode_tood([hd_scores.T[:, None]], [hd_boxes.T[:, None]], [meta["hd_stride"]], scale_factor,
                     meta["hd_test_cfg"])
    sx, sy = scale_factor
    height, width = size
    boxes = hd[0].copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, np.float32(width / sx))
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, np.float32(height / sy))
    cores = (cores * meta["hd_stride"]).astype(np.float32) / np.asarray([sx, sy, sx, sy], dtype=np.float32)
    return merge_afmnet(main, (boxes, *hd[1:]), cores, meta["merge_cfg"])


def providers_for(device: str) -> list[str]:
    """ONNX Runtime's execution providers for ``--device``: cpu; cuda (CUDA, CPU for the
    operators it lacks); tensorrt (TensorRT, then CUDA, then CPU)."""
    import onnxruntime as ort

    kind = device.split(":")[0]
    wanted = {"cpu": ["CPUExecutionProvider"],
              "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
              "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}.get(kind)
    if wanted is None:
        raise ParameterError(f"{{device}} {device}: an ONNX model runs on cpu, cuda[:N] or tensorrt[:N]", "device")
    missing = [p for p in wanted[:-1] if p not in ort.get_available_providers()]
    if missing:
        raise ParameterError(f"{{device}} {device}: this onnxruntime has no {missing[0]} (available: "
                             f"{', '.join(ort.get_available_providers())}; install onnxruntime-gpu)", "device")
    return wanted


class OnnxModel:
    """An exported detector on ONNX Runtime, with the contract of afmcli.inference.backends.
    ``threads``: ONNX Runtime's intra-op threads (0: its default, one per core)."""

    nms_device = "numpy"  # fusion's NMS without mmcv (afmcli.inference.box_nms)

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int = 0):
        import onnxruntime as ort

        self.path, self.device = Path(path), device
        self.meta = read_metadata(self.path)
        self.classes = tuple(self.meta["classes"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = providers_for(device)
        index = device.split(":")[1] if ":" in device else "0"
        provider_options = [{"device_id": index} if p != "CPUExecutionProvider" else {} for p in providers]
        self._session_args = (options, providers, provider_options)
        self._open_session()
        self.pipeline = ArrayPipeline(self.meta)
        self.fp16 = self.channels_last = False

    def set_provider_options(self, **options) -> None:
        """Rebuild the session with ``options`` added to the first execution provider's
        (e.g. ``trt_fp16_enable=True`` for TensorRT in fp16)."""
        session_options, providers, provider_options = self._session_args
        provider_options = [{**provider_options[0], **options}, *provider_options[1:]]
        self._session_args = (session_options, providers, provider_options)
        self._open_session()

    def _open_session(self) -> None:
        import onnxruntime as ort

        session_options, providers, provider_options = self._session_args
        self.session = ort.InferenceSession(str(self.path), session_options, providers=providers,
                                            provider_options=provider_options)

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name}, {len(self.classes)} classes, {self.device})"

    def device_tiles(self):
        raise ParameterError("{device_tiles} cuts tiles on a PyTorch model's device; an ONNX model's tiles are "
                             "cut by OpenCV (run without it)", "device_tiles")

    def __call__(self, images: Sequence[np.ndarray], score_thr: float = 0.0) -> list[Detections]:
        """Detections per BGR image (one batch), in that image's pixels, labels as class indices."""
        return self.forward(self.pipeline(images), score_thr)

    def forward_windows(self, image, windows: np.ndarray, score_thr: float = 0.0) -> list[Detections]:
        """Detections per crop ``windows`` (xyxy) of ``image``."""
        image = np.asarray(image)
        return self(
            [image[y1:y2, x1:x2] for x1, y1, x2, y2 in np.asarray(windows, dtype=np.int64).tolist()], score_thr)

    def raw(self, data: dict) -> list[np.ndarray]:
        """The graph's outputs for a batch of :class:`ArrayPipeline`: scores per level, then boxes per level."""
        feed = {"images": data["inputs"]}
        if self.meta["arch"] == "AFMNet":
            feed["sizes"] = data["sizes"]
            self.check_windows(*data["inputs"].shape[2:])
        return self.session.run(None, feed)

    def check_windows(self, height: int, width: int) -> None:
        """The exported AFMNet runs its HD head on AFFM's windows; PyTorch's runs it densely
        where the windows would not be cheaper (AFFM.windows_cheaper): refused here."""
        k, window = self.meta["windows"]["topk"], self.meta["windows"]["window"]
        h, w = height // self.meta["hd_stride"], width // self.meta["hd_stride"]
        if min(h, w) < window or k * window * window >= h * w:
            raise AfmError(f"{self.path}: a {width}x{height} input is too small for this AFMNet's {k} windows of "
                           f"{window}x{window} stride-4 cells (PyTorch runs its HD head densely there): use a larger "
                           "--slice, or the PyTorch model")

    def forward(self, data: dict, score_thr: float = 0.0) -> list[Detections]:
        """Detections per image of a batch made by :class:`ArrayPipeline`, scoring at least ``score_thr``."""
        outputs = self.raw(data)
        levels = len(self.meta["strides"])
        out = []
        for i, factor in enumerate(data["scale_factors"]):
            if self.meta["arch"] == "AFMNet":
                b, s, lab = decode_afmnet([x[i] for x in outputs], self.meta, factor, data["sizes"][i])
            else:
                b, s, lab = decode_tood([x[i] for x in outputs[:levels]], [x[i] for x in outputs[levels:]],
                                        self.meta["strides"], factor, self.meta["test_cfg"])
            keep = s >= np.float32(score_thr)
            out.append(Detections(b[keep].astype(np.float64), s[keep].astype(np.float64), lab[keep].astype(np.int64)))
        return out
