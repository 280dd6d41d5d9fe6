"""Mixed precision: TOOD's classification losses must run under autocast (issue 12, item 1).

CUDA autocast refuses ``F.binary_cross_entropy`` (mmdetection#10203), which mmdet's
FocalLoss and QualityFocalLoss call with ``activated=True``. CPU autocast does not refuse
it, so the CPU tests put the same refusal in place and check that every config's TOOD
losses still run, in float32. The GPU tests run one real AMP training step per model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ['configs/AFM/tood_r50_visdrone.py', 'configs/AFM/AFMNet-tood_r50_k13.py',
           'configs/AFM/tood_tiny_synth.py', 'configs/AFM/afmnet_tiny_synth.py']


@pytest.fixture
def bce_refused_under_autocast(monkeypatch):
    """F.binary_cross_entropy raising under any autocast, as CUDA's autocast does."""
    original = F.binary_cross_entropy

    def refusing(input, *args, **kwargs):
        if torch.is_autocast_enabled(input.device.type):
            raise RuntimeError('torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss '
                               'are unsafe to autocast.')
        return original(input, *args, **kwargs)

    monkeypatch.setattr(F, 'binary_cross_entropy', refusing)


def head_losses(config: str) -> dict:
    """name -> built loss module, for the classification losses of every TOOD head."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import afmcli.models  # noqa: F401

    model = Config.fromfile(str(ROOT / config)).model
    heads = {'bbox_head': model.bbox_head}
    if model.get('hd_head'):
        heads['hd_head'] = model.hd_head
    return {f'{head}.{key}': MODELS.build(cfg[key]) for head, cfg in heads.items()
            for key in ('initial_loss_cls', 'loss_cls')}


@pytest.mark.parametrize('config', CONFIGS)
def test_every_tood_classification_loss_runs_in_float32_under_autocast(config, bce_refused_under_autocast):
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(50, 10, generator=gen).clamp(0.01, 0.99)  # activated: probabilities
    labels = torch.randint(0, 11, (50,), generator=gen)  # 10 = background
    scores = torch.rand(50, generator=gen)
    weight = torch.ones(50)
    losses = head_losses(config)
    assert len(losses) == (4 if 'afmnet' in config.lower() else 2)
    for name, loss in losses.items():
        target = labels if 'initial' in name else (labels, scores)
        reference = loss(pred, target, weight, avg_factor=7.0)  # float32, no autocast
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = loss(pred.bfloat16(), (labels, scores.bfloat16()) if 'initial' not in name else labels,
                       weight.bfloat16(), avg_factor=7.0)
        assert amp.dtype == torch.float32, name
        # The bf16 inputs lose precision, the loss itself is computed in float32.
        torch.testing.assert_close(amp, reference, rtol=2e-2, atol=0, msg=name)
        assert float(reference) > 0


def test_fp32_losses_equal_mmdets_outside_autocast():
    from mmdet.models.losses import FocalLoss, QualityFocalLoss

    from afmcli.models import FocalLossFP32, QualityFocalLossFP32

    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(30, 10, generator=gen).clamp(0.01, 0.99)
    labels = torch.randint(0, 11, (30,), generator=gen)
    scores = torch.rand(30, generator=gen)
    kw = dict(use_sigmoid=True, activated=True)
    assert torch.equal(FocalLossFP32(**kw)(pred, labels), FocalLoss(**kw)(pred, labels))
    assert torch.equal(QualityFocalLossFP32(**kw)(pred, (labels, scores)),
                       QualityFocalLoss(**kw)(pred, (labels, scores)))


def test_carafe_runs_on_mixed_dtypes_as_autocast_gives_them():
    """Under autocast CARAFE's mask (a softmax) is float32 and its features half: the mask
    follows the features, so mmcv's kernel runs in half, within half precision of float32."""
    from afmcli.models import carafe_any

    gen = torch.Generator().manual_seed(2)
    feat = torch.randn(1, 4, 5, 6, generator=gen)
    mask = torch.randn(1, 25, 10, 12, generator=gen).softmax(1)
    out = carafe_any(feat.bfloat16(), mask, 5, 1, 2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, carafe_any(feat.bfloat16(), mask.bfloat16(), 5, 1, 2))
    torch.testing.assert_close(out.float(), carafe_any(feat, mask, 5, 1, 2), rtol=3e-2, atol=3e-2)


def amp_train_step(config: str, size=(640, 512), steps: int = 6) -> dict:
    """One training step through mmengine's AmpOptimWrapper (fp16 autocast + loss scaling)."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine import MessageHub
    from mmengine.config import Config
    from mmengine.optim import AmpOptimWrapper
    from mmengine.structures import InstanceData

    import afmcli.models  # noqa: F401

    cfg = Config.fromfile(str(ROOT / config))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).cuda()
    model.init_weights()
    model.train()
    w, h = size
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
        xy = torch.rand(40, 2, generator=gen) * torch.tensor([w - 60.0, h - 60.0])
        wh = 4 + torch.rand(40, 2, generator=gen) ** 2 * 50
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                      labels=torch.randint(0, 10, (40,), generator=gen))
        samples.append(s)
    MessageHub.get_current_instance().update_info('epoch', 5)  # TOOD's TaskAligned phase (the Runner sets it)
    optim = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # fp16 loss scaling starts at 2**16: steps whose gradients overflow are skipped and the
    # scale halves, as in any AMP run; a few steps reach one that updates the weights.
    for _ in range(steps):
        log_vars = model.train_step(dict(inputs=inputs, data_samples=samples), optim)
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters() if n in before)
    return dict(log_vars={k: float(v) for k, v in log_vars.items()}, changed=changed, total=len(before),
                scale=float(optim.loss_scaler.get_scale()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('config', ['configs/AFM/tood_r50_visdrone.py', 'configs/AFM/AFMNet-tood_r50_k13.py'])
def test_one_amp_training_step_on_cuda(config):
    result = amp_train_step(config)
    print(config, result['log_vars'], f"{result['changed']}/{result['total']} parameters updated,"
          f" loss scale {result['scale']:g}")
    assert all(torch.isfinite(torch.tensor(v)) for v in result['log_vars'].values())
    assert result['log_vars']['loss'] > 0
    if 'AFMNet' in config:
        assert any(k.startswith('hd_') for k in result['log_vars'])
    assert result['changed'] > result['total'] // 2
