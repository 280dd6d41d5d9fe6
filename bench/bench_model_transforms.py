"""Inference with the model transformations of `afm infer` (`--fuse-conv-bn`: the backbone's
BatchNorms folded into its convolutions; `--channels-last`: weights and activations in NHWC
memory) beside the plain mmdet model, side by side in one run.

    .venv/bin/python bench/bench_model_transforms.py                   # CPU, 1 thread, 8 tiles of 512
    .venv/bin/python bench/bench_model_transforms.py --device cuda --batch 32 --amp

For each config (the tiny test TOOD, the R50 TOOD and AFMNet), the model is built with
BatchNorm statistics drawn away from the identity (as training leaves them; the weights are
random, which does not change the work), and one forward pass over a batch of --size tiles
(``model.test_step``: preprocessing, backbone, neck, head, NMS) is timed for the plain copy
and each of --transforms in turn, best of --rounds after a warm-up, the rounds interleaved.
Reported: ms per batch, the ratio to plain, and the largest score difference to plain
(detections matched by rank).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"tiny TOOD (tests)": ROOT / "tests" / "fixtures" / "tiny_tood.py",
           "TOOD R50": ROOT / "configs" / "AFM" / "tood_r50_visdrone.py",
           "AFMNet R50": ROOT / "configs" / "AFM" / "AFMNet-tood_r50_k13.py"}


def build(config: Path, device: str):
    """The config's detector in eval mode on ``device``, BatchNorm statistics and affine drawn
    in [0.5, 1.5), and its config."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import afmcli.models  # noqa: F401  (registers AFMNet's parts)
    from afmcli.engine.train import load_config

    register_all_modules()
    cfg = load_config(config)
    torch.manual_seed(0)
    module = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        for bn in module.backbone.modules():
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                    tensor.copy_(0.5 + torch.rand_like(tensor))
    return module.to(device), cfg


def time_batch(model, data: dict, rounds: int) -> tuple[float, np.ndarray]:
    """Best seconds of one ``model.forward`` over ``data``, and the scores of its last run."""
    best = float("inf")
    model.forward(data)  # warm-up: allocator, cudnn's choices
    for _ in range(rounds):
        if model.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        dets = model.forward(data)
        if model.device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, np.concatenate([d.scores for d in dets])


def main() -> None:
    from afmcli.inference.backends.mmdet_backend import Model, config_classes
    from afmcli.inference.backends.speed import fuse_backbone_conv_bn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="tiles per forward pass")
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable timings on a shared box)")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast for all, as `afm infer --fp16`")
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), metavar="NAME", default=list(CONFIGS))
    parser.add_argument("--transforms", nargs="+", choices=("fuse_conv_bn", "channels_last"),
                        default=["fuse_conv_bn", "channels_last"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.batch)]
    where = (f"{torch.cuda.get_device_name(0)}{', AMP' if args.amp else ''}" if args.device.startswith("cuda")
             else f"CPU, {torch.get_num_threads()} thread(s)")
    table = Table(title=f"{args.batch} tiles of {args.size} px per forward ({where}), best of {args.rounds}")
    for column in ("model", "backbone BNs", "plain ms", *(f"{t} {c}" for t in args.transforms
                                                            for c in ("ms", "/ plain", "max score diff"))):
        table.add_column(column, justify="right")
    for name in args.only:
        module, cfg = build(CONFIGS[name], args.device)
        bns = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.backbone.modules())
        # Each Model applies --amp (`afm infer --fp16`) to its own module.
        models = {"plain": Model(module, cfg, config_classes(cfg), args.device, fp16=args.amp)}
        data = models["plain"].pipeline(tiles)
        for transform in args.transforms:
            copy_ = copy.deepcopy(module)
            if transform == "fuse_conv_bn":
                assert fuse_backbone_conv_bn(copy_), name
            models[transform] = Model(copy_, cfg, config_classes(cfg), args.device, fp16=args.amp,
                                      channels_last=transform == "channels_last")
            assert models[transform].channels_last == (transform == "channels_last"), name
        times, scores = {}, {}
        # Interleaved rounds: a load change on the box hits all alike.
        for _ in range(2):
            for label, model in models.items():
                t, s = time_batch(model, data, args.rounds)
                times[label] = min(times.get(label, t), t)
                scores[label] = s
        row = [name, str(bns), f"{times['plain'] * 1e3:.0f}"]
        for transform in args.transforms:
            n = min(len(scores["plain"]), len(scores[transform]))
            diff = float(np.abs(np.sort(scores["plain"])[::-1][:n] - np.sort(scores[transform])[::-1][:n]).max()) \
                if n else 0.0
            row += [f"{times[transform] * 1e3:.0f}", f"{times[transform] / times['plain']:.3f}", f"{diff:.1e}"]
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
