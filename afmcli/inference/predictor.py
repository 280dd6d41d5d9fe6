"""A detector from an mmdet config + checkpoint (:func:`load_model`), run on numpy images
in true batches.

The test pipeline is the config's (``test_dataloader.dataset.pipeline``) with its
file-loading steps replaced by ``LoadImageFromNDArray``: tiles are crops of an
image already in memory. One ``model.test_step`` per batch does the
data_preprocessor (normalise, pad, stack) and the forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from afmcli.detections import Detections
from afmcli.errors import AfmError, ParameterError, warn


def step_type(step: Mapping) -> str:
    t = step.get("type")
    return (t if isinstance(t, str) else getattr(t, "__name__", str(t))).split(".")[-1]


def ndarray_pipeline(pipeline_cfg: Sequence[Mapping]) -> list[dict]:
    """The test pipeline fed with arrays: every ``Load*`` step (image, annotations,
    masks from files) is dropped and ``LoadImageFromNDArray`` goes first."""
    steps = [copy.deepcopy(dict(s)) for s in pipeline_cfg if not step_type(s).startswith("Load")]
    return [dict(type="mmdet.LoadImageFromNDArray"), *steps]


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


def checkpoint_classes(ckpt) -> tuple[str, ...] | None:
    """The class names a checkpoint records (mmengine saves ``meta.dataset_meta.classes``), or None."""
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    classes = ((meta or {}).get("dataset_meta") or {}).get("classes")
    return tuple(classes) if classes else None


def with_classes(cfg, classes: Sequence[str]):
    """A copy of ``cfg`` for ``classes``: the test set's metainfo and every ``num_classes`` of the
    model (each head's), so that a checkpoint trained on another class list than the config's
    builds the model it was trained as."""
    cfg = copy.deepcopy(cfg)
    cfg.test_dataloader.dataset.setdefault("metainfo", {})["classes"] = tuple(classes)
    stack = [cfg.model]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if "num_classes" in node:
                node["num_classes"] = len(classes)
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
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


@contextlib.contextmanager
def full_float32():
    """TF32 off for cuDNN's convolutions and CUDA's matmuls while checking a transformed model
    against the original: with TF32 (PyTorch's default for convolutions on Ampere and later, a
    10-bit mantissa) two layouts or two algorithms differ by 1e-3, which a check at float32's
    rounding would take for a wrong model."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def same_up_to_rounding(want: Sequence[torch.Tensor], got: Sequence[torch.Tensor], rtol: float) -> bool:
    """Whether two models' outputs are the same tensors up to ``rtol`` of each one's largest magnitude."""
    return len(want) == len(got) and all(
        a.shape == b.shape and bool((a - b).abs().max() <= rtol * a.abs().max().clamp_min(1e-6))
        for a, b in zip(want, got))


def fuse_backbone_conv_bn(module: torch.nn.Module) -> bool:
    """Fold the backbone's eval-mode BatchNorms into the convolutions before them (mmcv's
    ``fuse_conv_bn``), one pass over each feature map less. True when fused.

    mmcv pairs a BN with the conv registered just before it: right for mmdet's ResNets, not
    for every backbone. So the fused copy replaces the backbone only if it reproduces the
    original's features on a probe image; otherwise a warning, and the model is unchanged.
    """
    from mmcv.cnn import fuse_conv_bn

    backbone = getattr(module, "backbone", None)
    if backbone is None or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in backbone.modules()):
        return False
    fused = fuse_conv_bn(copy.deepcopy(backbone))
    param = next(backbone.parameters())
    probe = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(param.device, param.dtype)
    with torch.no_grad(), full_float32():
        want, got = backbone(probe), fused(probe)
    want, got = (want, got) if isinstance(want, (tuple, list)) else ((want,), (got,))
    # Folding changes only the rounding: a relative error of about 1e-6 in fp32.
    if not same_up_to_rounding(want, got, 1e-4):
        warn(f"{{fuse_conv_bn}}: {type(backbone).__name__}'s BatchNorms do not each follow the conv "
             "registered before them; running it unfused", "fuse_conv_bn")
        return False
    module.backbone = fused
    return True


def float32_boxes_under_fp16(module: torch.nn.Module) -> None:
    """Under fp16 autocast, keep boxes in float32: only the convolutions run in half precision.

    Every dense head's outputs are cast back (a forward hook), so decoding, score thresholds
    and NMS see float32; TOOD's ``deform_sampling``, which moves the boxes by its offsets
    inside the head, runs in float32 too (in float16 a box at 500 px rounds by 0.25 px, a
    lot for a 10-px object's IoU).
    """
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    from afmcli.models.losses import as_float32, in_float32

    for head in module.modules():
        if isinstance(head, BaseDenseHead):
            head.register_forward_hook(lambda _head, _args, output: as_float32(output))
            if hasattr(head, "deform_sampling"):
                head.deform_sampling = in_float32(head.deform_sampling)


def dense_head_outputs(module: torch.nn.Module, data: dict) -> list[torch.Tensor]:
    """Every tensor the detector's dense heads output while ``module.test_step(data)`` runs (float32)."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    seen: list[torch.Tensor] = []

    def record(_head, _args, output):
        stack = [output]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                seen.append(item.detach().float())
            elif isinstance(item, (tuple, list)):
                stack.extend(reversed(item))

    hooks = [m.register_forward_hook(record) for m in module.modules() if isinstance(m, BaseDenseHead)]
    try:
        with torch.no_grad(), full_float32():
            module.test_step(data)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def to_channels_last(module: torch.nn.Module, probe: dict) -> bool:
    """Store the detector's 4-D weights channels-last (NHWC), so that its convolutions take and
    give channels-last activations (cuDNN's tensor-core layout; on a GPU an NCHW half-precision
    convolution pays a transposition). True when converted.

    An operator that reads its input's memory as NCHW gives wrong numbers on a channels-last
    tensor without a word (mmcv's roi_align does; afmcli's models hand it contiguous tensors).
    So the model stays channels-last only if its dense heads' outputs on ``probe`` (a batch of
    the test pipeline) equal the NCHW ones up to rounding; otherwise a warning, back to NCHW.
    """
    want = dense_head_outputs(module, probe)
    module.to(memory_format=torch.channels_last)
    try:
        got = dense_head_outputs(module, probe)
    except RuntimeError as error:  # an op that refuses non-contiguous input (mmcv's deform_conv2d)
        got, reason = None, str(error).splitlines()[0]
    else:
        reason = "its outputs differ from NCHW's (an operator reads its input's memory as NCHW)"
    # The layout changes only the convolutions' summation order: a relative error of about 1e-6.
    if got is not None and same_up_to_rounding(want, got, 1e-3):
        return True
    module.to(memory_format=torch.contiguous_format)
    warn(f"{{channels_last}}: {type(module).__name__} does not run channels-last ({reason}); running it NCHW",
         "channels_last")
    return False


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

    from afmcli.engine.checkpoint import load_checkpoint_file
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


def probe_image(size: int = 256) -> np.ndarray:
    """A fixed noise image (BGR uint8) for checking a model transformation."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


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
