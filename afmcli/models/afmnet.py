"""AFMNet: TOOD + CFPN + FPD masks + AFFM windows + IRFI + a stride-4 HD head on the windows.

                         C2 ───────────────┐
  image ─ ResNet ─ C2..C5 ─ CFPN ─ P3..P7  │
                                │   └─ P4 * (1 + m_l) ─ main TOODHead (P3..P7) ─┐
                           P3,P4 └─ MaskEstimator ─ m_s, m_l (loss_mask_s/l)    │
           P2Feature(C2, P3) ─ P2 * (1 + m_s) = P2' ─ AFFM top-k windows        │
                 window crops of P2' ─ IRFI (scale, shift) ─ HD TOODHead (s=4) ─┤
                                                   class-aware NMS 0.6, <= 500 ─┘

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

from .hd_head import WindowTOODHead
from .windows import (crop_windows, full_windows, instances_to_windows, results_from_windows,
                      suppress_margin, window_metas)

HD_STRIDE = 4
HD_CHUNK = 32  # windows per HD-head call (see AFMNet._hd_forward)
P2_ON_WINDOWS = True  # P2's 3x3 conv on the window crops only (see AFMNet._p2_crops)
MASK_STRIDES = (8, 16)  # P3 (small objects), P4 (large objects)


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


def merge_detections(parts: Sequence[InstanceData], iou_threshold: float, max_per_img: int) -> InstanceData:
    """Class-aware NMS over the union of several heads' detections, best `max_per_img` kept."""
    res = InstanceData.cat(list(parts))
    if len(res) == 0:
        return res
    _, keep = batched_nms(res.bboxes, res.scores, res.labels,
                          dict(type='nms', iou_threshold=iou_threshold))
    return res[keep[:max_per_img]]


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
        hd_head: a WindowTOODHead (a TOODHead that ignores the windows' context margin) with
            strides=[4]; train_cfg/test_cfg default to the detector's.
        mask_render: how masks are drawn from boxes when a sample carries none
            (kwargs of afmcli.data.masks.render_object_masks: kind, small_area, ...).
        hd_init_from_main: when a loaded checkpoint has no HD head (load_from a COCO TOOD),
            the HD head takes the main head's weights (see `hd_state_from_main`).
        merge_cfg: class-aware NMS that merges both heads' detections.
    """

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict, p2_neck: dict | None = None,
                 mask_estimator: dict | None = None, affm: dict | None = None,
                 irfi: dict | None = None, hd_head: dict | None = None,
                 hd_init_from_main: bool = True,
                 mask_render: dict = dict(kind='oval', small_area=32 * 32),
                 merge_cfg: dict = dict(iou_threshold=0.6, max_per_img=500),
                 train_cfg: dict | None = None, test_cfg: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg=None) -> None:
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if affm is not None and mask_estimator is None:
            raise ValueError('AFMNet: affm needs a mask_estimator (it is driven by the masks)')
        if hd_head is not None and p2_neck is None:
            raise ValueError('AFMNet: hd_head needs p2_neck (the stride-4 feature)')
        self.p2_neck = MODELS.build(p2_neck) if hd_head is not None else None
        self.mask_estimator = MODELS.build(mask_estimator) if mask_estimator else None
        self.affm = MODELS.build(affm) if affm else None
        self.irfi = MODELS.build(irfi) if irfi and hd_head is not None else None
        if hd_head is not None:
            hd_head = dict(hd_head)
            hd_head.setdefault('train_cfg', train_cfg)
            hd_head.setdefault('test_cfg', test_cfg)
            self.hd_head = MODELS.build(hd_head)
            if affm and self.affm.margin and not isinstance(self.hd_head, WindowTOODHead):
                raise ValueError('AFMNet: a window margin (affm.margin) needs '
                                 "hd_head type='WindowTOODHead' to ignore the margin's priors")
        else:
            self.hd_head = None
        self.hd_init_from_main = hd_init_from_main
        self.mask_render = dict(mask_render)
        self.merge_cfg = dict(merge_cfg)

    def set_epoch(self, epoch: int) -> None:
        """Epoch for mmdet's SetEpochInfoHook. Both TOOD heads read the epoch from the message
        hub in every loss (ATSS before `initial_epoch`, TaskAligned after), so setting it there
        reaches the main and the HD head alike."""
        MessageHub.get_current_instance().update_info('epoch', epoch)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Runs before the children load (they read the same dict), as mmdet's rpn->bbox rename.
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

    def _branches(self, batch_inputs: Tensor, data_samples, training: bool):
        """Shared forward of loss and predict: main-head features, mask logits, HD crops."""
        c2, feats = self._features(batch_inputs)
        out = dict(feats=feats, mask_logits=None, mask_targets=None, crops=None, windows=None, margin=0)
        m_s = None
        if self.mask_estimator is not None:
            out['mask_logits'] = self.mask_estimator(feats[:2])
            if training:
                out['mask_targets'] = self._mask_targets(data_samples, out['mask_logits'])
            if self.affm is not None:
                feats[1], _ = self.affm.enhance(feats[1], out['mask_logits'][1])
        if self.hd_head is None:
            return out
        merged = self.p2_neck.merge(c2, feats[0])  # P2 before its 3x3 conv
        hw = tuple(merged.shape[-2:])
        valid_hw = [(-(-s.metainfo['img_shape'][0] // HD_STRIDE), -(-s.metainfo['img_shape'][1] // HD_STRIDE))
                    for s in data_samples]
        m_s = self.affm.mask_at(out['mask_logits'][0], hw) if self.affm is not None else None
        windowed = self.affm is not None and self.affm.windows_cheaper(hw)
        if windowed:
            score = self.affm.training_score(m_s, out['mask_targets'][0]) if training else m_s
            windows, margin = self.affm.mine(score, valid_hw), self.affm.margin
        else:
            windows, margin = full_windows(len(data_samples), hw, merged.device), 0
        crops, context = self._p2_crops(merged, m_s, windows, margin, windowed)
        if self.irfi is not None:
            crops = self.irfi(crops, windows, context, hw, margin)
        out.update(crops=crops, windows=windows, margin=margin, p2_hw=hw)
        return out

    def _p2_crops(self, merged: Tensor, m_s: Tensor | None, windows: Tensor, margin: int,
                  windowed: bool) -> tuple[Tensor, Tensor]:
        """Window crops of P2' = conv3x3(merged) * (1 + m_s), and the mean of P2' per image
        (IRFI's global context).

        On windows the 3x3 conv runs on the crops alone (13 windows are a fifth of the
        stride-4 map at 1333x800) and the mean comes from `P2Feature.weighted_mean`: the
        whole-map numbers up to float rounding, without the whole-map conv. Beyond the map
        the crops are zero, as when a whole map is cropped: so is the crop of (1 + m_s).
        """
        if windowed and P2_ON_WINDOWS and self.p2_neck.conv_is_local:
            scale = 1 + m_s
            crops = self.p2_neck.conv_windows(merged, windows, margin) * crop_windows(scale, windows, margin)
            return crops, self.p2_neck.weighted_mean(merged, scale)
        p2 = self.p2_neck.fpn_conv(merged)
        if m_s is not None:
            p2 = p2 * (1 + m_s)
        return crop_windows(p2, windows, margin), p2.mean(dim=(2, 3))

    def _hd_forward(self, crops: Tensor):
        """The HD head on all windows of the batch, in chunks of at most
        ``HD_CHUNK``: TOODHead's deformable sampling (mmcv deform_conv2d,
        im2col_step 32) asserts that a batch above 32 is a multiple of 32, and
        batch x top-k windows (4 x 13 = 52) is not."""
        outs = [self.hd_head((chunk,)) for chunk in crops.split(HD_CHUNK)]
        return tuple([torch.cat([o[i][0] for o in outs])] for i in range(len(outs[0])))

    # -- training -------------------------------------------------------------------------
    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        out = self._branches(batch_inputs, batch_data_samples, training=True)
        losses = self.bbox_head.loss(out['feats'], batch_data_samples)
        if self.mask_estimator is not None:
            losses.update(self.mask_estimator.loss(out['mask_logits'], out['mask_targets']))
        if self.hd_head is not None:
            gt_instances, _, img_metas = unpack_gt_instances(batch_data_samples)
            windows, margin = out['windows'], out['margin']
            hd_losses = self.hd_head.loss_by_feat(
                *self._hd_forward(out['crops']),
                instances_to_windows(gt_instances, windows, HD_STRIDE, margin),
                window_metas(windows, img_metas, HD_STRIDE, margin))
            losses.update({f'hd_{name}': value for name, value in hd_losses.items()})
        return losses

    # -- inference ------------------------------------------------------------------------
    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        out = self._branches(batch_inputs, batch_data_samples, training=False)
        results = self.bbox_head.predict(out['feats'], batch_data_samples, rescale=rescale)
        if self.hd_head is not None:
            img_metas = [s.metainfo for s in batch_data_samples]
            windows, margin = out['windows'], out['margin']
            cls_scores, bbox_preds = self._hd_forward(out['crops'])
            # rescale inside the head, as mmdet does: min_bbox_size counts original pixels
            per_window = self.hd_head.predict_by_feat(
                [suppress_margin(cls_scores[0], margin)], bbox_preds,
                batch_img_metas=window_metas(windows, img_metas, HD_STRIDE, margin), rescale=rescale)
            hd_results = results_from_windows(per_window, windows, HD_STRIDE, img_metas, rescale, margin)
            results = [merge_detections(pair, **self.merge_cfg) for pair in zip(results, hd_results)]
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None):
        """Raw head outputs (main head, and HD head on the windows when present)."""
        samples = batch_data_samples or [_MetaOnly(batch_inputs.shape[-2:])] * len(batch_inputs)
        out = self._branches(batch_inputs, samples, training=False)
        main = self.bbox_head.forward(out['feats'])
        return main if self.hd_head is None else (main, self._hd_forward(out['crops']))


class _MetaOnly:
    """Stand-in sample for `_forward` without data samples: the whole input is the image."""

    def __init__(self, hw) -> None:
        self.metainfo = dict(img_shape=tuple(int(v) for v in hw))
