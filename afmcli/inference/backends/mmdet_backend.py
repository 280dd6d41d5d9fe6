"""A detector from an mmdet config + checkpoint (:func:`load_model`), run on numpy images
in true batches.

The test pipeline is the config's (``test_dataloader.dataset.pipeline``) with its
file-loading steps replaced by ``LoadImageFromNDArray``: tiles are crops of an
image already in memory. One ``model.test_step`` per batch does the
data_preprocessor (normalise, pad, stack) and the forward pass.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from afmcli.detections import Detections
from afmcli.engine.class_keys import set_num_classes
from afmcli.errors import AfmError, ParameterError
from afmcli.inference.backends.speed import fuse_backbone_conv_bn, float32_boxes_under_fp16, probe_image, to_channels_last
from afmcli.inference.backends.steps import ndarray_pipeline


def config_classes(cfg) -> tuple[str, ...]:
    """Class names of the config's test set (its metainfo, else its dataset type's)."""
    from mmdet.registry import DATASETS

    dataset = cfg.test_dataloader.dataset
    classes = (dataset.get("metainfo") or {}).get("classes")
    if classes is None:
        dataset_cls = DATASETS.get(dataset.get("type", ""))
        classes = getattr(dataset_cls, "METAINFO", {}).get("classes")
    if not classes:
        raise AfmError(f"{cfg.filename}: cannot tell the class names (set test_dataloader.dataset.metainfo.classes)")
    return tuple(classes)


def with_classes(cfg, classes: Sequence[str]):
    """A copy of ``cfg`` for ``classes``: the test set's metainfo and every ``num_classes`` of the
    model (each head's), so that a checkpoint trained on another class list than the config's
    builds the model it was trained as."""
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader.dataset.setdefault("metainfo", {})["classes"] = tuple(classes)
    set_num_classes(cfg.model, len(classes))
    return cfg


def state_dict_mismatch(model_shapes: Mapping[str, tuple], ckpt_shapes: Mapping[str, tuple]) -> str | None:
    """One line describing how a checkpoint's tensors differ from a model's, or None."""
    missing = [k for k in model_shapes if k not in ckpt_shapes]
    unexpected = [k for k in ckpt_shapes if k not in model_shapes]
    shapes = [k for k in model_shapes if k in ckpt_shapes and tuple(model_shapes[k]) != tuple(ckpt_shapes[k])]
    problems = []
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint {list(ckpt_shapes[k])} "
                        f"vs model {list(model_shapes[k])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
    return "; ".join(problems) or None


def load_model(config, checkpoint: str | os.PathLike, device: str = "cpu", trust: bool = False,
               fuse_conv_bn: bool = False, fp16: bool = False, channels_last: bool = False) -> "Model":
    """Build the config's detector, load the checkpoint strictly, put it in eval mode on ``device``.

    ``config``: a config file or an already parsed mmengine Config. The class names are the
    checkpoint's (``meta.dataset_meta.classes``; the model is built for them, :func:`with_classes`),
    else the config's (:func:`config_classes`). A checkpoint that does not fit the config
    (other architecture, other class count without names) is an AfmError naming both files; it is loaded with ``weights_only=True`` and mmengine's allow-list unless
    ``trust`` (afmcli.engine.checkpoint). ``fuse_conv_bn``: fold the backbone's BatchNorms
    into its convolutions (:func:`fuse_backbone_conv_bn`; detections equal up to rounding).
    ``fp16``: run the forward passes under float16 autocast (mmdet's ``fp16`` test mode), the
    boxes kept in float32 (:class:`Model`). ``channels_last``: weights and activations in NHWC
    memory (:func:`to_channels_last`, checked on a probe image). Heads that decode as TOODHead decode each batch
    at once (afmcli.models.batched_predict: mmdet's results, fewer operators and host syncs).
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from afmcli.engine.checkpoint import checkpoint_classes, load_checkpoint_file
    from afmcli.engine.train import load_config
    from afmcli.models.batched_predict import batch_tood_decoding

    checkpoint = Path(checkpoint)
    cfg = config if hasattr(config, "to_dict") else load_config(config)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"{{device}} {device}: CUDA is not available on this machine", "device")
    register_all_modules()
    ckpt = load_checkpoint_file(checkpoint, map_location="cpu", trust=trust)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise AfmError(f"{checkpoint}: no state_dict in this checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    classes = checkpoint_classes(ckpt)
    if classes is not None:
        cfg = with_classes(cfg, classes)
    classes = config_classes(cfg)
    model = MODELS.build(cfg.model)
    head_classes = getattr(getattr(model, "bbox_head", None), "num_classes", len(classes))
    if head_classes != len(classes):
        raise AfmError(f"{cfg.filename}: the model has {head_classes} classes but the test set lists {len(classes)}")
    problem = state_dict_mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()},
                                  {k: tuple(getattr(v, "shape", ())) for k, v in state.items()})
    if problem:
        raise AfmError(f"{checkpoint} does not match {cfg.filename}: {problem}")
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    batch_tood_decoding(model)
    if fuse_conv_bn:
        fuse_backbone_conv_bn(model)
    return Model(model, cfg, classes, device, fp16, channels_last)


class TilePipeline:
    """The config's test pipeline on numpy BGR images, collated for ``model.test_step``.

    Picklable (built lazily, in the process that uses it): it runs in DataLoader
    workers, so decoding and resizing overlap the forward passes.
    """

    def __init__(self, cfg):
        self.steps = ndarray_pipeline(cfg.test_dataloader.dataset.pipeline)
        self.scope = cfg.get("default_scope", "mmdet")
        self._compose = None

    def __getstate__(self):
        return {**self.__dict__, "_compose": None}

    def __call__(self, images: Sequence[np.ndarray]) -> dict:
        from mmengine.dataset import Compose, pseudo_collate
        from mmengine.registry import DefaultScope
        from mmdet.utils import register_all_modules

        if self._compose is None:
            register_all_modules(init_default_scope=False)
            # Types without a scope resolve in the config's scope, in a spawned worker too.
            with DefaultScope.overwrite_default_scope(self.scope):
                self._compose = Compose(self.steps)
        return pseudo_collate([self._compose(dict(img=img, img_id=i)) for i, img in enumerate(images)])


class Model:
    """A loaded detector (:func:`load_model`): the mmdet model in eval mode on ``device``,
    its config, its class names and its test pipeline for images in memory; ``fp16``: its
    forward passes run under float16 autocast, its boxes in float32 (:func:`float32_boxes_under_fp16`);
    ``channels_last``: its weights in NHWC memory where the probe image allows it
    (:func:`to_channels_last`; the attribute says whether it did). Both are applied to
    ``module`` here, so the model and its flags cannot part."""

    def __init__(self, module, cfg, classes: tuple[str, ...], device: str, fp16: bool = False,
                 channels_last: bool = False):
        self.module, self.cfg, self.classes, self.device, self.fp16 = module, cfg, classes, device, fp16
        if fp16:
            float32_boxes_under_fp16(module)
        self.pipeline = TilePipeline(cfg)
        self.channels_last = channels_last and to_channels_last(module, self.pipeline([probe_image()]))
        self._device_tiles = None
        self._uploaded: tuple[object, torch.Tensor] | None = None  # (the host image, its copy on the device)

    @property
    def nms_device(self) -> str:
        """Where fusion's NMS runs: the model's device."""
        return self.device

    def device_tiles(self):
        """The test pipeline's work on the device (afmcli.inference.device_tiles); a
        ParameterError where the pipeline has steps that cannot move there."""
        if self._device_tiles is None:
            from afmcli.inference.device_tiles import DeviceTiles

            self._device_tiles = DeviceTiles(self.pipeline.steps)
        return self._device_tiles

    def __repr__(self) -> str:
        return f"Model({Path(self.cfg.filename).name}, {len(self.classes)} classes, {self.device}" \
               f"{', fp16' if self.fp16 else ''}{', channels-last' if self.channels_last else ''})"

    def __call__(self, images: Sequence[np.ndarray], score_thr: float = 0.0) -> list[Detections]:
        """Detections per BGR image (one batch), in that image's pixels, labels as class indices."""
        return self.forward(self.pipeline(images), score_thr)

    def forward_windows(self, image, windows: np.ndarray, score_thr: float = 0.0) -> list[Detections]:
        """Detections per crop ``windows`` (xyxy) of ``image`` (H, W, 3 BGR uint8, an array
        or a pinned tensor), cut and resized on the model's device: the image is copied
        there once for all the units that pass the same object in a row."""
        if self._uploaded is None or self._uploaded[0] is not image:
            self._uploaded = (image, torch.as_tensor(image).to(self.device, non_blocking=True))
        return self.forward(self.device_tiles().batch(self._uploaded[1], windows), score_thr)

    @torch.no_grad()
    def forward(self, data: dict, score_thr: float = 0.0) -> list[Detections]:
        """Detections per image of a batch made by :class:`TilePipeline`, scoring at least ``score_thr``."""
        with torch.autocast(torch.device(self.device).type, dtype=torch.float16, enabled=self.fp16):
            preds = [sample.pred_instances for sample in self.module.test_step(data)]
        # One copy to the host per field for the whole batch, not three per image.
        ends = np.cumsum([len(p.scores) for p in preds])[:-1]
        boxes, scores, labels = (np.split(torch.cat([getattr(p, key) for p in preds]).cpu().numpy(), ends)
                                 for key in ("bboxes", "scores", "labels"))
        out = []
        for b, s, lab in zip(boxes, scores, labels):
            keep = s >= np.asarray(score_thr, dtype=s.dtype)  # compared in the scores' dtype, as torch does
            out.append(Detections(b[keep].astype(np.float64), s[keep].astype(np.float64), lab[keep]))
        return out
