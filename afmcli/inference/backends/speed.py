"""The mmdet backend's speed options (`afm infer --fuse-conv-bn`, `--fp16`, `--channels-last`),
each checked against the untransformed model where it could go wrong."""

from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import numpy as np
import torch

from afmcli.errors import warn


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


def probe_image(size: int = 256) -> np.ndarray:
    """A fixed noise image (BGR uint8) for checking a model transformation."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
