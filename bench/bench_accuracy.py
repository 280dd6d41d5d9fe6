"""Equal-budget accuracy: TOOD and AFMNet trained with the same schedule on the same images,
then evaluated on the same held-out images. One run, side by side.

Every step is the real `afm` command (synth, convert-visdrone, train, infer, evaluate).

    .venv/bin/python bench/bench_accuracy.py                  # tiny configs, 64/16 images, 512x384, CPU
    python3 bench/bench_accuracy.py --full --device cuda:0 --train-images 400 --val-images 50 \\
        --size 1360x765 --epochs 12                          # R50 configs at VisDrone scale (GPU)
    .venv/bin/python bench/bench_accuracy.py --real --preset quick   # real VisDrone, ~15 min on 2 cores
    .venv/bin/python bench/bench_accuracy.py --real --preset full    # real VisDrone, ~60 min on 2 cores

--full trains the R50 configs from scratch (no ImageNet or COCO weights: none can be
downloaded on the GPU machine), so its absolute AP is low; the comparison is the point.

--real uses the real VisDrone2019-DET train images of ../shared/data/visdrone-real/ (beside
the checkout; AFM_SHARED moves it): split by sequence (every 5th sequence, sorted, is
validation: about 80/20), linked (never copied) into the official layout under --work.
Both models train on the sliced crops of the train part (`convert-visdrone --slice`) and
are evaluated twice on the full validation images: full-image inference alone, and sliced
inference (tiles plus the full image, fused: `afm infer`'s default).
"""

from __future__ import annotations

import argparse
import json
import os
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
REAL = Path(os.environ.get('AFM_SHARED', ROOT.parent / 'shared')) / 'data' / 'visdrone-real' / 'VisDrone2019-DET-train'
# Real-data presets: images taken from each part (evenly over its sorted files; None = all),
# crop size, epochs. 'quick' takes about 15 minutes on a busy 2-core box (one thread each),
# 'full' (all 257 / 67 images, about 2300 crops) about 60 on an idle one.
PRESETS = dict(quick=dict(train_images=24, val_images=8, slice=512, epochs=2),
               full=dict(train_images=None, val_images=None, slice=512, epochs=2))


def fmt(value: float | None, spec: str) -> str:
    """A metric the evaluation could not compute (no ground truth in its range) is None."""
    return '-' if value is None else format(value, spec)


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def sequence_split(names: list[str], val_every: int = 5) -> tuple[list[str], list[str]]:
    """(train, val) file names: sequences (a name's first 7 characters), sorted, every
    `val_every`-th (the last of each group) to validation, so no sequence is in both."""
    sequences = sorted({name[:7] for name in names})
    val = {seq for i, seq in enumerate(sequences) if i % val_every == val_every - 1}
    return [n for n in sorted(names) if n[:7] not in val], [n for n in sorted(names) if n[:7] in val]


def evenly(names: list[str], count: int | None) -> list[str]:
    """`count` names spread evenly over the sorted list (all when None or more than there are)."""
    if count is None or count >= len(names):
        return names
    return [names[i * len(names) // count] for i in range(count)]


def make_real_split(src: Path, out: Path, train_images: int | None, val_images: int | None,
                    slice_size: int) -> tuple[Path, dict]:
    """Link the real images into train/val official-layout folders, convert (train sliced)."""
    names = sorted(p.name for p in (src / 'images').glob('*.jpg'))
    if not names:
        raise SystemExit(f'bench_accuracy: no real images in {src / "images"} (set AFM_SHARED)')
    train, val = sequence_split(names)
    parts = dict(train=evenly(train, train_images), val=evenly(val, val_images))
    data = out / 'Datasets'
    for split, files in parts.items():
        raw = out / 'raw' / f'VisDrone2019-DET-{split}'
        for sub in ('images', 'annotations'):
            (raw / sub).mkdir(parents=True, exist_ok=True)
            for stale in (raw / sub).iterdir():
                stale.unlink()
        for name in files:
            (raw / 'images' / name).symlink_to(src / 'images' / name)
            txt = Path(name).with_suffix('.txt').name
            (raw / 'annotations' / txt).symlink_to(src / 'annotations' / txt)
        run_step(['convert-visdrone', str(raw), str(data), '--split', split,
                  *(['--slice', str(slice_size)] if split == 'train' else [])])
    crops = len(read_json(data / 'labels' / 'annotations' / 'train_sliced_labels.json')['images'])
    return data, dict(train_images=len(parts['train']), val_images=len(parts['val']), train_crops=crops,
                      train_sequences=len({n[:7] for n in parts['train']}),
                      val_sequences=len({n[:7] for n in parts['val']}))


def train_and_evaluate(name: str, config: str, data: Path, work: Path, args) -> dict:
    """Train, infer on the val images, evaluate; returns {view: metrics} per inference mode."""
    ann = data / 'labels' / 'annotations' / 'val_labels.json'
    options = [] if args.epochs is None else [f'train_cfg.max_epochs={args.epochs}',
                                              f'param_scheduler.1.end={args.epochs}']
    if args.full:
        options += ['load_from=None', 'model.backbone.init_cfg=None']
    if args.real:  # the crops, and no validation during training (the bench evaluates after)
        options += ['train_dataloader.dataset.ann_file=labels/annotations/train_sliced_labels.json',
                    'train_dataloader.dataset.data_prefix.img=images/train_sliced/',
                    'train_cfg.val_interval=1000']
    work_dir, infer_dir = work / name / 'work_dir', work / name / 'infer'
    train_s = run_step(['train', str(ROOT / config), '--work-dir', str(work_dir), '--data-root', str(data),
                        *(arg for option in options for arg in ('--cfg-options', option))])
    slices = ['--slice', str(args.slice), '--overlap', '0.25'] if args.real else ['--no-slices']
    run_step(['infer', str(ROOT / config), str(last_checkpoint(work_dir)), str(ann), '--out', str(infer_dir),
              *slices, '--device', args.device, '--overwrite'])  # a rerun retrains: a new checkpoint
    modes = dict(full=infer_dir / 'sources' / 'full.json', sliced=infer_dir / 'predictions.json') \
        if args.real else dict(full=infer_dir / 'predictions.json')
    out = dict(config=config, train_s=train_s)
    for mode, pred in modes.items():
        metrics_json = work / name / f'metrics_{mode}.json'
        run_step(['evaluate', '--gt', str(ann), '--pred', str(pred), '--json', str(metrics_json)])
        out[mode] = read_json(metrics_json)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--full', action='store_true', help='the R50 configs instead of the tiny ones')
    parser.add_argument('--real', action='store_true', help=f'real VisDrone images ({REAL})')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='quick',
                        help='with --real: images, crop size and epochs (see PRESETS)')
    parser.add_argument('--train-images', type=int, default=64)
    parser.add_argument('--val-images', type=int, default=16)
    parser.add_argument('--size', default='512x384', help='WxH of the synthetic images')
    parser.add_argument('--epochs', type=int, help="the same for both (default: each config's own; "
                                                    "with --real the preset's)")
    parser.add_argument('--device', default='cpu', help='for inference; training uses CUDA when present')
    parser.add_argument('--work', type=Path, default=Path('/tmp/afm_bench_accuracy'))
    args = parser.parse_args()

    if args.real:
        preset = PRESETS[args.preset]
        args.epochs = args.epochs or preset['epochs']
        args.slice = preset['slice']
        data, about = make_real_split(REAL, args.work, preset['train_images'], preset['val_images'], args.slice)
        title = (f"Equal budget, real VisDrone ({args.preset}): {about['train_images']} train images "
                 f"({about['train_sequences']} sequences, {about['train_crops']} crops of {args.slice}) / "
                 f"{about['val_images']} val images ({about['val_sequences']} sequences), epochs {args.epochs}")
    else:
        width, height = map(int, args.size.split('x'))
        data, _ = make_synthetic_split(args.work, args.train_images, args.val_images, width, height)
        about = {}
        title = (f"Equal budget: {args.train_images} train / {args.val_images} val synthetic images, "
                 f"{args.size}, epochs {args.epochs or 'per config'}")
    configs = FULL if args.full else TINY
    results = {name: train_and_evaluate(name, cfg, data, args.work, args) for name, cfg in configs.items()}
    modes = ('full', 'sliced') if args.real else ('full',)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ['model', 'inference', 'train s', *(f'{view} {key}' for view, key in COLUMNS)]:
        table.add_column(col, justify='right')
    tood, afm = results['TOOD'], results['AFMNet']
    for mode in modes:
        for name, r in results.items():
            table.add_row(name, mode, f"{r['train_s']:.0f}", *(fmt(r[mode][v][k], '.2f') for v, k in COLUMNS))
        table.add_row('AFMNet vs TOOD', mode, f"{afm['train_s'] / tood['train_s']:.2f}x",
                      *(fmt(difference(afm[mode][v][k], tood[mode][v][k]), '+.2f') for v, k in COLUMNS))
    Console(width=160).print(table)
    write_json(args.work / 'results.json', dict(settings=vars(args) | dict(work=str(args.work)), data=about,
                                                results=results))
    print(json.dumps({f'{name}/{mode}': {f'{v}/{k}': None if r[mode][v][k] is None else round(r[mode][v][k], 2)
                                         for v, k in COLUMNS}
                      for mode in modes for name, r in results.items()}))


if __name__ == '__main__':
    main()
