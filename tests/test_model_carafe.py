"""CARAFE on CPU: pure PyTorch kernel against a direct transcription of mmcv's CUDA kernel."""

import numpy as np
import pytest
import torch
from mmcv.ops.carafe import CARAFEPack

import afmcli.models  # noqa: F401  (registers the modules)
from afmcli.models.carafe import CARAFEUpsample, carafe_any, carafe_torch
from afmcli.models.necks import CARAFEFPN, P2Feature


def carafe_reference(feat: np.ndarray, mask: np.ndarray, k: int, g: int, s: int) -> np.ndarray:
    """Loop-for-loop the forward of mmcv/ops/csrc/common/cuda/carafe_cuda_kernel.cuh."""
    n, c, dh, dw = feat.shape
    h, w = dh * s, dw * s
    out = np.zeros((n, c, h, w))
    channels_per_group = -(-c // g)
    for b in range(n):
        for ch in range(c):
            grp = ch // channels_per_group
            for ph in range(h):
                for pw in range(w):
                    down_ph, down_pw = ph // s, pw // s
                    val = 0.0
                    for iy in range(down_ph - (k - 1) // 2, down_ph + (k - 1) // 2 + 1):
                        for ix in range(down_pw - (k - 1) // 2, down_pw + (k - 1) // 2 + 1):
                            if iy < 0 or iy > dh - 1 or ix < 0 or ix > dw - 1:
                                continue
                            mask_c = (grp * k + iy - down_ph + (k - 1) // 2) * k + ix - down_pw + (k - 1) // 2
                            val += feat[b, ch, iy, ix] * mask[b, mask_c, ph, pw]
                    out[b, ch, ph, pw] = val
    return out


@pytest.mark.parametrize("k,g,s,c,h,w", [(5, 1, 2, 3, 4, 5), (3, 2, 2, 4, 3, 3), (3, 1, 3, 2, 2, 4),
                                         (1, 1, 2, 2, 3, 3)])
def test_carafe_torch_matches_cuda_kernel_semantics(k, g, s, c, h, w):
    gen = torch.Generator().manual_seed(k * 100 + g * 10 + s)
    feat = torch.randn(2, c, h, w, generator=gen, dtype=torch.float64)
    mask = torch.randn(2, g * k * k, h * s, w * s, generator=gen, dtype=torch.float64)
    got = carafe_torch(feat, mask, k, g, s)
    want = carafe_reference(feat.numpy(), mask.numpy(), k, g, s)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_carafe_torch_hand_case_border_zeros():
    # 1x1 source pixel of value 2; a 3x3 kernel only sees it at its centre tap (index 4).
    feat = torch.tensor([[[[2.0]]]])
    mask = torch.zeros(1, 9, 2, 2)
    mask[0, 4] = torch.tensor([[1.0, 0.5], [0.25, 0.0]])
    mask[0, 0] = 100.0  # taps outside the map read zeros
    out = carafe_torch(feat, mask, 3, 1, 2)
    assert out.tolist() == [[[[2.0, 1.0], [0.5, 0.0]]]]


def test_carafe_torch_gradients_match_reference_autograd():
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.randn(1, 9, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, m: carafe_torch(f, m, 3, 1, 2), (feat, mask))
    feat = torch.randn(1, 4, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.randn(1, 18, 9, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, m: carafe_torch(f, m, 3, 2, 3), (feat, mask))


def carafe_autograd_reference(feat, mask, k, g, s):
    """CARAFE from plain differentiable ops (unfold, repeat, multiply, sum): autograd's
    gradients are the reference for the hand-written backward."""
    n, c, h, w = feat.shape
    r = (k - 1) // 2
    patches = torch.nn.functional.unfold(torch.nn.functional.pad(feat, (r, k - 1 - r, r, k - 1 - r)), k)
    patches = patches.view(n, g, c // g, k * k, h, w).repeat_interleave(s, -2).repeat_interleave(s, -1)
    return (patches * mask.view(n, g, 1, k * k, h * s, w * s)).sum(3).reshape(n, c, h * s, w * s)


@pytest.mark.parametrize("k,g,s", [(5, 1, 2), (3, 2, 2), (3, 1, 3)])
def test_carafe_torch_forward_and_backward_match_autograd_reference(k, g, s):
    """float32, a 16-channel map: outputs and both gradients within 1e-5 of the reference."""
    gen = torch.Generator().manual_seed(7)
    feat = torch.randn(2, 16, 9, 11, generator=gen)
    mask = torch.randn(2, g * k * k, 9 * s, 11 * s, generator=gen).softmax(1)
    grad = torch.randn(2, 16, 9 * s, 11 * s, generator=gen)
    results = []
    for fn in (carafe_torch, carafe_autograd_reference):
        f, m = feat.clone().requires_grad_(), mask.clone().requires_grad_()
        out = fn(f, m, k, g, s)
        out.backward(grad)
        results.append((out.detach(), f.grad, m.grad))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_carafe_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="do not match"):
        carafe_torch(torch.zeros(1, 2, 3, 3), torch.zeros(1, 9, 5, 6), 3, 1, 2)


def test_upsampler_keeps_carafepack_state_dict_and_runs_on_cpu():
    ours = CARAFEUpsample(channels=8, scale_factor=2, compressed_channels=4)
    theirs = CARAFEPack(channels=8, scale_factor=2, compressed_channels=4)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    assert ours(torch.randn(1, 8, 5, 7)).shape == (1, 8, 10, 14)


def test_cfpn_loads_fpn_carafe_weights_and_runs_on_cpu():
    from mmdet.models.necks import FPN_CARAFE

    kwargs = dict(in_channels=[8, 16, 32, 64], out_channels=16, start_level=1, num_outs=5,
                  upsample_cfg=dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3,
                                    encoder_dilation=1, compressed_channels=8))
    theirs, ours = FPN_CARAFE(**kwargs), CARAFEFPN(**kwargs)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys and shapes
    assert sum(isinstance(m, CARAFEUpsample) for m in ours.modules()) == 4  # 2 top-down + 2 extra
    feats = [torch.randn(1, c, 64 // 2 ** i, 64 // 2 ** i) for i, c in enumerate([8, 16, 32, 64])]
    assert [tuple(o.shape[-2:]) for o in ours(feats)] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


def test_p2_feature_shape_and_uses_both_inputs():
    p2 = P2Feature(in_channels=8, out_channels=16, upsample_cfg=dict(type='carafe_any', compressed_channels=8))
    p2.init_weights()
    c2, p3 = torch.randn(1, 8, 16, 20), torch.randn(1, 16, 8, 10)
    out = p2(c2, p3)
    assert out.shape == (1, 16, 16, 20)
    assert not torch.allclose(out, p2(c2, p3 * 2))
    assert not torch.allclose(out, p2(c2 * 2, p3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("k,g", [(5, 1), (3, 2)])
def test_carafe_torch_matches_mmcv_cuda_forward_and_backward(k, g):
    from mmcv.ops.carafe import carafe

    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 8, 13, 17, generator=gen)
    mask = torch.randn(2, g * k * k, 26, 34, generator=gen).softmax(1)
    grad = torch.randn(2, 8, 26, 34, generator=gen)
    results = []
    for fn, dev in ((carafe, 'cuda'), (carafe_torch, 'cpu')):
        f = feat.to(dev).requires_grad_()
        m = mask.to(dev).requires_grad_()
        out = fn(f, m, k, g, 2)
        out.backward(grad.to(dev))
        results.append([t.detach().cpu() for t in (out, f.grad, m.grad)])
    for name, cuda_t, cpu_t in zip(('output', 'grad features', 'grad masks'), *results):
        print(f"CARAFE k={k} g={g} {name}: max |torch - mmcv CUDA| = {(cpu_t - cuda_t).abs().max():.2e}")
        torch.testing.assert_close(cpu_t, cuda_t, rtol=1e-4, atol=1e-4)
    assert carafe_any(feat.cuda(), mask.cuda(), k, g, 2).is_cuda
