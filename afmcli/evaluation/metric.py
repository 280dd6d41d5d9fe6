"""`VisDroneMetric`: both evaluation views as an mmengine metric, for validation.

    val_evaluator = dict(type='VisDroneMetric', ann_file='.../val.json', view='both')
    default_hooks = dict(checkpoint=dict(save_best='coco/AP50', rule='greater'))

Keys are 'visdrone/AP', 'visdrone/AP50', ..., 'coco/AP50', ... (percent), and mmdet's
'coco/bbox_mAP' and 'coco/bbox_mAP_50' (at 100 detections per image, not 500). Each
image's predictions are sorted by score and cut at 500 first, as our result
writer does, so 'visdrone/*' equals the toolkit on the written files.

Any category table: the model's labels 0..K-1 are the json's categories in id order (the
dataset's metainfo classes, as `afm train --data` writes them); a table other than
VisDrone's is scored in the COCO view only ('coco/*' keys; the toolkit's view exists for
VisDrone's ten classes). ``classwise=True`` adds '<view>/<class>_AP' and '<view>/<class>_AP50'
per class by name (mmdet's CocoMetric's ``classwise``). It is the one validation metric of
every class list: `afm train --data` keeps it and `save_best='coco/AP50'` for any data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from afmcli.data.coco import MAX_DETS_PER_IMAGE
from afmcli.data.images import image_key
from afmcli.detections import Detections, detections_to_visdrone_rows
from afmcli.errors import AfmError
from afmcli.evaluation.loaders import image_rows, load_coco_ground_truth
from afmcli.evaluation.metrics import VIEWS, compute_metrics


def prediction_rows(bboxes, scores, labels) -> np.ndarray:
    """mmdet predictions (xyxy, label 0..K-1) -> result rows numbering the classes 1..K (VisDrone's
    ids for VisDrone's classes), best 500 first."""
    return detections_to_visdrone_rows(Detections(bboxes, scores, labels + 1), MAX_DETS_PER_IMAGE)


@METRICS.register_module()
class VisDroneMetric(BaseMetric):
    """Official VisDrone numbers and the COCO view from the same predictions.

    Args:
        ann_file: our COCO json of the split (ignore regions, unclipped boxes inside).
        view: 'visdrone', 'coco' or 'both'.
        classwise: also each class's AP and AP50, by name.
    """

    # Its keys name their view ('visdrone/AP'): no prefix, and "" tells mmengine so (None warns).
    default_prefix: Optional[str] = ""

    def __init__(self, ann_file: str, view: str = "both", classwise: bool = False, collect_device: str = "cpu",
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if view not in VIEWS:
            raise AfmError(f"VisDroneMetric: view must be one of {', '.join(VIEWS)}, got {view!r}")
        self.view = view
        self.classwise = classwise
        self.gt = load_coco_ground_truth(Path(ann_file))
        position = {name: i for i, name in enumerate(self.gt.names)}
        self._image_index = {img["id"]: position[image_key(img["file_name"])] for img in self.gt.coco_images}

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            rows = prediction_rows(pred["bboxes"].cpu().numpy(), pred["scores"].cpu().numpy(),
                                   pred["labels"].cpu().numpy())
            self.results.append((sample["img_id"], rows))

    def compute_metrics(self, results: list) -> dict[str, float]:
        dets = [np.zeros((0, 8))] * len(self.gt.names)
        for image_id, rows in results:
            dets[self._image_index[image_id]] = rows
        # The toolkit's view exists for VisDrone's table only: another table is scored in the COCO view.
        view = self.view if self.gt.table.visdrone else "coco"
        metrics = compute_metrics(image_rows(self.gt, dets), view, table=self.gt.table)
        out = {f"{view}/{k}": v for view, numbers in metrics.stats.items() for k, v in numbers.items()}
        if self.classwise:
            out.update({f"{view}/{name}_{k}": row[k] for view, rows in metrics.per_class.items()
                        for name, row in rows.items() if row is not None for k in ("AP", "AP50")})
        return out
