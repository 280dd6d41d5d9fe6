"""Add TrackEval's own HOTA numbers for the cases of tests/mot_cases.py to
tests/reference_visdrone_mot.json (key "hota_trackeval").

    pip install --no-deps --target /tmp/trackeval trackeval==1.3.0
    python tests/mot_cases.py /tmp/mot_cases
    PYTHONPATH=.:/tmp/trackeval python scripts/mot_trackeval_reference.py /tmp/mot_cases

trackeval 1.3.0 on PyPI (github.com/kovalp/TrackEval) is JonathonLuiten/TrackEval (its
metrics/hota.py differs only by np.float -> float and type hints); its requirements pin
opencv-python and matplotlib, so it is not a dependency of afm: this script needs only its
HOTA class and box IoU. The boxes are those the VisDrone-MOT toolkit evaluates (afm's
dropObjects and class split, which the CLEAR numbers check against the toolkit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import trackeval
from trackeval.datasets._base_dataset import _BaseDataset
from trackeval.metrics import HOTA

from afmcli.evaluation.hota import HOTA_FIELDS
from afmcli.evaluation.mot import CATEGORY, EVAL_CLASSES, FRAME, drop_objects
from afmcli.evaluation.mot_loaders import load_mot_sequences


def trackeval_data(gt: np.ndarray, pred: np.ndarray) -> dict:
    """TrackEval's per-sequence data dict for rows frame, id, x, y, w, h."""
    gt_ids, st_ids = np.unique(gt[:, 1], return_inverse=True)[1], np.unique(pred[:, 1], return_inverse=True)[1]
    data = {"num_gt_dets": len(gt), "num_tracker_dets": len(pred), "num_gt_ids": int(gt_ids.max()) + 1,
            "num_tracker_ids": int(st_ids.max()) + 1 if len(pred) else 0,
            "gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for f in range(1, int(max(gt[:, 0].max(), pred[:, 0].max() if len(pred) else 0)) + 1):
        g, s = gt[:, 0] == f, pred[:, 0] == f
        data["gt_ids"].append(gt_ids[g])
        data["tracker_ids"].append(st_ids[s])
        data["similarity_scores"].append(_BaseDataset._calculate_box_ious(gt[g, 2:6], pred[s, 2:6], box_format="xywh"))
    return data


def summary(res: dict) -> dict[str, float]:
    return {k: 100 * float(np.mean(res[k])) for k in HOTA_FIELDS}


def case_numbers(case_dir: Path) -> dict:
    metric = HOTA()
    entries: dict[tuple[str, str], dict] = {}
    for seq in load_mot_sequences(case_dir / "annotations", case_dir / "results", case_dir / "sequences"):
        gt = drop_objects(seq.gt, seq.gt, seq.height, seq.width)
        pred = drop_objects(seq.pred, seq.gt, seq.height, seq.width)
        pred = pred[pred[:, FRAME] <= gt[:, FRAME].max()]
        for name, category in EVAL_CLASSES.items():
            gt_c, pred_c = gt[gt[:, CATEGORY] == category], pred[pred[:, CATEGORY] == category]
            if len(gt_c):
                entries[(seq.name, name)] = metric.eval_sequence(trackeval_data(gt_c[:, :6], pred_c[:, :6]))
    classes = {name: summary(metric.combine_sequences({s: r for (s, k), r in entries.items() if k == name}))
               for name in EVAL_CLASSES if any(k == name for _, k in entries)}
    overall = summary(metric.combine_sequences({f"{s}/{k}": r for (s, k), r in entries.items()}))
    return {"overall": overall, "classes": classes}


def main(cases_dir: Path, out: Path) -> None:
    reference = json.loads(out.read_text())
    reference["hota_trackeval"] = {
        "produced_by": f"scripts/mot_trackeval_reference.py with trackeval {trackeval.__version__} (PyPI)",
        "cases": {case: case_numbers(cases_dir / case) for case in reference["cases"]},
    }
    out.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else
         Path(__file__).resolve().parents[1] / "tests" / "reference_visdrone_mot.json")
