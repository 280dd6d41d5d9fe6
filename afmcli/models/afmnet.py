"""AFMNet: TOOD + CFPN + FPD masks + AFFM windows + IRFI + a stride-4 HD head on the windows.

                         C2 ───────────────┐
  image ─ ResNet ─ C2..C5 ─ CFPN ─ P3..P7  │
                                │   └─ P4 * (1 + m_l) ─ main TOODHead (P3..P7) ─┐
                           P3,P4 └─ MaskEstimator ─ m_s, m_l (loss_mask_s/l)    │
        AFFM top-k windows of m_s ─ on the window crops only:                   │
          P2 = 3x3(1x1(C2) + CARAFE(P3)), P2' = P2 * (1 + m_s) ─ IRFI ─         │
          HD TOODHead (s=4); its targets and boxes per image on the cells ──────┤
                                           class-aware NMS 0.6, <= 500 ─────────┘

Every part is optional in the config (neck FPN or CARAFEFPN, mask_estimator, affm, irfi,
hd_head = None), which gives the ablation: without AFFM the HD head runs densely on P2.
"""

from __future__ import annotations

from typing import Sequence

import torch
from mmcv.ops import batched_nms
from mmdet.models.detectors import TOOD
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from mmengine import MessageHub
from mmengine.structures import InstanceData
from torch import Tensor

from afmcli.data.masks import render_object_masks_torch

from .windows import Windows, core_cells, crop_windows, full_windows, window_cells

HD_STRIDE = 4
MASK_STRIDES = (8, 16)  # P3 (small objects), P4 (large objects)
# TOODHead's layers that hd_share_tower shares; each head keeps its own Scale
TOWER = ('inter_convs', 'cls_decomp', 'reg_decomp', 'tood_cls', 'tood_reg', 'cls_prob_module', 'reg_offset_module')
TEST_HEADS = ('both', 'main', 'hd')


def hd_state_from_main(state_dict: dict, prefix: str, hd_state: dict) -> list[str]:
    """Add hd_head entries copied from bbox_head to a checkpoint that has none (in place).

    A COCO TOOD checkpoint has no HD head; the HD head is a TOODHead too, so it starts from
    the main head's weights wherever the shapes agree (its single Scale takes the stride-8
    level's). Checkpoints with hd_head keys (resume, AFMNet weights) are left alone.
    Returns the keys added.
    """
    hd_prefix, main_prefix = prefix + 'hd_head.', prefix + 'bbox_head.'
    if any(k.startswith(hd_prefix) for k in state_dict):
        return []
    added = []
    for key, value in hd_state.items():
        source = state_dict.get(main_prefix + key)
        if source is not None and source.shape == value.shape:
            state_dict[hd_prefix + key] = source.clone()
            added.append(hd_prefix + key)
    return added


def upgrade_state_dict(state_dict: dict, prefix: str, hd_merge_warmup: int | None, main_gate: bool) -> list[str]:
    """Fill, in place, the state that AFMNet checkpoints before round 4 lack, with the values
    they were trained and scored with: the HD head fully in the merge (`hd_merge_step` at the
    warm-up's end) and the main head's P4 modulated by the mask at factor 1 (`affm.main_gate`).
    Such a checkpoint has AFMNet's parts but no `hd_merge_step` (every AFMNet since has one).
    Any other checkpoint without these parts (TOOD's, an ablation step's) starts them (0:
    merged output = main head's, P4 unmodulated); without an HD head, its count is 0 whatever
    the checkpoint says. hd_merge_warmup None / main_gate False: the model has no such state
    (a config without them builds round 3's model, which loads round 3's checkpoints as they
    are, `afm infer`'s strict check included). Returns the keys filled."""
    parts = {k[len(prefix):].split('.')[0] for k in state_dict if k.startswith(prefix)}
    before_round_4 = 'hd_merge_step' not in parts and bool(parts & {'mask_estimator', 'hd_head'})
    filled = {}
    if hd_merge_warmup is not None and 'hd_head' not in parts:
        filled[prefix + 'hd_merge_step'] = torch.zeros(())
    elif hd_merge_warmup is not None and before_round_4:
        filled[prefix + 'hd_merge_step'] = torch.tensor(float(hd_merge_warmup))
    if main_gate and before_round_4 and 'mask_estimator' in parts and prefix + 'affm.main_gate' not in state_dict:
        filled[prefix + 'affm.main_gate'] = torch.ones(1)  # (a gated model run without the count has its own)
    state_dict.update(filled)
    return list(filled)


def merge_detections(parts: Sequence[InstanceData], iou_threshold: float, max_per_img: int) -> InstanceData:
    """Class-aware NMS over the union of several heads' detections, best `max_per_img` kept."""
    res = InstanceData.cat(list(parts))
    if len(res) == 0:
        return res
    _, keep = batched_nms(res.bboxes, res.scores, res.labels,
                          dict(type='nms', iou_threshold=iou_threshold))
    return res[keep[:max_per_img]]


def merge_by_role(main: InstanceData, hd: InstanceData, cores: Tensor, iou_threshold: float, max_per_img: int,
                  small_area: float = 32 * 32, by_role: bool = True) -> InstanceData:
    """Each head in its role, then `merge_detections`: small boxes (area below `small_area`)
    whose centre lies in a window core (`cores` (k, 4)) come from the HD head alone; the HD
    head gives no larger boxes. Boxes in original pixels, so `small_area` is COCO's small."""
    def small(res: InstanceData) -> Tensor:
        return (res.bboxes[:, 2] - res.bboxes[:, 0]) * (res.bboxes[:, 3] - res.bboxes[:, 1]) < small_area

    c = (main.bboxes[:, None, :2] + main.bboxes[:, None, 2:]) / 2
    in_core = ((c >= cores[:, :2]) & (c < cores[:, 2:])).all(dim=2).any(dim=1)
    return merge_detections([main[~(small(main) & in_core)], hd[small(hd)]], iou_threshold, max_per_img)


def clip_to_image(res: InstanceData, meta: dict, rescale: bool) -> InstanceData:
    """Boxes clipped to the image (original pixels with `rescale`), in place."""
    sx, sy = meta['scale_factor'] if rescale else (1.0, 1.0)
    img_h, img_w = meta['img_shape'][:2]
    res.bboxes[:, 0::2] = res.bboxes[:, 0::2].clamp(0, img_w / sx)
    res.bboxes[:, 1::2] = res.bboxes[:, 1::2].clamp(0, img_h / sy)
    return res


def window_cores(windows: Windows, image: int, meta: dict, rescale: bool) -> Tensor:
    """(k, 4) x1y1x2y2 boxes of image `image`'s window cores in output pixels (original
    with `rescale`); an invalid slot is an empty box."""
    sx, sy = meta['scale_factor'] if rescale else (1.0, 1.0)
    part = slice(image * windows.k, (image + 1) * windows.k)
    cells = windows.rows[part, 1:].to(torch.float32) * HD_STRIDE
    boxes = torch.stack([cells[:, 0] / sx, cells[:, 1] / sy, cells[:, 2] / sx, cells[:, 3] / sy], dim=1)
    return boxes * windows.valid[part, None]


@MODELS.register_module()
@MODELS.register_module(name='AFM_OS_HD_F')  # the authors' class name in their config
class AFMNet(TOOD):
    """TOOD with the AFMNet branches (see the module docstring and docs/architecture.md).

    Args beyond TOOD's:
        p2_neck: stride-4 feature (P2Feature); needed when hd_head is set.
        mask_estimator: FPD (MaskEstimator) on (P3, P4).
        affm: AFFM; needs mask_estimator. Without it the HD head is dense on P2, and so it is
            when the k windows would cover more cells than the whole map (small inputs).
        irfi: IRFI on the HD head's windows.
        hd_head: a WindowTOODHead with strides=[4]. Its train_cfg holds what differs from the
            detector's (the batched assigners); its test_cfg defaults to the detector's.
        hd_init_from_main: when a loaded checkpoint has no HD head (load_from a COCO TOOD),
            the HD head takes the main head's weights (see `hd_state_from_main`).
        hd_share_tower: the HD head runs the main head's layers (`TOWER`) with its own Scale,
            as FPN levels share one head.
        hd_merge_warmup: the HD head's detections enter the merge with their scores scaled by
            min(1, HD training iterations / hd_merge_warmup): at 0 (a detector started from TOOD)
            none pass the score threshold and the merged output is the main head's; the count
            (`hd_merge_step`) is saved in checkpoints. 0 (the default, round 3's model): no
            warm-up and no count; the configs set it.
        hd_loss_weight: factor on the HD head's losses.
        mask_render: how masks are drawn from boxes when a sample carries none
            (kwargs of afmcli.data.masks.render_object_masks: kind, small_area, ...).
        merge_cfg: how both heads' detections merge: class-aware NMS at iou_threshold, the
            best max_per_img kept; by_role=True first gives each head its role (`merge_by_role`,
            small_area in original pixels), once the HD head's merge warm-up is over.
        test_heads: 'both', or one head alone, 'main' or 'hd': what each head gives.
    """

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, p2_neck: dict | None = None,
                 mask_estimator: dict | None = None, affm: dict | None = None,
                 irfi: dict | None = None, hd_head: dict | None = None,
                 hd_init_from_main: bool = True, hd_share_tower: bool = False, hd_loss_weight: float = 1.0,
                 hd_merge_warmup: int = 0,
                 mask_render: dict = dict(kind='oval', small_area=32 * 32),
                 merge_cfg: dict = dict(iou_threshold=0.6, max_per_img=500),
                 test_heads: str = 'both',
                 train_cfg: dict | None = None, test_cfg: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg=None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if affm is not None and mask_estimator is None:
            raise ValueError('AFMNet: affm needs a mask_estimator (it is driven by the masks)')
        if hd_head is not None and p2_neck is None:
            raise ValueError('AFMNet: hd_head needs p2_neck (the stride-4 feature)')
        heads = TEST_HEADS if hd_head is not None else TEST_HEADS[:2]
        if test_heads not in heads:
            raise ValueError(f"AFMNet: test_heads {test_heads!r} is not one of {', '.join(heads)}")
        self.p2_neck = MODELS.build(p2_neck) if hd_head is not None else None
        self.mask_estimator = MODELS.build(mask_estimator) if mask_estimator else None
        self.affm = MODELS.build(affm) if affm else None
        self.irfi = MODELS.build(irfi) if irfi and hd_head is not None else None
        self.hd_head = self._build_hd_head(hd_head, train_cfg, test_cfg, hd_share_tower)
        self.hd_init_from_main = hd_init_from_main
        self.hd_loss_weight = hd_loss_weight
        self.hd_merge_warmup = hd_merge_warmup
        if hd_merge_warmup > 0:  # HD training iterations so far (float: no integer ops in the loop)
            self.register_buffer('hd_merge_step', torch.zeros(()))
        self.mask_render = dict(mask_render)
        self.merge_cfg = dict(merge_cfg)
        self.test_heads = test_heads

    def _build_hd_head(self, hd_head: dict | None, train_cfg, test_cfg, share_tower: bool):
        if hd_head is None:
            return None
        hd_head = dict(hd_head)
        own_train = dict(hd_head.pop('train_cfg', None) or {})
        hd_head['train_cfg'] = None if train_cfg is None else {**train_cfg, **own_train}
        hd_head.setdefault('test_cfg', test_cfg)
        head = MODELS.build(hd_head)
        if share_tower:
            for key in ('num_classes', 'in_channels', 'feat_channels', 'stacked_convs'):
                if getattr(head, key) != getattr(self.bbox_head, key):
                    raise ValueError(f'AFMNet: hd_share_tower needs the same {key} in both heads '
                                     f'({getattr(self.bbox_head, key)} and {getattr(head, key)})')
            for name in TOWER:
                setattr(head, name, getattr(self.bbox_head, name))
        return head

    def set_epoch(self, epoch: int) -> None:
        """Epoch for mmdet's SetEpochInfoHook. Both TOOD heads read the epoch from the message
        hub in every loss (ATSS before `initial_epoch`, TaskAligned after), so setting it there
        reaches the main and the HD head alike."""
        MessageHub.get_current_instance().update_info('epoch', epoch)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Runs before the children load (they read the same dict), as mmdet's rpn->bbox rename.
        upgrade_state_dict(state_dict, prefix, self.hd_merge_warmup if self.hd_merge_warmup > 0 else None,
                           self.affm is not None and self.affm.main_gate is not None)
        if self.hd_head is not None and self.hd_init_from_main:
            hd_state_from_main(state_dict, prefix, self.hd_head.state_dict())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # -- features -------------------------------------------------------------------------
    def _features(self, batch_inputs: Tensor):
        """(C2, neck levels) from one backbone pass; C2 is kept for the stride-4 branch."""
        c = self.backbone(batch_inputs)
        return c[0], list(self.neck(c))

    def _mask_targets(self, data_samples, logits: Sequence[Tensor]) -> list[Tensor]:
        """(N, 1, h, w) small and large masks at the logits' sizes, zero-padded.

        Masks packed by the pipeline (gt_mask_s / gt_mask_l) are used when present; otherwise
        they are rendered from the sample's boxes with the shared data-side function.
        """
        targets = [logit.new_zeros(logit.shape) for logit in logits]
        for i, sample in enumerate(data_samples):
            if 'gt_mask_s' in sample and 'gt_mask_l' in sample:
                masks = (sample.gt_mask_s.data, sample.gt_mask_l.data)
            else:
                masks = self._render_masks(sample, [t.shape[-2:] for t in targets], MASK_STRIDES)
            for target, mask in zip(targets, masks):
                mask = mask.reshape(mask.shape[-2:]).to(target)
                h, w = min(mask.shape[0], target.shape[-2]), min(mask.shape[1], target.shape[-1])
                target[i, 0, :h, :w] = mask[:h, :w]
        return targets

    def _render_masks(self, sample, sizes, strides) -> tuple[Tensor, Tensor]:
        boxes = sample.gt_instances.bboxes
        boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
        sx, sy = sample.metainfo.get('scale_factor', (1.0, 1.0))
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (sx * sy)
        return tuple(render_object_masks_torch(boxes, areas, size, stride, **self.mask_render)[j]
                     for j, (size, stride) in enumerate(zip(sizes, strides)))

    def _branches(self, batch_inputs: Tensor, data_samples, training: bool) -> dict:
        """Shared forward of loss and predict: C2, the main head's levels, mask logits."""
        c2, feats = self._features(batch_inputs)
        out = dict(c2=c2, feats=feats, mask_logits=None, mask_targets=None)
        if self.mask_estimator is not None:
            out['mask_logits'] = self.mask_estimator(feats[:2])
            if training:
                out['mask_targets'] = self._mask_targets(data_samples, out['mask_logits'])
            if self.affm is not None:
                feats[1] = self.affm.enhance_main(feats[1], out['mask_logits'][1])
        return out

    # -- HD head --------------------------------------------------------------------------
    def _hd_input(self, out: dict, data_samples, training: bool, main_scores: Tensor | None = None):
        """(crops of P2' after IRFI, their Windows, the stride-4 map's size, each image's valid
        cells there). On windows, P2 is computed on the crops alone (`P2Feature.on_windows`)."""
        c2, p3 = out['c2'], out['feats'][0]
        hw = tuple(c2.shape[-2:])
        valid_hw = [(-(-s.metainfo['img_shape'][0] // HD_STRIDE), -(-s.metainfo['img_shape'][1] // HD_STRIDE))
                    for s in data_samples]
        m_s = self.affm.mask_at(out['mask_logits'][0], hw) if self.affm is not None else None
        if self.affm is not None and self.affm.windows_cheaper(hw, training):
            score = (self.affm.training_score(m_s, out['mask_targets'][0]) if training
                     else self.affm.test_score(m_s, main_scores))
            windows = self.affm.mine(score, valid_hw, training)
            if self.p2_neck.runs_on_windows:
                crops, inside = self.p2_neck.on_windows(c2, p3, windows)
            else:
                crops, inside = crop_windows(self.p2_neck(c2, p3), windows)
            crops = crops * (1 + crop_windows(m_s, windows)[0])
        else:
            windows = full_windows(len(data_samples), hw, c2.device)
            crops = self.p2_neck(c2, p3)
            if m_s is not None:
                crops = crops * (1 + m_s)
            inside = crops.new_ones(len(crops), 1, *hw)
        if self.irfi is not None:
            crops = self.irfi(crops, windows, inside, self._context(p3, out['mask_logits']), hw)
        return crops, windows, hw, valid_hw

    @staticmethod
    def _context(p3: Tensor, mask_logits) -> Tensor:
        """IRFI's global token input, the mean of P3 * (1 + m_s): P2 exists on the windows only."""
        if mask_logits is not None:
            p3 = p3 * (1 + mask_logits[0].sigmoid())
        return p3.mean(dim=(2, 3))

    def _hd_cells(self, crops: Tensor, windows: Windows, hw, valid_hw):
        """The HD head on the crops, then per image on the windows' core cells, in image
        coordinates: (scores (N, P, C), boxes (N, P, 4) in stride units, each cell's index in
        the stride-4 map (N, P), whether it counts (N, P))."""
        cls_scores, bbox_preds = self.hd_head((crops,))
        boxes = bbox_preds[0] + windows.origins.repeat(1, 2)[:, :, None, None].to(bbox_preds[0].dtype)
        flat, valid = window_cells(windows, hw, valid_hw)
        return core_cells(cls_scores[0], windows), core_cells(boxes, windows), flat, valid

    # -- training -------------------------------------------------------------------------
    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        out = self._branches(batch_inputs, batch_data_samples, training=True)
        losses = self.bbox_head.loss(out['feats'], batch_data_samples)
        if self.mask_estimator is not None:
            losses.update(self.mask_estimator.loss(out['mask_logits'], out['mask_targets']))
        if self.hd_head is not None:
            crops, windows, hw, valid_hw = self._hd_input(out, batch_data_samples, training=True)
            scores, boxes, flat, valid = self._hd_cells(crops, windows, hw, valid_hw)
            priors = self.hd_head.prior_generator.single_level_grid_priors(hw, 0, device=crops.device)[flat]
            gt_instances = unpack_gt_instances(batch_data_samples)[0]
            hd_losses = self.hd_head.loss_by_cells(scores, boxes, priors, valid, gt_instances)
            losses.update({f'hd_{name}': value * self.hd_loss_weight for name, value in hd_losses.items()})
            if self.hd_merge_warmup > 0:
                self.hd_merge_step += 1
        return losses

    def hd_merge_ramp(self) -> Tensor:
        """The factor on the HD head's scores in the merge (see `hd_merge_warmup`)."""
        if self.hd_merge_warmup <= 0:
            return 1.0
        return (self.hd_merge_step / self.hd_merge_warmup).clamp(max=1)

    # -- inference ------------------------------------------------------------------------
    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        out = self._branches(batch_inputs, batch_data_samples, training=False)
        img_metas = [s.metainfo for s in batch_data_samples]
        main_outs = self.bbox_head(out['feats'])
        results = self.bbox_head.predict_by_feat(*main_outs, batch_img_metas=img_metas, rescale=rescale)
        if self.hd_head is not None and self.test_heads != 'main':
            crops, windows, hw, valid_hw = self._hd_input(out, batch_data_samples, False, main_outs[0][0])
            scores, boxes, _, valid = self._hd_cells(crops, windows, hw, valid_hw)
            if self.test_heads == 'both':  # the warm-up: below the score threshold, no HD box
                scores = scores * self.hd_merge_ramp()
            # rescaled inside the head, as mmdet does: min_bbox_size counts original pixels
            hd_results = [clip_to_image(res, meta, rescale) for res, meta in
                          zip(self.hd_head.predict_by_cells(scores, boxes, valid, img_metas, rescale), img_metas)]
            if self.test_heads == 'hd':
                results = hd_results
            elif self.merge_cfg.get('by_role') and float(self.hd_merge_ramp()) >= 1:
                # (by role drops the main head's small boxes in the windows: only once the
                # HD head is fully in; during the warm-up the plain merge below)
                results = [merge_by_role(main, hd, window_cores(windows, i, meta, rescale), **self.merge_cfg)
                           for i, (main, hd, meta) in enumerate(zip(results, hd_results, img_metas))]
            else:
                nms = {key: self.merge_cfg[key] for key in ('iou_threshold', 'max_per_img')}
                results = [merge_detections(pair, **nms) for pair in zip(results, hd_results)]
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Raw head outputs (main head, and HD head on the window crops when present)."""
        samples = batch_data_samples or [_MetaOnly(batch_inputs.shape[-2:])] * len(batch_inputs)
        out = self._branches(batch_inputs, samples, training=False)
        main = self.bbox_head.forward(out['feats'])
        if self.hd_head is None:
            return main
        return main, self.hd_head((self._hd_input(out, samples, False, main[0][0])[0],))


class _MetaOnly:
    """Stand-in sample for `_forward` without data samples: the whole input is the image."""

    def __init__(self, hw) -> None:
        self.metainfo = dict(img_shape=tuple(int(v) for v in hw))
