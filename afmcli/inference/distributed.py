"""`afm infer` under a launcher (pytorch, slurm): one process per GPU (nccl) or CPU process
(gloo, torchrun), images sharded by tile count, rank 0 deciding and merging."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from afmcli.errors import AfmError, ParameterError

T = TypeVar("T")
LAUNCHERS = ("none", "pytorch", "slurm")
# A rank that finishes its shard waits at a barrier for the slowest one: hours, not
# torch's default 30 minutes.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def merged(self, part: dict) -> dict:
        """Every rank's ``part`` in one dict, on every rank."""
        if self.world == 1:
            return dict(part)
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, part)
        return {key: value for one in parts for key, value in one.items()}

    def on_rank0(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and give every rank its result; an error there is the
        same AfmError on every rank (so all exit 2 with one line)."""
        result = error = None
        if self.rank == 0:
            try:
                result = fn()
            except AfmError as exc:
                error = exc
            except Exception as exc:
                if self.world > 1:  # the other ranks stop with one line instead of waiting
                    failed = AfmError(f"rank 0 failed: {type(exc).__name__}: {exc}")
                    torch.distributed.broadcast_object_list([(None, failed)], src=0)
                raise
        if self.world > 1:
            box = [(result, error)]
            torch.distributed.broadcast_object_list(box, src=0)
            result, error = box[0]
        if error is not None:
            raise error
        return result


@contextlib.contextmanager
def distributed(launcher: str, device: str) -> Iterator[DistContext]:
    """The process group for ``launcher`` (none: one process), torn down at the end."""
    if launcher not in LAUNCHERS:
        raise ParameterError(f"{{launcher}}: expected none, pytorch or slurm, got {launcher!r}", "launcher")
    if launcher == "none":
        yield DistContext(0, 1, device)
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParameterError(f"{{device}} {device}: CUDA is not available on this machine", "device")
        from mmengine.dist import init_dist

        # Sets this rank's GPU; mmengine takes the timeout in seconds.
        init_dist(launcher, backend="nccl", timeout=int(BARRIER_TIMEOUT.total_seconds()))
        device = f"cuda:{torch.cuda.current_device()}"
    elif launcher == "slurm":
        raise ParameterError("{launcher} slurm runs one process per GPU (nccl); on CPUs start the processes "
                             "with torchrun and {launcher} pytorch", "launcher")
    else:
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ParameterError(f"{{launcher}} pytorch: {', '.join(missing)} not set; start afm with torchrun",
                                 "launcher")
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def balanced_shards(weights: Sequence[float], parts: int) -> list[slice]:
    """``parts`` contiguous slices of the items, each near ``sum(weights) / parts``.

    An item goes to the part its weight's midpoint falls in, so no part is off by
    more than one item's weight. Contiguous keeps a video's frames together (one
    forward read per part) and is the same on every rank.
    """
    w = np.asarray(weights, dtype=np.float64)
    mid = np.cumsum(w) - w / 2
    total = float(w.sum())
    bounds = [0] + [int(np.searchsorted(mid, total * k / parts, side="right")) for k in range(1, parts)] + [len(w)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
