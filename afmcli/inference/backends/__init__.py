"""Backends of `afm infer` and the API: what runs a batch of tiles (the ``model`` of
afmcli.inference.predict). One file per backend behind :class:`Detector`:
mmdet_backend (config + checkpoint, PyTorch; its speed options in speed.py) and
onnx_runtime (an `afm export`ed model, without mmcv, mmdet or mmengine).

The run's fingerprint (afmcli.inference.state) reads what defines a backend's model before
it is loaded: the config (or the ONNX model's metadata) and the weights file.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from afmcli.detections import Detections


class Detector(Protocol):
    classes: tuple[str, ...]  # class names; labels are indices into them
    device: str  # where it runs (cpu, cuda:N, ...)
    nms_device: str  # where fusion's NMS runs (a torch device, or numpy)
    # the test pipeline's geometry: BGR uint8 images -> one batch for forward (picklable: runs in workers)
    pipeline: Callable[[Sequence[np.ndarray]], dict]

    def forward(self, batch: dict, score_thr: float = 0.0) -> list[Detections]:
        """Detections per image of a ``pipeline`` batch, in that image's pixels, scoring at least ``score_thr``."""

    def forward_windows(self, image, windows: np.ndarray, score_thr: float = 0.0) -> list[Detections]:
        """Detections per crop ``windows`` (xyxy) of ``image``."""

    def device_tiles(self):
        """The tiles' cutting on the device (`--device-tiles`), or a ParameterError where it cannot."""
