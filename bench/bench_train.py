"""Training-iteration time and peak memory: AFMNet against TOOD, and the HD head on windows
against the same head dense on the whole stride-4 map. One run, side by side, with ratios.

Each measurement runs in its own process, so peak memory is its own (CPU: peak RSS growth
during the iterations; CUDA: torch.cuda.max_memory_allocated). On a shared CPU box compare
the CPU-time ratio (the process's own CPU seconds): wall time moves with the other load.

    .venv/bin/python bench/bench_train.py                       # CPU, R50 configs, 512x384, batch 2
    .venv/bin/python bench/bench_train.py --tiny                # the tiny synth configs
    .venv/bin/python bench/bench_train.py --device cuda --size 1333x800 --batch 4 --amp
    .venv/bin/python bench/bench_train.py --size 1333x800 --batch 1 --iters 1 --warmup 1 --profile
                                                                # + torch.profiler's top ops per model
    .venv/bin/python bench/bench_train.py --count-ops --size 1333x800 --batch 4 --only tood afmnet
    .venv/bin/python bench/bench_train.py --parts --size 1333x800 --batch 1 --only afmnet  # per part
    .venv/bin/python bench/bench_train.py --size 1333x800 --batch 1 --only tood afmnet \
        --cfg-options model.affm.margin=1              # a variant of AFMNet against the same TOOD

--count-ops counts, for one training iteration (forward and backward, after one warm-up), the
operators dispatched (each one a kernel launch or at least a dispatcher round trip on a GPU) and
the host syncs among them: the calls whose result the host must read, which on a GPU wait for
the device (item/bool/int of a tensor, nonzero, boolean-mask indexing, unique, masked_select,
repeat_interleave without output_size, tolist/numpy), and the tensors made from host values
(torch.tensor, new_tensor: on a GPU a host-to-device copy, which also waits). A CPU proxy for the launch overhead that
dominates AFMNet's extra cost on a GPU. mmcv's compiled ops are called outside the dispatcher
and are not counted (both models run TOOD's deformable sampling); the CPU CARAFE (pure
PyTorch, one source row at a time) counts as one operator each way, as mmcv's CUDA kernel.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this tree's afmcli, also in another worktree (before/after runs)
FULL = dict(tood='configs/AFM/tood_r50_visdrone.py', afmnet='configs/AFM/AFMNet-tood_r50_k13.py')
TINY = dict(tood='configs/AFM/tood_tiny_synth.py', afmnet='configs/AFM/afmnet_tiny_synth.py')


KINDS = ('tood', 'afmnet', 'hd_dense', 'hd_windows')
NOT_RUN = dict(seconds=float('nan'), cpu_seconds=float('nan'), peak_mib=float('nan'), cells=float('nan'))


def rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def make_batch(n: int, w: int, h: int, device: str, seed: int = 0):
    """Normalised random images with VisDrone-like labels: 60 mostly small boxes each, and the
    small/large masks the training pipeline packs (RenderObjectMasks), drawn on the host."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData, PixelData

    from afmcli.data.masks import render_object_masks_torch

    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                        pad_shape=(h, w), batch_input_shape=(h, w)))
        xy = torch.rand(60, 2, generator=gen) * torch.tensor([w - 80.0, h - 80.0])
        wh = 4 + torch.rand(60, 2, generator=gen) ** 2 * 70
        boxes = torch.cat([xy, xy + wh], 1)
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, 10, (60,), generator=gen))
        areas = wh.prod(1)
        s.gt_mask_s = PixelData(data=render_object_masks_torch(boxes, areas, (-(-h // 8), -(-w // 8)), 8)[0][None])
        s.gt_mask_l = PixelData(data=render_object_masks_torch(boxes, areas, (-(-h // 16), -(-w // 16)), 16)[1][None])
        samples.append(s.to(device))
    return torch.randn(n, 3, h, w, generator=gen).to(device), samples


SYNC_OPS = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.masked_select', 'aten._unique', 'aten.unique',
            'aten.repeat_interleave.Tensor')
SYNC_METHODS = ('tolist', 'numpy', '__array__')


def is_sync(func, args, kwargs) -> bool:
    """Whether a dispatched operator makes the host wait for the device's result."""
    name = str(func)
    if name.startswith(SYNC_OPS):
        return not (name.startswith('aten.repeat_interleave') and (kwargs or {}).get('output_size') is not None)
    if name.startswith(('aten.index.', 'aten.index_put', 'aten._index_put_impl')):  # a boolean mask: nonzero inside
        import torch
        indices = args[1] if len(args) > 1 else ()
        return any(torch.is_tensor(i) and i.dtype == torch.bool for i in indices or ())
    return False


def op_counter():
    """A context manager counting dispatched operators and host syncs (see --count-ops);
    its value has `ops`, `views` (metadata-only operators, no kernel), `syncs`, `sync_names`
    (Counter) and `from_host` (tensors made from host values)."""
    import collections

    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = self.views = self.syncs = self.from_host = self.opaque = 0
            self.sync_names = collections.Counter()
            self.methods = _HostReads(self)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.opaque:
                return func(*args, **(kwargs or {}))
            self.ops += 1
            self.views += bool(getattr(func, 'is_view', False))
            self.from_host += str(func).startswith('aten.lift_fresh')
            if is_sync(func, args, kwargs):
                self.syncs += 1
                self.sync_names[str(func)] += 1
            return func(*args, **(kwargs or {}))

        def __enter__(self):
            self.methods.__enter__()
            self.restore = _one_op_carafe(self)
            return super().__enter__()

        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.restore()
            return self.methods.__exit__(*exc)

    class _HostReads(TorchFunctionMode):  # tolist/numpy do not reach the dispatcher
        def __init__(self, counts):
            super().__init__()
            self.counts = counts

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, '__name__', '')
            if name in SYNC_METHODS:
                self.counts.syncs += 1
                self.counts.sync_names[f'Tensor.{name}'] += 1
            return func(*args, **(kwargs or {}))

    return Counts()


def _one_op_carafe(counts):
    """Count the CPU CARAFE's forward and backward as one operator each (mmcv's CUDA kernel
    is one launch); returns the undo."""
    from afmcli.models.carafe import _CarafeTorch

    original = _CarafeTorch.forward, _CarafeTorch.backward

    def opaque(fn):
        def run(*args):
            counts.ops += 1
            counts.opaque += 1
            try:
                return fn(*args)
            finally:
                counts.opaque -= 1
        return staticmethod(run)

    _CarafeTorch.forward, _CarafeTorch.backward = opaque(original[0]), opaque(original[1])

    def restore():
        _CarafeTorch.forward, _CarafeTorch.backward = staticmethod(original[0]), staticmethod(original[1])
    return restore


def afmnet_parts(model, inputs, samples) -> dict:
    """CPU seconds of each AFMNet part's forward, in training order, and of the backward of
    all of it (one step, this process)."""
    import time

    times = {}

    def timed(name, fn):
        start = time.process_time()
        out = fn()
        times[name] = time.process_time() - start
        return out

    c = timed('backbone', lambda: model.backbone(inputs))
    feats = timed('neck (CFPN)', lambda: list(model.neck(c)))
    logits = timed('mask estimators', lambda: model.mask_estimator(feats[:2]))
    out = dict(c2=c[0], feats=feats, mask_logits=logits, mask_targets=model._mask_targets(samples, logits))
    feats[1], _ = model.affm.enhance(feats[1], logits[1])
    main = timed('main head', lambda: model.bbox_head(feats))
    crops, windows, hw, valid_hw = timed('windows, P2 on crops, IRFI', lambda: model._hd_input(out, samples, True))
    scores, boxes, flat, valid = timed('HD head', lambda: model._hd_cells(crops, windows, hw, valid_hw))
    gt = [s.gt_instances for s in samples]
    losses = timed('main head loss', lambda: model.bbox_head.loss_by_feat(*main, gt, [s.metainfo for s in samples]))
    priors = model.hd_head.prior_generator.single_level_grid_priors(hw, 0, device=inputs.device)[flat]
    losses.update(timed('HD head targets and loss', lambda: model.hd_head.loss_by_cells(scores, boxes, priors, valid, gt)))
    losses.update(model.mask_estimator.loss(logits, out['mask_targets']))
    total = sum(v if hasattr(v, 'backward') else sum(v) for v in losses.values())
    timed('backward (all)', total.backward)
    model.zero_grad(set_to_none=True)
    return times


def worker(args) -> dict:
    """One measurement in this process; prints a JSON line."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine import MessageHub
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    import afmcli.models  # noqa: F401

    register_all_modules()
    if args.device == 'cpu':
        torch.set_num_threads(args.threads)
    MMLogger.get_instance('mmengine', log_level='WARNING')
    configs = TINY if args.tiny else FULL
    kind = args.worker
    cfg = Config.fromfile(str(ROOT / configs['afmnet' if kind.startswith('hd') else kind]))
    if kind != 'tood' and args.cfg_options:
        from afmcli.engine.train import parse_cfg_options
        cfg.merge_from_dict(parse_cfg_options(args.cfg_options))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(args.device)
    model.init_weights()
    model.train()
    MessageHub.get_current_instance().update_info('epoch', 5)  # TaskAligned phase
    w, h = map(int, args.size.split('x'))
    inputs, samples = make_batch(args.batch, w, h, args.device)
    cuda = args.device == 'cuda'

    if kind == 'tood' or kind == 'afmnet':
        def step():
            losses = model.loss(inputs, samples)
            sum(v if torch.is_tensor(v) else sum(v) for v in losses.values()).backward()
        extra = {}
    else:  # the HD head alone: on the AFFM windows, or dense on the whole stride-4 map
        head, affm = model.hd_head, model.affm
        c = head.in_channels
        ph, pw = -(-h // 32) * 8, -(-w // 32) * 8
        wh, ww = min(affm.window, ph) + 2 * affm.margin, min(affm.window, pw) + 2 * affm.margin
        windowed = kind == 'hd_windows' and affm.windows_cheaper((ph, pw))  # as AFMNet decides
        shape = (args.batch * affm.topk, c, wh, ww) if windowed else (args.batch, c, ph, pw)
        feat = torch.randn(*shape, device=args.device)

        def step():
            cls_scores, bbox_preds = model.hd_head((feat,))  # all crops in one call, as AFMNet
            (cls_scores[0].sum() + bbox_preds[0].sum()).backward()
        extra = dict(cells=shape[0] * shape[2] * shape[3] / args.batch)

    amp = torch.autocast('cuda', dtype=torch.float16) if (cuda and args.amp) else None
    base_rss = rss_bytes()  # model and batch in place; the peak adds activations and gradients
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.iters):
        if i == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
        if amp is not None:
            with amp:
                step()
        else:
            step()
        model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.iters
    # CPU time of this process: on a shared box it moves far less with the load than wall time
    cpu_seconds = (time.process_time() - cpu_start) / args.iters
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss is the process's lifetime peak, in KiB
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    if args.count_ops:  # one more step, counted
        with op_counter() as counts:
            step()
        model.zero_grad(set_to_none=True)
        extra.update(ops=counts.ops, kernel_ops=counts.ops - counts.views, syncs=counts.syncs,
                     from_host=counts.from_host,
                     sync_names=dict(counts.sync_names.most_common(12)))
    if args.parts and kind == 'afmnet':
        extra['parts'] = afmnet_parts(model, inputs, samples)
    if args.profile:  # one more step, profiled; the table goes to stderr (stdout is the JSON line)
        from torch.profiler import profile
        with profile() as prof:
            step()
        model.zero_grad(set_to_none=True)
        sort = 'self_cuda_time_total' if cuda else 'self_cpu_time_total'
        print(f'--- {kind} ---\n' + prof.key_averages().table(sort_by=sort, row_limit=20), file=sys.stderr)
    return dict(kind=kind, seconds=seconds, cpu_seconds=cpu_seconds, peak_mib=peak / 2 ** 20, **extra)


def run(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, '--worker', kind, '--device', args.device, '--size', args.size,
           '--batch', str(args.batch), '--iters', str(args.iters), '--warmup', str(args.warmup),
           '--threads', str(args.threads)]
    cmd += ['--amp'] * args.amp + ['--tiny'] * args.tiny + ['--profile'] * args.profile
    cmd += ['--count-ops'] * args.count_ops + ['--parts'] * args.parts
    cmd += ['--cfg-options', *args.cfg_options] if args.cfg_options else []
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.profile else subprocess.PIPE,
                         text=True, cwd=ROOT)
    if out.returncode:  # one failed measurement must not hide the others, nor its cause
        print(f"{kind} failed (exit {out.returncode}):\n{(out.stderr or '')[-3000:]}", file=sys.stderr)
        return dict(NOT_RUN, kind=kind)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{kind}: {json.dumps(result)}", file=sys.stderr, flush=True)  # kept if a time limit cuts the rest
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--size', default='512x384', help='WxH of the input batch')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--amp', action='store_true', help='fp16 autocast (CUDA)')
    parser.add_argument('--tiny', action='store_true', help='the tiny synth configs instead of R50')
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads per measurement (1: stable timings on a shared box)')
    parser.add_argument('--profile', action='store_true',
                        help="also print torch.profiler's top operators of each measurement (stderr)")
    parser.add_argument('--count-ops', action='store_true',
                        help='also count operators and host syncs of one iteration (see above)')
    parser.add_argument('--parts', action='store_true',
                        help="also time each of AFMNet's parts (forward) and the backward, one step")
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help="changes to AFMNet's config (mmengine syntax), e.g. model.affm.margin=1")
    parser.add_argument('--only', nargs='+', choices=KINDS, default=KINDS, help='measure these only')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from rich.console import Console
    from rich.table import Table

    res = {kind: run(kind, args) if kind in args.only else NOT_RUN for kind in KINDS}
    mem = 'peak CUDA MiB' if args.device == 'cuda' else 'peak RSS growth MiB'
    table = Table(title=f"train iteration, {args.device}, {args.size}, batch {args.batch}"
                        f"{', amp' if args.amp else ''}{', tiny' if args.tiny else ', R50'}"
                        f"{f', {args.threads} thread(s)' if args.device == 'cpu' else ''}")
    for col in ('what', 's / iter', 'CPU s / iter', mem, 'time ratio', 'CPU time ratio', 'memory ratio'):
        table.add_column(col, justify='right' if col != 'what' else 'left')
    rows = [('TOOD', 'tood', None), ('AFMNet', 'afmnet', 'tood'),
            ('HD head dense (stride-4 map)', 'hd_dense', None), ('HD head on windows', 'hd_windows', 'hd_dense')]
    for label, kind, ref in rows:
        r = res[kind]
        ratio_t = f"{r['seconds'] / res[ref]['seconds']:.2f}x" if ref else ''
        ratio_c = f"{r['cpu_seconds'] / res[ref]['cpu_seconds']:.2f}x" if ref else ''
        ratio_m = f"{r['peak_mib'] / max(res[ref]['peak_mib'], 1e-9):.2f}x" if ref else ''
        table.add_row(label, f"{r['seconds']:.3f}", f"{r['cpu_seconds']:.3f}", f"{r['peak_mib']:.0f}",
                      ratio_t, ratio_c, ratio_m)
    console = Console()
    console.print(table)
    if args.count_ops:
        counted = Table(title='operators and host syncs per training iteration (dispatched, forward + backward)')
        for col in ('what', 'operators', 'kernel operators', 'host syncs', 'tensors from host', 'operators ratio',
                    'syncs ratio', 'most frequent syncs'):
            counted.add_column(col, justify='right' if col not in ('what', 'most frequent syncs') else 'left')
        for label, kind, ref in rows:
            r = res[kind]
            if 'ops' not in r:
                continue
            base = res[ref] if ref and 'ops' in res[ref] else None
            counted.add_row(label, str(r['ops']), str(r['kernel_ops']), str(r['syncs']), str(r['from_host']),
                            f"{r['ops'] / base['ops']:.2f}x" if base else '',
                            f"{r['syncs'] / max(base['syncs'], 1):.2f}x" if base else '',
                            ', '.join(f'{k} {v}' for k, v in list(r['sync_names'].items())[:4]))
        console.print(counted)
    if 'parts' in res['afmnet']:
        parts = Table(title='AFMNet: CPU seconds of each part (forward), and the backward, one step')
        parts.add_column('part')
        parts.add_column('CPU s', justify='right')
        for name, seconds in res['afmnet']['parts'].items():
            parts.add_row(name, f'{seconds:.2f}')
        console.print(parts)
    console.print(f"HD head cells on windows / dense: {res['hd_windows']['cells'] / res['hd_dense']['cells']:.3f}")


if __name__ == '__main__':
    main()
