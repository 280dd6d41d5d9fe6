"""Equal-budget accuracy: TOOD and AFMNet trained with the same schedule on one synthetic
VisDrone-like set, then evaluated on the same held-out images. One run, side by side.

Every step is the real `afm` command (synth, convert-visdrone, train, infer, evaluate).

    .venv/bin/python bench/bench_accuracy.py                  # tiny configs, 64/16 images, 512x384, CPU
    python3 bench/bench_accuracy.py --full --device cuda:0 --train-images 400 --val-images 50 \\
        --size 1360x765 --epochs 12                          # R50 configs at VisDrone scale (GPU)

--full trains the R50 configs from scratch (no ImageNet or COCO weights: none can be
downloaded on the GPU machine), so its absolute AP is low; the comparison is the point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from afmcli.engine.demo import last_checkpoint, make_synthetic_split, run_step  # noqa: E402
from afmcli.io import read_json, write_json  # noqa: E402

TINY = dict(TOOD='configs/AFM/tood_tiny_synth.py', AFMNet='configs/AFM/afmnet_tiny_synth.py')
FULL = dict(TOOD='configs/AFM/tood_r50_visdrone.py', AFMNet='configs/AFM/AFMNet-tood_r50_k13.py')
COLUMNS = [('coco', 'AP'), ('coco', 'AP50'), ('coco', 'AP_small'), ('coco', 'AP_tiny'),
           ('visdrone', 'AP'), ('visdrone', 'AP50')]


def fmt(value: float | None, spec: str) -> str:
    """A metric the evaluation could not compute (no ground truth in its range) is None."""
    return '-' if value is None else format(value, spec)


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def train_and_evaluate(name: str, config: str, data: Path, work: Path, args) -> dict:
    ann = data / 'labels' / 'annotations' / 'val_labels.json'
    options = [] if args.epochs is None else [f'train_cfg.max_epochs={args.epochs}']
    if args.full:
        options += ['load_from=None', 'model.backbone.init_cfg=None']
    work_dir, infer_dir = work / name / 'work_dir', work / name / 'infer'
    train_s = run_step(['train', str(ROOT / config), '--work-dir', str(work_dir), '--data-root', str(data),
                        *(arg for option in options for arg in ('--cfg-options', option))])
    run_step(['infer', str(ROOT / config), str(last_checkpoint(work_dir)), str(ann), '--out', str(infer_dir),
              '--no-slices', '--device', args.device, '--overwrite'])  # a rerun retrains: a new checkpoint
    metrics_json = work / name / 'metrics.json'
    run_step(['evaluate', '--gt', str(ann), '--pred', str(infer_dir / 'predictions.json'),
              '--json', str(metrics_json)])
    return dict(config=config, train_s=train_s, **read_json(metrics_json))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--full', action='store_true', help='the R50 configs instead of the tiny ones')
    parser.add_argument('--train-images', type=int, default=64)
    parser.add_argument('--val-images', type=int, default=16)
    parser.add_argument('--size', default='512x384', help='WxH of the synthetic images')
    parser.add_argument('--epochs', type=int, help="the same for both (default: each config's own)")
    parser.add_argument('--device', default='cpu', help='for inference; training uses CUDA when present')
    parser.add_argument('--work', type=Path, default=Path('/tmp/afm_bench_accuracy'))
    args = parser.parse_args()

    width, height = map(int, args.size.split('x'))
    data, _ = make_synthetic_split(args.work, args.train_images, args.val_images, width, height)
    configs = FULL if args.full else TINY
    results = {name: train_and_evaluate(name, cfg, data, args.work, args) for name, cfg in configs.items()}

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Equal budget: {args.train_images} train / {args.val_images} val synthetic images, "
                        f"{args.size}, epochs {args.epochs or 'per config'}")
    for col in ['model', 'train s', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    for name, r in results.items():
        table.add_row(name, f"{r['train_s']:.0f}", *(fmt(r[view][key], '.2f') for view, key in COLUMNS))
    tood, afm = results['TOOD'], results['AFMNet']
    table.add_row('AFMNet vs TOOD', f"{afm['train_s'] / tood['train_s']:.2f}x",
                  *(fmt(difference(afm[view][key], tood[view][key]), '+.2f') for view, key in COLUMNS))
    Console(width=140).print(table)
    write_json(args.work / 'results.json', dict(settings=vars(args) | dict(work=str(args.work)), results=results))
    print(json.dumps({name: {f'{v}/{k}': None if r[v][k] is None else round(r[v][k], 2) for v, k in COLUMNS}
                      for name, r in results.items()}))


if __name__ == '__main__':
    main()
