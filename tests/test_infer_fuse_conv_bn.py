"""--fuse-conv-bn / load_model(fuse_conv_bn=True): the backbone's BatchNorms folded into its
convolutions give the same detections; a backbone whose BNs mmcv would pair with the wrong
conv is left unfused, with a warning (the fingerprint test: test_infer_fp16.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import afmcli
from afmcli.errors import AfmWarning
from afmcli.inference.backends.speed import fuse_backbone_conv_bn
from test_infer_e2e import CONFIG, save_tiny_checkpoint

BN = torch.nn.modules.batchnorm._BatchNorm


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny checkpoint with BatchNorm statistics far from the identity (as training leaves them)."""
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("fuse") / "tiny.pth")
    ckpt = torch.load(path, weights_only=True)
    g = torch.Generator().manual_seed(1)
    for key, value in ckpt["state_dict"].items():
        if key.startswith("backbone.") and value.dtype.is_floating_point and value.dim() == 1:
            # weight, bias, running_mean, running_var: all positive in [0.5, 1.5] (a valid var)
            ckpt["state_dict"][key] = 0.5 + torch.rand(value.shape, generator=g)
    torch.save(ckpt, path)
    return path


def count_bn(module) -> int:
    return sum(isinstance(m, BN) for m in module.modules())


def test_fused_backbone_gives_the_same_detections(checkpoint, synth_split):
    plain = afmcli.load_model(CONFIG, checkpoint)
    fused = afmcli.load_model(CONFIG, checkpoint, fuse_conv_bn=True)
    assert count_bn(plain.module.backbone) == 20 and count_bn(fused.module.backbone) == 0
    image = cv2.imread(str(sorted(synth_split.images.glob("*.jpg"))[0]))
    assert_same_detections(plain([image])[0], fused([image])[0])


def assert_same_detections(want, got) -> None:
    """The same detections, one for one, up to float rounding; two whose scores tie to 1e-6
    may come out in either order (convolutions that round differently, and the CPU's vector
    width decides)."""
    assert len(want.boxes) > 10 and len(got.boxes) == len(want.boxes)
    taken = set()
    for box, score, label in zip(want.boxes, want.scores, want.labels):
        near = (np.abs(got.boxes - box).max(axis=1) < 1e-2) & (np.abs(got.scores - score) < 1e-4)
        match = [j for j in np.flatnonzero(near & (got.labels == label)) if j not in taken]
        assert match, (box, score, label)
        taken.add(match[0])
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)  # the order by score holds


class BnAfterTheOtherConv(torch.nn.Module):
    """bn normalises conv_a's output, but conv_b is registered between them: mmcv would fold
    bn into conv_b."""

    def __init__(self):
        super().__init__()
        self.conv_a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = torch.nn.Conv2d(3, 4, 1)
        self.bn = torch.nn.BatchNorm2d(4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(0.5, 1.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return (self.bn(self.conv_a(x)) + self.conv_b(x),)


def test_a_backbone_that_mmcv_would_fuse_wrongly_is_left_unfused():
    detector = torch.nn.Module()
    detector.backbone = BnAfterTheOtherConv().eval()
    original = detector.backbone
    with pytest.warns(AfmWarning, match="BnAfterTheOtherConv's BatchNorms do not each follow"):
        assert fuse_backbone_conv_bn(detector) is False
    assert detector.backbone is original and count_bn(original) == 1

