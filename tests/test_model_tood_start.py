"""Round 4: AFMNet (and every ablation step) started from a TOOD checkpoint predicts, at
step 0, exactly what that TOOD predicts; each new part starts as the identity and learns."""

import copy

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine import MessageHub
from mmengine.config import Config

import afmcli.models  # noqa: F401  (registers the modules)

register_all_modules()
TINY_TOOD, TINY_AFMNET = 'configs/AFM/tood_tiny_synth.py', 'configs/AFM/afmnet_tiny_synth.py'
# the ablation steps on the tiny AFMNet, as bench/bench_accuracy.py trains them
TINY_STEPS = {'CFPN': dict(p2_neck=None, mask_estimator=None, affm=None, irfi=None, hd_head=None),
              'CFPN+FPD': dict(p2_neck=None, affm=None, irfi=None, hd_head=None),
              'CFPN+HD': dict(mask_estimator=None, affm=None, irfi=None),
              'CFPN+HD+FPD': dict(affm=None, irfi=None),
              'CFPN+HD+FPD+AFFM': dict(irfi=None),
              'AFMNet': dict()}
R50_CONFIGS = ['configs/AFM/ablation/tood_r50_cfpn.py', 'configs/AFM/ablation/tood_r50_cfpn_fpd.py',
               'configs/AFM/ablation/tood_r50_cfpn_hd.py', 'configs/AFM/ablation/tood_r50_cfpn_hd_fpd.py',
               'configs/AFM/ablation/tood_r50_cfpn_hd_fpd_affm.py', 'configs/AFM/AFMNet-tood_r50_k13.py']


@pytest.fixture(autouse=True)
def epoch_zero():
    MessageHub.get_current_instance().update_info('epoch', 0)


def model_cfg(path, **changes):
    cfg = Config.fromfile(path, import_custom_modules=False).model
    for key, value in changes.items():
        cfg[key] = value
    if cfg.backbone.get('init_cfg'):
        cfg.backbone.init_cfg = None  # no ImageNet download
    return cfg


def trained(cfg, seed):
    """A model with weights that are not its initial ones (a 'trained' checkpoint's): every
    parameter moved, and class biases that put scores above the threshold, so detections exist."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for head in (model.bbox_head, getattr(model, 'hd_head', None)):
            if head is not None:
                head.tood_cls.bias.fill_(0.0)
    return model.eval()


def batch(h=128, w=160, n=2):
    gen = torch.Generator().manual_seed(3)
    samples = [DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                           pad_shape=(h, w), batch_input_shape=(h, w))) for _ in range(n)]
    return torch.randn(n, 3, h, w, generator=gen), samples


def predictions(model, inputs, samples):
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(inputs, copy.deepcopy(samples))]


def assert_same_detections(ours, theirs):
    for a, b in zip(ours, theirs):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.bboxes, b.bboxes, rtol=0, atol=1e-3)
        assert torch.equal(a.labels, b.labels)


def load_from(path, cfg_path, tmp_path, **model_changes):
    """The model as `afm train` / mmengine's Runner builds it and loads `load_from` (the config's
    own init first, then the checkpoint), in eval mode."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(cfg_path)
    for key, value in model_changes.items():
        cfg.model[key] = value
    if cfg.model.backbone.get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    cfg.work_dir, cfg.load_from, cfg.resume = str(tmp_path / 'work'), str(path), False
    cfg.model.hd_init_from_main = True  # as bench_accuracy's stage 2 sets it
    runner = Runner.from_cfg(cfg)
    runner._init_model_weights()  # what Runner.train() does first, then load_or_resume
    runner.load_or_resume()
    return runner.model.eval()


def save(model, path):
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.mark.parametrize('step', list(TINY_STEPS))
def test_a_model_started_from_tood_predicts_what_tood_predicts(step, tmp_path):
    """Through mmengine's Runner load_from: the main head's detections and the merged output
    equal TOOD's (CFPN = FPN with nearest upsampling, mask modulation gated at 0, the HD head's
    boxes kept out of the merge until it has trained)."""
    tood = trained(model_cfg(TINY_TOOD), seed=1)
    model = load_from(save(tood, tmp_path / 'tood.pth'), TINY_AFMNET, tmp_path, **TINY_STEPS[step])
    inputs, samples = batch()
    theirs = predictions(tood, inputs, samples)
    assert_same_detections(predictions(model, inputs, samples), theirs)
    if model.hd_head is not None:
        model.test_heads = 'main'
        assert_same_detections(predictions(model, inputs, samples), theirs)
        model.test_heads = 'hd'  # the HD head itself predicts (from the main head's weights)
        assert sum(len(p) for p in predictions(model, inputs, samples)) > 0


@pytest.mark.parametrize('step', list(TINY_STEPS)[:-1])
def test_afmnet_started_from_an_ablation_step_predicts_what_that_step_predicts(step, tmp_path):
    """load_from a checkpoint of each ablation step (every weight moved, its gates too): AFMNet's
    main head predicts what the step's does; so does the merged output where the HD head sees
    what it saw (no HD head, or windows from AFFM: IRFI starts as the identity). From a dense
    HD head (no AFFM) the HD head moves to windows, so its boxes change."""
    source = trained(model_cfg(TINY_AFMNET, **TINY_STEPS[step]), seed=2)
    with torch.no_grad():
        source.hd_merge_step.fill_(10_000)  # trained: an HD head fully in the merge, none without one
        if source.affm is not None:
            source.affm.main_gate.fill_(0.7)
    model = load_from(save(source, tmp_path / 'step.pth'), TINY_AFMNET, tmp_path)
    inputs, samples = batch()
    source.test_heads = model.test_heads = 'main'
    assert_same_detections(predictions(model, inputs, samples), predictions(source, inputs, samples))
    if source.hd_head is None or source.affm is not None:
        source.test_heads = model.test_heads = 'both'
        assert_same_detections(predictions(model, inputs, samples), predictions(source, inputs, samples))


@pytest.mark.slow
@pytest.mark.parametrize('config', R50_CONFIGS)
def test_each_published_ablation_config_started_from_an_r50_tood_predicts_as_it(config, tmp_path):
    """The R50 configs as shipped (configs/AFM/ablation/*, AFMNet), from a TOOD R50 checkpoint."""
    tood = trained(model_cfg('configs/AFM/tood_r50_visdrone.py'), seed=4)
    model = load_from(save(tood, tmp_path / 'tood.pth'), config, tmp_path)
    inputs, samples = batch(128, 128, 1)
    assert_same_detections(predictions(model, inputs, samples), predictions(tood, inputs, samples))


# -- the parts that start as the identity --------------------------------------------------

@pytest.mark.parametrize('k', [3, 5])
def test_nearest_start_carafe_is_nearest_exactly_and_its_gate_learns(k):
    from afmcli.models.carafe import CARAFEUpsample, NearestStartCARAFE

    torch.manual_seed(0)
    up = NearestStartCARAFE(channels=8, scale_factor=2, up_kernel=k, compressed_channels=4)
    up.init_weights()
    x = torch.randn(2, 8, 5, 7)
    out = up(x)
    assert torch.equal(out, F.interpolate(x, scale_factor=2, mode='nearest'))
    out.square().sum().backward()
    assert up.gate.grad.abs() > 0  # the way out of nearest
    plain = CARAFEUpsample(channels=8, scale_factor=2, up_kernel=k, compressed_channels=4)
    plain.load_state_dict({k_: v for k_, v in up.state_dict().items() if k_ != 'gate'})
    with torch.no_grad():
        up.gate.fill_(1.0)
        torch.testing.assert_close(up(x), plain(x))  # gate 1: plain CARAFE
        up.gate.fill_(0.5)
        torch.testing.assert_close(up(x), (plain(x) + F.interpolate(x, scale_factor=2)) / 2)
    with pytest.raises(ValueError, match='no centre tap'):
        NearestStartCARAFE(channels=8, scale_factor=2, up_kernel=4)


def test_affm_main_gate_starts_at_identity_and_learns():
    from afmcli.models.affm import AFFM

    affm = AFFM(main_gate_init=0.0)
    feat, logits = torch.randn(1, 4, 6, 6), torch.randn(1, 1, 3, 3, requires_grad=True)
    out = affm.enhance_main(feat, logits)
    assert torch.equal(out, feat)
    out.sum().backward()
    assert affm.main_gate.grad.abs() > 0
    ungated = AFFM()  # round 3's: no gate
    assert torch.equal(ungated.enhance_main(feat, logits), AFFM.enhance(feat, logits)[0])


def test_hd_boxes_enter_the_merge_over_the_warm_up():
    model = trained(model_cfg(TINY_AFMNET, hd_merge_warmup=50), seed=5)
    inputs, samples = batch()
    model.test_heads = 'main'
    main = predictions(model, inputs, samples)
    model.test_heads = 'both'
    assert_same_detections(predictions(model, inputs, samples), main)  # step 0
    model.merge_cfg.update(by_role=True, small_area=32 * 32)  # by role: after the warm-up only
    assert_same_detections(predictions(model, inputs, samples), main)
    model.merge_cfg.pop('by_role')
    model.train()
    model.loss(inputs, [s.clone() for s in with_boxes(samples)])
    assert float(model.hd_merge_step) == 1  # each training iteration counts
    model.eval()
    with torch.no_grad():
        model.hd_merge_step.fill_(25)
    assert float(model.hd_merge_ramp()) == 0.5
    model.hd_merge_step.fill_(50)
    merged = predictions(model, inputs, samples)
    assert any(len(a) != len(b) or not torch.equal(a.bboxes, b.bboxes) for a, b in zip(merged, main))  # HD in
    model.hd_merge_warmup = 0  # no warm-up: always in
    model.hd_merge_step.fill_(0)
    assert float(model.hd_merge_ramp()) == 1


def with_boxes(samples):
    from mmengine.structures import InstanceData

    for s in samples:
        s.gt_instances = InstanceData(bboxes=torch.tensor([[10., 10., 30., 26.], [40., 50., 90., 110.]]),
                                      labels=torch.tensor([1, 3]))
    return samples


def test_round_3_checkpoints_keep_the_merge_and_the_modulation_they_were_trained_with(tmp_path):
    """An AFMNet checkpoint from before round 4 (no hd_merge_step, no affm.main_gate) loads as
    it was scored: the HD head fully merged, P4 * (1 + m_l)."""
    source = trained(model_cfg(TINY_AFMNET), seed=6)
    state = {k: v for k, v in source.state_dict().items() if k not in ('hd_merge_step', 'affm.main_gate')}
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'round3.pth')
    model = load_from(tmp_path / 'round3.pth', TINY_AFMNET, tmp_path)
    assert float(model.hd_merge_ramp()) == 1 and float(model.affm.main_gate) == 1
    # round 3's own config (no hd_merge_warmup, no main_gate_init) builds round 3's model: the
    # same keys, so `afm infer`'s strict check passes, and the same predictions
    cfg = model_cfg(TINY_AFMNET)
    del cfg['hd_merge_warmup'], cfg.affm['main_gate_init']
    old = MODELS.build(cfg)
    assert set(old.state_dict()) == set(state)
    old.load_state_dict(state, strict=True)
    inputs, samples = batch()
    assert_same_detections(predictions(old.eval(), inputs, samples), predictions(model, inputs, samples))


# -- loading another neck by roles ---------------------------------------------------------

TINY_NECK = dict(in_channels=[16, 32, 64, 128], out_channels=64, start_level=1, num_outs=5)


def neck(type_, **kw):
    torch.manual_seed(7)
    cfg = dict(TINY_NECK, type=type_, **kw)
    if type_ in ('FPN', 'CFPN'):
        cfg.setdefault('add_extra_convs', 'on_output')
    if type_ == 'CARAFEFPN':
        cfg['upsample_cfg'] = dict(type='carafe', up_kernel=3, up_group=1, encoder_kernel=3, encoder_dilation=1,
                                   compressed_channels=16)
    m = MODELS.build(cfg)
    m.init_weights()
    return m


def load_neck(target, source_state):
    from mmengine.runner.checkpoint import load_state_dict

    load_state_dict(target, source_state)


def features():
    gen = torch.Generator().manual_seed(8)
    return tuple(torch.randn(1, c, 64 // 2 ** i, 48 // 2 ** i, generator=gen) for i, c in enumerate([16, 32, 64, 128]))


def test_cfpn_takes_toods_fpn_weights_in_their_roles_and_gives_its_features():
    from afmcli.models.necks import neck_roles

    fpn, cfpn = neck('FPN'), neck('CFPN')
    roles = neck_roles('FPN', 3, 5)
    assert roles['fpn_convs.3'] == roles['fpn_convs.4'].replace('4', '3') \
        == 'stride-2 conv making extra level 3 from the output below'
    assert neck_roles('CFPN', 3, 5)['fpn_convs.3'] == roles['fpn_convs.3']
    load_neck(cfpn, fpn.state_dict())
    for key, value in fpn.state_dict().items():
        assert torch.equal(cfpn.state_dict()[key], value), key
    with torch.no_grad():
        for ours, theirs in zip(cfpn(features()), fpn(features())):
            assert torch.equal(ours, theirs)


def test_fpn_carafe_never_takes_toods_p6_p7_convs_into_its_same_named_3x3_convs():
    """mmdet's FPN_CARAFE has fpn_convs.3/4 of TOOD's shapes in another role: TOOD's laterals
    and P3..P5 output convs load, its P6/P7 stride-2 convs are left out (the old load put them
    into FPN_CARAFE's 3x3 convs after the top-down merge)."""
    from afmcli.models.necks import neck_roles

    fpn, carafe_fpn = neck('FPN'), neck('CARAFEFPN')
    assert carafe_fpn.fpn_convs[3].conv.weight.shape == fpn.fpn_convs[3].conv.weight.shape  # the trap
    assert 'stride-2' not in neck_roles('FPN_CARAFE', 3, 5)['fpn_convs.3']
    before = copy.deepcopy(carafe_fpn.state_dict())
    load_neck(carafe_fpn, fpn.state_dict())
    after, theirs = carafe_fpn.state_dict(), fpn.state_dict()
    for i in range(3):
        assert torch.equal(after[f'lateral_convs.{i}.conv.weight'], theirs[f'lateral_convs.{i}.conv.weight'])
        assert torch.equal(after[f'fpn_convs.{i}.conv.weight'], theirs[f'fpn_convs.{i}.conv.weight'])
    for i in (3, 4):
        assert torch.equal(after[f'fpn_convs.{i}.conv.weight'], before[f'fpn_convs.{i}.conv.weight'])


def test_a_neck_of_another_topology_or_size_is_refused_in_one_line():
    from afmcli.errors import AfmError

    with pytest.raises(AfmError, match="neck is mmdet's FPN_CARAFE .* load it into neck type CARAFEFPN") as info:
        load_neck(neck('CFPN'), neck('CARAFEFPN').state_dict())
    assert '\n' not in str(info.value)
    with pytest.raises(AfmError, match='neck is FPN with CARAFE'):
        load_neck(neck('CARAFEFPN'), neck('CFPN').state_dict())
    big = MODELS.build(dict(TINY_NECK, type='FPN', out_channels=96, add_extra_convs='on_output'))
    with pytest.raises(AfmError, match=r"lateral_convs.0.conv.weight \(1x1 lateral of input level 0\) has shape "
                                       r"\(96, 32, 1, 1\), lateral_convs.0.conv.weight here needs \(64, 32, 1, 1\)"):
        load_neck(neck('CFPN'), big.state_dict())
    with pytest.raises(AfmError, match='smooth.0.weight: no such module'):
        load_neck(neck('CFPN'), {**neck('FPN').state_dict(), 'smooth.0.weight': torch.zeros(1)})


def test_a_wrong_neck_in_load_from_is_one_line_from_the_runner(tmp_path):
    """The refusal reaches the user through mmengine's Runner as the AfmError (one line in afm)."""
    from afmcli.errors import AfmError

    source = trained(model_cfg(TINY_AFMNET, neck=dict(type='CARAFEFPN', **TINY_NECK,
                                                      upsample_cfg=dict(type='carafe', up_kernel=3,
                                                                        compressed_channels=16))), seed=9)
    with pytest.raises(AfmError, match="checkpoint's neck is mmdet's FPN_CARAFE"):
        load_from(save(source, tmp_path / 'fpn_carafe.pth'), TINY_AFMNET, tmp_path)


def test_a_trained_main_gate_reloads_as_trained_without_the_hd_warm_up():
    """hd_merge_warmup=0 (no count saved): the checkpoint's own affm.main_gate loads as it is
    (infer, resume), never replaced by the pre-round-4 factor 1 meant for checkpoints without one."""
    cfg = model_cfg(TINY_AFMNET, hd_merge_warmup=0)
    source = trained(cfg, seed=10)
    with torch.no_grad():
        source.affm.main_gate.fill_(0.3)
    model = MODELS.build(cfg)
    model.load_state_dict(source.state_dict(), strict=True)
    assert float(model.affm.main_gate) == pytest.approx(0.3)


def test_a_plain_carafe_cfpn_checkpoint_keeps_its_kernels_in_a_nearest_start_cfpn():
    """A CFPN trained with plain CARAFE (upsample_cfg type 'carafe', no gate) ran its kernels
    fully: loaded into the default CFPN (carafe_nearest) it gives the same features (gate 1),
    not nearest upsampling with its trained kernels unused."""
    up = dict(up_kernel=3, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=16)
    plain, nearest = neck('CFPN', upsample_cfg=dict(type='carafe', **up)), neck('CFPN', upsample_cfg=dict(type='carafe_nearest', **up))
    load_neck(nearest, plain.state_dict())
    assert [float(m.gate) for m in nearest.upsample_modules] == [1.0, 1.0]
    with torch.no_grad():
        for ours, theirs in zip(nearest(features()), plain(features())):
            torch.testing.assert_close(ours, theirs)


def test_the_affm_gate_keeps_the_features_dtype():
    """Under AMP P4 stays in half precision as the ungated modulation leaves it (the gate is
    an fp32 parameter of shape (1,), which type promotion would otherwise spread)."""
    from afmcli.models.affm import AFFM

    feat, logits = torch.randn(1, 4, 6, 6, dtype=torch.bfloat16), torch.randn(1, 1, 3, 3, dtype=torch.bfloat16)
    assert AFFM(main_gate_init=0.5).enhance_main(feat, logits).dtype == torch.bfloat16
