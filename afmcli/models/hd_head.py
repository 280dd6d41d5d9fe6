"""The HD head: mmdet's TOODHead that can ignore the context margin of its window crops."""

from __future__ import annotations

from mmdet.models.dense_heads import TOODHead
from mmdet.registry import MODELS


@MODELS.register_module()
class WindowTOODHead(TOODHead):
    """TOODHead whose images may carry a `valid_box` (x0, y0, x1, y1 pixels) in their
    img_meta: priors centred outside it are ignored in training, neither positive nor
    negative. TOOD's targets treat priors with a false valid flag exactly so (dropped
    before assignment, label weight 0), so only the flags change; without `valid_box`
    this is TOODHead. Same arguments and state_dict keys as TOODHead.
    """

    def get_anchors(self, featmap_sizes, batch_img_metas, device='cuda'):
        anchor_list, valid_flag_list = super().get_anchors(featmap_sizes, batch_img_metas, device=device)
        for anchors, flags, meta in zip(anchor_list, valid_flag_list, batch_img_metas):
            if 'valid_box' not in meta:
                continue
            x0, y0, x1, y1 = meta['valid_box']
            for level, (priors, flag) in enumerate(zip(anchors, flags)):
                cx, cy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
                flags[level] = flag & (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
        return anchor_list, valid_flag_list
