"""Backends of `afm infer`: what runs a batch of tiles (afmcli.inference.predict's ``model``).

A backend's model has ``classes`` (class names), ``device``, ``pipeline`` (picklable: BGR
uint8 images -> one batch for ``forward``), ``forward(batch, score_thr)`` and
``forward_windows(image, windows, score_thr)`` -> one Detections per image in its pixels
(labels: class indices), ``nms_device`` (where fusion's NMS runs) and ``device_tiles()``.
mmdet's is afmcli.inference.predictor.Model; ONNX Runtime's is :mod:`.onnx_runtime`.
"""
