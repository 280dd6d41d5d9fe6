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


def carafe_torch(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
                 scale_factor: int) -> Tensor:
    """Pure PyTorch CARAFE with mmcv's semantics (features N,C,H,W; masks N,G*k*k,sH,sW).

    Memory-aware: it never builds an unfolded (N, C*k*k, sH*sW) tensor. For each of the s*s
    sub-pixel offsets it accumulates k*k shifted views of the zero-padded source map (views,
    not copies) times the matching strided mask slice, all at source resolution; autograd
    then keeps only views of two tensors that already exist.
    """
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    if c % g or masks.shape != (n, g * k * k, h * s, w * s):
        raise ValueError(f"carafe: features {tuple(features.shape)} and masks {tuple(masks.shape)} "
                         f"do not match kernel {k}, group {g}, scale {s}")
    r = (k - 1) // 2
    # Pad so that tap (i, j) of source pixel (y, x) is padded[y + i, x + j].
    padded = F.pad(features, (r, k - 1 - r, r, k - 1 - r)).view(n, g, c // g, h + k - 1, w + k - 1)
    mask_taps = masks.view(n, g, k * k, h * s, w * s)
    rows = []
    for a in range(s):
        cols = []
        for b in range(s):
            mask_ab = mask_taps[..., a::s, b::s].unsqueeze(2)  # n, g, 1, k*k, h, w
            acc = None
            for i in range(k):
                for j in range(k):
                    term = padded[..., i:i + h, j:j + w] * mask_ab[:, :, :, i * k + j]
                    acc = term if acc is None else acc + term
            cols.append(acc.reshape(n, c, h, w))
        rows.append(torch.stack(cols, dim=-1))  # n, c, h, w, s(b)
    # out[n, c, y*s + a, x*s + b] = rows[a][..., y, x, b]
    out = torch.stack(rows, dim=3)  # n, c, h, s(a), w, s(b)
    return out.reshape(n, c, h * s, w * s)


def carafe_any(features: Tensor, masks: Tensor, kernel_size: int, group_size: int,
               scale_factor: int) -> Tensor:
    """mmcv's CUDA kernel where it exists, the PyTorch one elsewhere."""
    if features.is_cuda:
        return carafe(features, masks, kernel_size, group_size, scale_factor)
    return carafe_torch(features, masks, kernel_size, group_size, scale_factor)


@MMENGINE_MODELS.register_module(name='carafe_any')
class CARAFEUpsample(CARAFEPack):
    """mmcv's CARAFEPack (same arguments, same state_dict keys) that also runs on CPU."""

    def feature_reassemble(self, x: Tensor, mask: Tensor) -> Tensor:
        return carafe_any(x, mask, self.up_kernel, self.up_group, self.scale_factor)
