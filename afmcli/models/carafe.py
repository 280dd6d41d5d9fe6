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
    """CARAFE in channels-last layout, one output row band at a time, hand-written backward.

    Channels-last puts the C/G channels of a group innermost, so every product runs over
    contiguous memory, and working one source row at a time keeps the band in cache while
    all k*k taps accumulate into it (5-6x faster on CPU than whole-map strided passes).
    Forward: each tap reads a shifted row of the zero-padded source, broadcast over the
    s*s sub-pixel offsets, and is accumulated in place. Backward: per source row two
    batched matrix products per pixel: grad_masks (s*s, k*k) = grad_out (s*s, C/G) @
    patches^T, grad_patches (k*k, C/G) = masks (k*k, s*s) @ grad_out, the latter added
    tap by tap into one padded buffer. Extra memory is O(output).
    """

    @staticmethod
    def forward(ctx, features: Tensor, masks: Tensor, k: int, g: int, s: int) -> Tensor:
        n, c, h, w = features.shape
        padded = _padded_channels_last(features, k, g)  # (n, g, h+k-1, w+k-1, c/g)
        taps = masks.view(n, g, k * k, h, s, w, s)
        out = features.new_empty(n, g, h, s, w, s, c // g)
        for y in range(h):
            row = out[:, :, y]
            for t in range(k * k):
                i, j = divmod(t, k)
                source, tap = padded[:, :, y + i, None, j:j + w, None], taps[:, :, t, y, ..., None]
                if t == 0:
                    torch.mul(source, tap, out=row)
                else:
                    row.addcmul_(source, tap)
        ctx.save_for_backward(features, masks)
        ctx.params = (k, g, s)
        return out.permute(0, 1, 6, 2, 3, 4, 5).reshape(n, c, h * s, w * s)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        features, masks = ctx.saved_tensors
        k, g, s = ctx.params
        n, c, h, w = features.shape
        cg = c // g
        padded = _padded_channels_last(features, k, g)
        # per source pixel: grad (s*s, c/g), masks (k*k, s*s)
        grad = grad_out.reshape(n, g, cg, h, s, w, s).permute(0, 1, 3, 5, 4, 6, 2).reshape(n, g, h, w, s * s, cg)
        taps = masks.view(n, g, k * k, h, s, w, s).permute(0, 1, 3, 5, 2, 4, 6).reshape(n, g, h, w, k * k, s * s)
        grad_padded = torch.zeros_like(padded)
        grad_taps = features.new_empty(n, g, h, w, s * s, k * k)
        for y in range(h):
            torch.matmul(grad[:, :, y], _patches(padded, y, k, w).transpose(-1, -2), out=grad_taps[:, :, y])
            grad_patches = torch.matmul(taps[:, :, y], grad[:, :, y])  # (n, g, w, k*k, c/g)
            for t in range(k * k):
                i, j = divmod(t, k)
                grad_padded[:, :, y + i, j:j + w] += grad_patches[:, :, :, t]
        r = (k - 1) // 2
        grad_features = grad_padded[:, :, r:r + h, r:r + w].permute(0, 1, 4, 2, 3).reshape(n, c, h, w)
        grad_masks = grad_taps.view(n, g, h, w, s, s, k * k).permute(0, 1, 6, 2, 4, 3, 5).reshape(masks.shape)
        return grad_features, grad_masks, None, None, None


def _padded_channels_last(features: Tensor, k: int, g: int) -> Tensor:
    """(n, g, h+k-1, w+k-1, c/g) zero-padded copy: tap (i, j) of source pixel (y, x) is
    padded[:, :, y + i, x + j]."""
    n, c, h, w = features.shape
    r = (k - 1) // 2
    padded = F.pad(features, (r, k - 1 - r, r, k - 1 - r))
    return padded.view(n, g, c // g, h + k - 1, w + k - 1).permute(0, 1, 3, 4, 2).contiguous()


def _patches(padded: Tensor, y: int, k: int, w: int) -> Tensor:
    """(n, g, w, k*k, c/g): the k x k neighbourhood of each pixel of source row y."""
    n, g, _, _, cg = padded.shape
    sn, sg, sh, sw, sc = padded.stride()
    return padded.as_strided((n, g, w, k, k, cg), (sn, sg, sw, sh, sw, sc),
                             padded.storage_offset() + y * sh).reshape(n, g, w, k * k, cg)


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
    features are half: the mask follows the features (its weights sum to 1 over k*k taps, so
    half precision loses nothing that the half features keep), and the kernel runs in half.
    mmcv's kernel reads its inputs' memory as NCHW: channels-last tensors are made contiguous.
    """
    masks = masks.to(features.dtype)
    if features.is_cuda:
        return carafe(features.contiguous(), masks.contiguous(), kernel_size, group_size, scale_factor)
    return carafe_torch(features, masks, kernel_size, group_size, scale_factor)


@MMENGINE_MODELS.register_module(name='carafe_any')
class CARAFEUpsample(CARAFEPack):
    """mmcv's CARAFEPack (same arguments, same state_dict keys) that also runs on CPU."""

    def feature_reassemble(self, x: Tensor, mask: Tensor) -> Tensor:
        return carafe_any(x, mask, self.up_kernel, self.up_group, self.scale_factor)

    @property
    def reach(self) -> int:
        """Source cells beyond a cell that its output reads: the reassembly kernel's radius
        or the content encoder's, whichever is larger."""
        return max((self.up_kernel - 1) // 2, (self.encoder_kernel - 1) * self.encoder_dilation // 2)

    def forward_in_map(self, x: Tensor, inside: Tensor) -> Tensor:
        """forward on crops of a map (zeros beyond it; `inside` (M, 1, h, w) 1 within): the
        compressed features are zeroed beyond the map, where the whole-map encoder conv reads
        its zero padding, so at least `reach` cells from a crop's edge the output equals the
        whole map's."""
        mask = self.kernel_normalizer(self.content_encoder(self.channel_compressor(x) * inside))
        return self.feature_reassemble(x, mask)


@MMENGINE_MODELS.register_module(name='carafe_nearest')
class NearestStartCARAFE(CARAFEUpsample):
    """CARAFE that starts as nearest upsampling and learns its way to content-aware kernels.

    The reassembly kernel is `onehot + gate * (softmax(encoder) - onehot)`, onehot the
    centre tap of each group (nearest: out[y, x] reads in[y // s, x // s]) and `gate` one
    learned scalar that starts at 0: the output is then exactly nearest (1 * x + 0 * rest),
    while the gate's gradient (the difference CARAFE's kernels would make) is not zero. A
    softmax peaked by a large encoder bias would reproduce nearest only to float noise and
    saturate, so its encoder would get no gradient. gate = 1 is plain CARAFE; still a
    CARAFE kernel (taps sum to 1 per group), so mmcv's CUDA kernel runs it unchanged.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.up_kernel % 2 == 0:
            raise ValueError(f'carafe_nearest: up_kernel {self.up_kernel} has no centre tap (use an odd size)')
        self.gate = torch.nn.Parameter(torch.zeros(1))
        k2 = self.up_kernel ** 2
        onehot = torch.zeros(self.up_group, k2)
        onehot[:, k2 // 2] = 1.0  # tap (r, r) of an odd kernel
        self.register_buffer('nearest_kernel', onehot.view(1, -1, 1, 1), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        # a plain CARAFE's checkpoint (kernels, no gate) ran its kernels fully: gate 1, not nearest
        if prefix + 'gate' not in state_dict and prefix + 'content_encoder.weight' in state_dict:
            state_dict[prefix + 'gate'] = torch.ones(1)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def kernel_normalizer(self, mask: Tensor) -> Tensor:
        soft = super().kernel_normalizer(mask)
        nearest = self.nearest_kernel.to(soft.dtype)
        return nearest + self.gate.to(soft.dtype) * (soft - nearest)
