"""How many in-window objects the HD head's initial (ATSS) assignment trains as positives, on
real VisDrone crops: AFMNet's training windows (mined from the ground-truth small mask), then

- before round 3: mmdet's ATSSAssigner (topk 4) window by window, the objects whose centre
  lies in the window (the old `instances_to_windows` + per-window `get_targets`);
- per image, mmdet's rule: BatchATSSAssigner(keep_best=False) once over the union of the
  windows' cells (each cell owned by one window): the effect of assigning per image alone;
- after: BatchATSSAssigner(keep_best=True), the HD head as configured now.

An object counts as "in a window" when its centre lies in a window's core; it "has a
positive" when at least one prior is assigned to it. Shares by object size (sqrt of the box
area, pixels at the training scale), for the tiny config's windows (topk 4, 24 cells) and the
published ones (topk 13, 32 cells), both on the 512-px crops the benches train on.

    .venv/bin/python bench/bench_hd_assign.py [--work /tmp/afm_hd_assign]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BINS = [(0, 8), (8, 16), (16, 32), (32, 64), (64, 1e9)]
WINDOWS = {'tiny (k 4, 24 cells)': dict(topk=4, window=24, margin=2),
           'published (k 13, 32 cells)': dict(topk=13, window=32, margin=2)}


def crops_with_objects(ann_file: Path) -> list[tuple[int, int, np.ndarray]]:
    """(height, width, boxes x1y1x2y2) of every crop with objects (crowd regions left out)."""
    from afmcli.io import read_json

    coco = read_json(ann_file)
    boxes = {}
    for a in coco['annotations']:
        if not a.get('iscrowd'):
            x, y, w, h = a['bbox']
            boxes.setdefault(a['image_id'], []).append([x, y, x + w, y + h])
    return [(im['height'], im['width'], np.array(boxes[im['id']], np.float32)) for im in coco['images']
            if im['id'] in boxes]


def assign_one_crop(h: int, w: int, boxes: np.ndarray, affm: dict) -> dict[str, np.ndarray]:
    """{rule: (objects,) bool has-a-positive} and 'in_window' (objects,) bool, for one crop."""
    import torch
    from mmdet.models.task_modules.assigners import ATSSAssigner
    from mmdet.models.task_modules.prior_generators import AnchorGenerator
    from mmengine.structures import InstanceData

    from afmcli.data.masks import render_object_masks
    from afmcli.models.affm import AFFM, upsample_on_priors
    from afmcli.models.assigners import BatchATSSAssigner, pad_ground_truth
    from afmcli.models.windows import window_cells

    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    map4 = (-(-h // 4), -(-w // 4))
    mask = render_object_masks(boxes, areas, (-(-h // 8), -(-w // 8)), 8)[0]
    score = upsample_on_priors(torch.from_numpy(mask).float()[None, None], map4)
    finder = AFFM(**affm)
    if not finder.windows_cheaper(map4, training=True):
        raise SystemExit(f'bench_hd_assign: {affm} covers a {map4} map: the HD head would be dense')
    windows = finder.mine(score, [map4], training=True)
    grid = AnchorGenerator(ratios=[1.0], octave_base_scale=8, scales_per_octave=1, strides=[4])
    all_priors = grid.single_level_grid_priors(map4, 0, device='cpu')
    gt = InstanceData(bboxes=torch.from_numpy(boxes), labels=torch.zeros(len(boxes), dtype=torch.long))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    in_window = np.zeros(len(boxes), bool)
    before = np.zeros(len(boxes), bool)
    mmdet_atss = ATSSAssigner(topk=4)
    for (_, x0, y0, x1, y1), valid in zip(windows.rows.tolist(), windows.valid.tolist()):
        if not valid:
            continue
        inside = (cx >= x0 * 4) & (cx < x1 * 4) & (cy >= y0 * 4) & (cy < y1 * 4)
        in_window |= inside
        if not inside.any():
            continue
        cells = (torch.arange(y0, y1)[:, None] * map4[1] + torch.arange(x0, x1)[None]).flatten()
        result = mmdet_atss.assign(InstanceData(priors=all_priors[cells]), [len(cells)], gt[torch.from_numpy(inside)])
        hit = np.flatnonzero(inside)[np.unique(result.gt_inds[result.gt_inds > 0].numpy() - 1)]
        before[hit] = True
    flat, valid = window_cells(windows, map4, [map4])
    out = dict(in_window=in_window, before=before & in_window)
    for name, keep_best in (('per image, mmdet rule', False), ('after', True)):
        assigned, _ = BatchATSSAssigner(topk=4, keep_best=keep_best).assign_batch(
            all_priors[flat], valid, pad_ground_truth([gt], 'cpu'))
        has = np.zeros(len(boxes), bool)
        has[np.unique(assigned[assigned >= 0].numpy())] = True
        out[name] = has & in_window
    out['size'] = np.sqrt(areas)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work', type=Path, default=Path('/tmp/afm_hd_assign'))
    parser.add_argument('--crops', type=int, help='only the first N crops with objects')
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from afmcli.progress import track
    from bench_accuracy import REAL, make_real_split

    data, about = make_real_split(REAL, args.work, None, None, 512)
    crops = crops_with_objects(data / 'labels' / 'annotations' / 'train_sliced_labels.json')[:args.crops]
    console = Console(width=160)
    rules = ('before', 'per image, mmdet rule', 'after')
    for label, affm in WINDOWS.items():
        parts = [assign_one_crop(h, w, boxes, affm) for h, w, boxes in track(crops, f'{label}: assigning')]
        cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        table = Table(title=f"HD head ATSS positives, {label} windows: {len(crops)} real 512-px crops of "
                            f"{about['train_images']} VisDrone train images")
        for col in ('object size (px)', 'objects', 'in a window', *(f'{r}: with a positive' for r in rules)):
            table.add_column(col, justify='right')
        for lo, hi in BINS + [(0, 1e9)]:
            sel = (cat['size'] >= lo) & (cat['size'] < hi)
            n_in = int(cat['in_window'][sel].sum())
            name = 'all' if (lo, hi) == (0, 1e9) else f'{lo}-{hi:.0f}' if hi < 1e9 else f'>= {lo}'
            table.add_row(name, str(int(sel.sum())), f"{n_in} ({n_in / max(int(sel.sum()), 1):.0%})",
                          *(f"{int(cat[r][sel].sum())} ({cat[r][sel].sum() / max(n_in, 1):.1%})" for r in rules))
        console.print(table)


if __name__ == '__main__':
    main()
