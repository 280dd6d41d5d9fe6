"""afmcli.models.batched_predict: TOODHead's decoding of a whole batch at once gives mmdet's
detections exactly, with a few host syncs per batch instead of eight per image; heads that
decode otherwise keep mmdet's code; and Model.forward's one copy per field splits right."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
from mmdet.models.dense_heads import ATSSHead, TOODHead
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from afmcli.models.batched_predict import batch_tood_decoding, batched_predict_by_feat, decodes_as_tood
from test_model_afmnet import build, make_batch, tiny_model_cfg

STRIDES = (8, 16, 32)
TEST_CFG = dict(nms_pre=40, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                max_per_img=30)


HEAD = dict(num_classes=3, in_channels=8, stacked_convs=1, feat_channels=8, norm_cfg=dict(type='GN', num_groups=4),
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                                  strides=list(STRIDES)))


def tood_head(**test_cfg) -> TOODHead:
    return TOODHead(**HEAD, anchor_type='anchor_free', test_cfg=ConfigDict({**TEST_CFG, **test_cfg}))


def head_outputs(batch=3, hw=(16, 12), seed=0, silent=(2,)):
    """Random TOOD outputs: scores in [0, 1) per class (images in ``silent`` all below any
    threshold), boxes (in stride units, as TOODHead's forward gives them) of 0.1 to 3 strides."""
    gen = torch.Generator().manual_seed(seed)
    scores, boxes = [], []
    for level in range(len(STRIDES)):
        h, w = hw[0] >> level, hw[1] >> level
        s = torch.rand(batch, 3, h, w, generator=gen) ** 2
        s[list(silent)] *= 0.01
        xy = torch.rand(batch, 2, h, w, generator=gen) * torch.tensor([w, h]).view(1, 2, 1, 1)
        wh = 0.1 + 2.9 * torch.rand(batch, 2, h, w, generator=gen)
        scores.append(s)
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    return scores, boxes


METAS = [dict(img_shape=(128, 96), scale_factor=(1.0, 1.0)), dict(img_shape=(128, 96), scale_factor=(2.0, 1.5)),
         dict(img_shape=(128, 96), scale_factor=(0.5, 0.5))]


def assert_same(want: list[InstanceData], got: list[InstanceData], ties: bool = False) -> None:
    """Equal detections, in the same order; ``ties``: detections whose scores are exactly equal
    may come in either order (the scores themselves must still be the same sequence)."""
    assert len(want) == len(got)
    for a, b in zip(want, got):
        for key in ('bboxes', 'scores', 'labels'):
            x, y = getattr(a, key), getattr(b, key)
            assert x.shape == y.shape and x.dtype == y.dtype, key
        assert torch.equal(a.scores, b.scores)
        rows = [torch.cat([r.scores[:, None], r.labels[:, None].float(), r.bboxes], 1).tolist() for r in (a, b)]
        assert (sorted(rows[0]) == sorted(rows[1])) if ties else (rows[0] == rows[1])


@pytest.mark.parametrize('rescale', [False, True])
@pytest.mark.parametrize('test_cfg', [{}, dict(min_bbox_size=12), dict(nms_pre=1000, max_per_img=500),
                                      dict(score_thr=0.3, nms=dict(type='nms', iou_threshold=0.3))])
def test_batched_decoding_gives_mmdets_detections(test_cfg, rescale):
    head = tood_head(**test_cfg)
    scores, boxes = head_outputs()
    want = TOODHead.predict_by_feat(head, scores, boxes, batch_img_metas=METAS, rescale=rescale)
    got = batched_predict_by_feat(head, scores, boxes, batch_img_metas=METAS, rescale=rescale)
    assert_same(want, got)
    assert len(want[2]) == 0 and len(want[0]) > 5  # a silent image in the batch, and a busy one
    if test_cfg == {}:
        assert len(want[0]) == 30  # max_per_img capped it (120 candidates: nms_pre cut 3 levels to 40 each)


def test_the_cuts_are_exercised():
    """The cases above really cut: nms_pre and min_bbox_size drop candidates, max_per_img caps."""
    scores, boxes = head_outputs()
    count = {name: [len(r) for r in batched_predict_by_feat(tood_head(**cfg), scores, boxes, batch_img_metas=METAS)]
             for name, cfg in {'cut': {}, 'nms_pre': dict(max_per_img=500), 'all': dict(nms_pre=1000, max_per_img=500),
                               'size': dict(nms_pre=1000, max_per_img=500, min_bbox_size=12)}.items()}
    assert count['cut'][0] == 30 < count['nms_pre'][0] < count['all'][0]
    assert count['size'][0] < count['all'][0]


_spec = importlib.util.spec_from_file_location('bench_train', 'bench/bench_train.py')
bench_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_train)


def count_syncs(fn) -> int:
    with bench_train.op_counter() as counts:
        fn()
    return counts.syncs


def test_one_sync_for_the_batch_and_one_per_images_nms():
    head = tood_head()
    scores, boxes = head_outputs(batch=6, silent=())
    metas = METAS * 2
    mmdet = count_syncs(lambda: TOODHead.predict_by_feat(head, scores, boxes, batch_img_metas=metas, rescale=True))
    ours = count_syncs(lambda: batched_predict_by_feat(head, scores, boxes, batch_img_metas=metas, rescale=True))
    # mmdet: per image, a nonzero and a mask index per level, the mask check and the NMS
    assert mmdet == 6 * (2 * len(STRIDES) + 2)
    assert ours == 1 + 6  # the counts of all images; each image's NMS output size


def test_fallback_where_the_decoding_differs():
    head = tood_head(nms_pre=-1)  # mmdet's nms_pre <= 0 quirk: its own code keeps it
    scores, boxes = head_outputs()
    assert_same(TOODHead.predict_by_feat(head, scores, boxes, batch_img_metas=METAS),
                batched_predict_by_feat(head, scores, boxes, batch_img_metas=METAS))

    class OtherPostProcess(TOODHead):
        def _bbox_post_process(self, *args, **kwargs):
            return super()._bbox_post_process(*args, **kwargs)

    other = OtherPostProcess(**HEAD, anchor_type='anchor_free', test_cfg=ConfigDict(TEST_CFG))
    atss = ATSSHead(**HEAD)
    assert decodes_as_tood(tood_head()) and not decodes_as_tood(other) and not decodes_as_tood(atss)
    holder = torch.nn.ModuleDict(dict(tood=tood_head(), other=other, atss=atss))
    assert batch_tood_decoding(holder) == 1
    assert 'predict_by_feat' in vars(holder['tood']) and 'predict_by_feat' not in vars(holder['other'])


def test_afmnet_predicts_the_same_with_both_heads_batched():
    model = build(tiny_model_cfg())
    model.eval()
    inputs, samples = make_batch(n=3)
    with torch.no_grad():
        want = [s.pred_instances for s in model.predict(inputs, copy.deepcopy(samples))]
        assert batch_tood_decoding(model) == 2  # the main head and the HD head
        got = [s.pred_instances for s in model.predict(inputs, copy.deepcopy(samples))]
    assert sum(map(len, want)) > 20
    assert_same(want, got, ties=True)  # the random tiny model scores a few pairs exactly alike


class FakeDetector(torch.nn.Module):
    """test_step gives the prepared predictions (the batch argument is ignored)."""

    def __init__(self, preds):
        super().__init__()
        self.preds = preds

    def test_step(self, data):
        out = []
        for pred in self.preds:
            sample = DetDataSample()
            sample.pred_instances = pred
            out.append(sample)
        return out


def test_model_forward_splits_one_copy_per_field_into_images():
    from afmcli.inference.backends.mmdet_backend import Model

    thr = 0.3
    at_thr = float(np.float32(thr))  # kept: compared in float32, as torch compares
    preds = [InstanceData(bboxes=torch.tensor([[0., 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]]),
                          scores=torch.tensor([0.9, at_thr, 0.1]), labels=torch.tensor([2, 0, 1])),
             InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long)),
             InstanceData(bboxes=torch.tensor([[7., 7, 9, 9]]), scores=torch.tensor([0.5]),
                          labels=torch.tensor([1]))]
    model = Model.__new__(Model)
    model.module, model.device, model.fp16 = FakeDetector(preds), 'cpu', False
    dets = model.forward({}, thr)
    assert [len(d) for d in dets] == [2, 0, 1]
    assert dets[0].boxes.tolist() == [[0, 0, 4, 4], [1, 1, 5, 5]] and dets[0].labels.tolist() == [2, 0]
    assert dets[0].scores.tolist() == [float(np.float32(0.9)), at_thr]
    assert dets[2].boxes.tolist() == [[7, 7, 9, 9]] and dets[2].labels.tolist() == [1]
    assert dets[0].boxes.dtype == np.float64 and dets[0].scores.dtype == np.float64
    assert dets[1].boxes.shape == (0, 4)


def test_load_model_batches_the_decoding(tmp_path):
    """afmcli.load_model wires it in: a batch of B 512-px tiles (no padding: mmengine reads
    each image's padding from a host tensor) costs B + 5 host syncs (the data preprocessor's
    one, the candidate counts, one NMS per tile, one copy per field)."""
    import afmcli
    from test_infer_e2e import CONFIG, save_tiny_checkpoint

    model = afmcli.load_model(CONFIG, save_tiny_checkpoint(tmp_path / "tiny.pth"))
    assert "predict_by_feat" in vars(model.module.bbox_head)
    tiles = list(np.random.default_rng(0).integers(0, 255, (4, 512, 512, 3), dtype=np.uint8))
    data = model.pipeline(tiles)
    dets = []
    assert count_syncs(lambda: dets.extend(model.forward(data, 0.01))) == 4 + 5
    assert len(dets) == 4 and all(len(d) > 0 for d in dets)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_decoding_on_cuda_gives_mmdets_detections():
    head = tood_head(min_bbox_size=12).cuda()
    scores, boxes = head_outputs(batch=6, silent=(2,))
    scores, boxes = [s.cuda() for s in scores], [b.cuda() for b in boxes]
    metas = METAS * 2
    want = TOODHead.predict_by_feat(head, scores, boxes, batch_img_metas=metas, rescale=True)
    assert_same(want, batched_predict_by_feat(head, scores, boxes, batch_img_metas=metas, rescale=True), ties=True)
