"""--channels-last / load_model(channels_last=True): weights and activations in NHWC memory
give the NCHW detections up to rounding, for TOOD and for AFMNet (whose RoIAlign and CARAFE
are mmcv kernels that read memory as NCHW); a model that misreads channels-last memory, or
refuses it, is checked on the probe image and runs NCHW, with a warning (the fingerprint
test: test_infer_fp16.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from mmdet.models.necks import FPN

import afmcli
from afmcli.errors import AfmWarning
from afmcli.inference.backends.speed import full_float32
from test_infer_e2e import CONFIG, save_tiny_checkpoint
from test_infer_fuse_conv_bn import assert_same_detections

AFMNET = Path(__file__).resolve().parents[1] / "configs" / "AFM" / "afmnet_tiny_synth.py"
CL = torch.channels_last


@pytest.fixture(scope="module")
def image(synth_split):
    return cv2.imread(str(sorted(synth_split.images.glob("*.jpg"))[0]))


def conv_weights(model) -> list[torch.Tensor]:
    return [m.weight for m in model.module.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("config", [CONFIG, AFMNET], ids=["tood", "afmnet"])
def test_channels_last_gives_the_nchw_detections(config, image, tmp_path, recwarn):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", config)
    plain = afmcli.load_model(config, checkpoint)
    nhwc = afmcli.load_model(config, checkpoint, channels_last=True)
    assert not [w for w in recwarn if issubclass(w.category, AfmWarning)]
    assert nhwc.channels_last and "channels-last" in repr(nhwc) and "channels-last" not in repr(plain)
    # 3x3 and larger kernels: a 1x1 kernel's two layouts are the same strides
    weights = [w for w in conv_weights(nhwc) if w.shape[-1] > 1]
    assert len(weights) > 10 and all(w.is_contiguous(memory_format=CL) and not w.is_contiguous() for w in weights)
    features = []
    nhwc.module.backbone.register_forward_hook(lambda _m, _a, out: features.extend(out))
    assert_same_detections(plain([image])[0], nhwc([image])[0])
    # the activations follow the weights: the backbone hands the neck channels-last maps
    assert features and all(f.is_contiguous(memory_format=CL) and not f.is_contiguous() for f in features)


def misread_as_nchw(x: torch.Tensor) -> torch.Tensor:
    """``x``'s memory read with NCHW strides, as a kernel that takes a data pointer does."""
    return torch.as_strided(x, x.shape, torch.empty(x.shape).stride())


def refuse_non_contiguous(x: torch.Tensor) -> torch.Tensor:
    """A flat view, which a channels-last map cannot give (mmcv's deform_conv2d refuses it too)."""
    return x.view(x.shape[0], -1).view(x.shape)


@pytest.mark.parametrize("op,reason", [(misread_as_nchw, "outputs differ from NCHW's"),
                                       (refuse_non_contiguous, "view size is not compatible")],
                         ids=["misreads", "refuses"])
def test_a_model_that_cannot_run_channels_last_runs_nchw(op, reason, image, tmp_path, monkeypatch):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    want = afmcli.load_model(CONFIG, checkpoint)([image])[0]
    forward = FPN.forward
    monkeypatch.setattr(FPN, "forward", lambda self, inputs: tuple(op(x) for x in forward(self, inputs)))
    with pytest.warns(AfmWarning, match=f"TOOD does not run channels-last \\(.*{reason}.*\\); running it NCHW"):
        model = afmcli.load_model(CONFIG, checkpoint, channels_last=True)
    assert not model.channels_last and "channels-last" not in repr(model)
    assert all(w.is_contiguous() for w in conv_weights(model))
    # back in NCHW the operator reads its input right: the plain model's detections
    assert_same_detections(want, model([image])[0])


def test_the_probes_run_in_full_float32_and_restore_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for before in (True, False):  # (cuBLAS's flags are a module's, which monkeypatch cannot set)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = before
            with pytest.raises(ZeroDivisionError), full_float32():
                assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
                1 / 0
            assert torch.backends.cudnn.allow_tf32 is before and torch.backends.cuda.matmul.allow_tf32 is before
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_afmnet_runs_channels_last_and_folded_on_cuda(image, tmp_path, monkeypatch, recwarn):
    """With TF32 on (PyTorch's default for convolutions) both probes pass; mmcv's CUDA CARAFE
    and RoIAlign get contiguous inputs: NCHW's detections, compared in full float32."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth", AFMNET)
    nhwc = afmcli.load_model(AFMNET, checkpoint, device="cuda:0", channels_last=True, fuse_conv_bn=True)
    assert nhwc.channels_last and not [w for w in recwarn if issubclass(w.category, AfmWarning)]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in nhwc.module.backbone.modules())
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    plain = afmcli.load_model(AFMNET, checkpoint, device="cuda:0")
    assert_same_detections(plain([image])[0], nhwc([image])[0])
