"""mmcv's IoU NMS without mmcv, for the backends that run without it (afmcli.inference.backends).

:func:`batched_nms` is ``mmcv.ops.batched_nms``: per-class coordinate offsets (class by class
from ``split_thr`` boxes on), then one NMS that suppresses IoU > thr, kept boxes best first.
The NMS is ONNX Runtime's ``NonMaxSuppression`` kernel, whose IoU is mmcv's (float32,
``inter / (area1 + area2 - inter)``, suppressed when above the threshold): the same boxes
are kept; only the order of exactly tied scores may differ (tests/test_onnx_export.py holds
it against a direct transcription of mmcv's loop).
"""

from __future__ import annotations

import functools

import numpy as np

SPLIT_THR = 10000  # mmcv's batched_nms default


@functools.lru_cache(maxsize=1)
def _session():
    """A one-node ONNX Runtime graph: NonMaxSuppression over one batch and one class."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou"], ["selected"],
                            center_point_box=0)
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, None]),
         helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the kept boxes (x1 y1 x2 y2), best score first."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    # NonMaxSuppression's corner boxes are (y1, x1, y2, x2): IoU is symmetric in the axes
    selected = _session().run(None, {"boxes": boxes[None], "scores": scores[None, None],
                                     "max_out": np.array([len(boxes)], np.int64),
                                     "iou": np.array([iou_threshold], np.float32)})[0][:, 2]
    return selected[np.argsort(-scores[selected], kind="stable")]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float,
                class_agnostic: bool = False) -> np.ndarray:
    """Indices of the boxes kept by a per-class NMS (``class_agnostic``: one NMS), best first."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    if class_agnostic:
        return nms(boxes, scores, iou_threshold)
    if len(boxes) < SPLIT_THR:
        offsets = np.asarray(labels).astype(np.float32) * (boxes.max() + np.float32(1))
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep = np.concatenate([np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
                           for c in np.unique(labels)])
    return keep[np.argsort(-scores[keep], kind="stable")]
