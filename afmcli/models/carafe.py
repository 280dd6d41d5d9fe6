"""CARAFE upsampling that runs everywhere: mmcv's CUDA kernel on GPU, pure PyTorch on CPU.

mmcv ships CARAFE kernels for CUDA only, so mmdet's FPN_CARAFE cannot run on a CPU box.
`carafe_torch` reproduces the kernel's semantics exactly (see
mmcv/ops/csrc/common/cuda/carafe_cuda_kernel.cuh):

    out[n, c, y, x] = sum_{i,j < k} feat[n, c, y//s + i - r, x//s + j - r]
                                    * mask[n, g*k*k + i*k + j, y, x]

with r = (k-1)//2, g = c // (C/G) the channel's group, and zeros outside the source map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.ops.carafe import CARAFEPack, carafe
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor


class _CarafeTorch(torch.autograd.Function):
    """Tap-by-tap CARAFE with a hand-written backward.

    Memory-aware: no unfolded (N, C*k*k, sH*sW) tensor. Each of the k*k taps reads a
    shifted view of the zero-padded source map, broadcast over the s*s sub-pixel offsets,
    and is accumulated in place (addcmul_) into the output. Autograd's own backward would
    allocate a zero-filled padded map for every slice; this one accumulates into one.
    """

    @staticmethod
    def forward(ctx, features: Tensor, masks: Tensor, k: int, g: int, s: int) -> Tensor:
        n, c, h, w = features.shape
        padded = _pad_taps(features, k).view(n, g, c // g, h + k - 1, w + k - 1)
        taps = masks.view(n, g, k * k, h, s, w, s)
        out = features.new_zeros(n, g, c // g, h, s, w, s)
        for t in range(k * k):
            i, j = divmod(t, k)
            out.addcmul_(padded[..., i:i + h, None, j:j + w, None], taps[:, :, None, t])
        ctx.save_for_backward(features, masks)
        ctx.params = (k, g, s)
        # (h, s, w, s) is row-major (y = h*s + a, x = w*s + b): a plain view.
        return out.view(n, c, h * s, w * s)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        features, masks = ctx.saved_tensors
        k, g, s = ctx.params
        n, c, h, w = features.shape
        padded = _pad_taps(features, k).view(n, g, c // g, h + k - 1, w + k - 1)
        # Offset-major copies (n, g, a, b, ..., h, w): every product below is then between
        # contiguous source-resolution maps, which is several times faster than strided ones.
        go = grad_out.reshape(n, g, c // g, h, s, w, s).permute(0, 1, 4, 6, 2, 3, 5).contiguous()
        taps = masks.view(n, g, k * k, h, s, w, s).permute(0, 1, 2, 4, 6, 3, 5).contiguous()
        grad_padded = torch.zeros_like(padded)
        grad_taps = torch.empty_like(taps)
        for t in range(k * k):
            i, j = divmod(t, k)
            window = padded[..., i:i + h, j:j + w]
            for a in range(s):
                for b in range(s):
                    grad_padded[..., i:i + h, j:j + w].addcmul_(go[:, :, a, b], taps[:, :, t, a, b, None])
                    grad_taps[:, :, t, a, b] = (go[:, :, a, b] * window).sum(2)
        r = (k - 1) // 2
        grad_features = grad_padded[..., r:r + h, r:r + w].reshape(n, c, h, w)
        grad_masks = grad_taps.permute(0, 1, 2, 5, 3, 6, 4).reshape(masks.shape)
        return grad_features, grad_masks, None, None, None


def _pad_taps(features: Tensor, k: int) -> Tensor:
    """Zero-pad so that tap (i, j) of source pixel (y, x) is padded[y + i, x + j]."""
    r = (k - 1) // 2
    return F.pad(features, (r, k - 1 - r, r, k - 1 - r))


def carafe_torch(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                 scale_factor: int) -> Tensor:
    """Pure PyTorch CARAFE with mmcv's semantics (features N,C,H,W; masks N,G*k*k,sH,sW)."""
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    if c % g or masks.shape != (n, g * k * k, h * s, w * s):
        raise ValueError(f"carafe: features {tuple(features.shape)} and masks {tuple(masks.shape)} "
                         f"do not match kernel {k}, group {g}, scale {s}")
    return _CarafeTorch.apply(features.contiguous(), masks.contiguous(), k, g, s)


def carafe_any(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
               scale_factor: int) -> Tensor:
    """mmcv's CUDA kernel where it exists, the PyTorch one elsewhere.

    Both take one dtype. Under autocast the mask (a softmax) comes out float32 while the
    features are half, so mixed inputs run in the wider of the two.
    """
    if features.dtype != masks.dtype:
        dtype = torch.promote_types(features.dtype, masks.dtype)
        features, masks = features.to(dtype), masks.to(dtype)
    if features.is_cuda:
        return carafe(features, masks, kernel_size, group_size, scale_factor)
    return carafe_torch(features, masks, kernel_size, group_size, scale_factor)


@MMENGINE_MODELS.register_module(name='carafe_any')
class CARAFEUpsample(CARAFEPack):
    """mmcv's CARAFEPack (same arguments, same state_dict keys) that also runs on CPU."""

    def feature_reassemble(self, x: Tensor, mask: Tensor) -> Tensor:
        return carafe_any(x, mask, self.up_kernel, self.up_group, self.scale_factor)
