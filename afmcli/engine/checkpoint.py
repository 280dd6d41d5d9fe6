"""Checkpoint loading under torch >= 2.6 without switching `weights_only` off.

mmengine 0.10.7 calls ``torch.load(filename)``; since torch 2.6 that means
``weights_only=True``, and mmengine's own checkpoints then fail: they hold a
HistoryBuffer, numpy arrays and scalars. We replace mmengine's local-file loader
with one that:

1. always tries ``weights_only=True`` with an allow-list of exactly the classes that
   mmengine checkpoints carry (``SAFE_GLOBALS``), so our own checkpoints, mmdet's
   released weights and plain state dicts load safely;
2. fully unpickles a file only when it is trusted: it lies under a path registered
   with :func:`trusted` (``afm train --resume`` trusts the run's own work dir) or the
   user passed ``--trust-checkpoint``. Full unpickling runs arbitrary code from the
   file, so it is never the default for weights from elsewhere;
3. otherwise refuses with one clear line naming the offending global.

The switch is per call: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is never set.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from afmcli.errors import AfmError, ParameterError

_TRUSTED: list[Path] = []


def checkpoint_classes(ckpt) -> tuple[str, ...] | None:
    """The class names a checkpoint records, or None: mmengine's ``meta.dataset_meta.classes``,
    or ``meta['CLASSES']`` of mmdet 2.x checkpoints (its model zoo's)."""
    meta = (ckpt.get("meta") if isinstance(ckpt, dict) else None) or {}
    classes = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    return tuple(classes) if classes else None


def _numpy_globals() -> list:
    """numpy internals that numpy's pickles name (numpy 1.x and 2.x spellings)."""
    found = [np.ndarray, np.dtype]
    for modname in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(modname, fromlist=["_reconstruct", "scalar"])
        except ImportError:
            continue
        found += [mod._reconstruct, mod.scalar]
    # Concrete dtype classes (numpy >= 1.25 pickles dtypes by their class).
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return found


def safe_globals() -> list:
    """The allow-list: what mmengine's own checkpoints need, nothing more."""
    from mmengine.logging.history_buffer import HistoryBuffer

    # builtins.getattr appears because mmengine pickles numpy dtypes and
    # HistoryBuffer's statistics via reduce; under weights_only its result
    # still cannot be called unless the callee is itself allow-listed.
    return [HistoryBuffer, getattr, *_numpy_globals()]


@contextlib.contextmanager
def trusted(path: str | os.PathLike) -> Iterator[None]:
    """Within this block, files under ``path`` may be fully unpickled."""
    entry = Path(path).resolve()
    _TRUSTED.append(entry)
    try:
        yield
    finally:
        _TRUSTED.remove(entry)


def is_trusted(filename: str | os.PathLike) -> bool:
    resolved = Path(filename).resolve()
    return any(resolved == t or t in resolved.parents for t in _TRUSTED)


def _refused_global(exc: Exception) -> str | None:
    """The global a weights-only load refused, or None when the file is simply not a pickle."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else None


def load_checkpoint_file(filename: str | os.PathLike, map_location=None, trust: bool = False):
    """Load a checkpoint file: safe first, full unpickling only when trusted.

    An empty, truncated or foreign file is "not a checkpoint" (never a hint to
    trust it: unpickling cannot repair a damaged file).
    """
    filename = Path(filename).expanduser()
    if not filename.is_file():
        raise AfmError(f"{filename}: checkpoint not found")
    if filename.stat().st_size == 0:
        raise AfmError(f"{filename}: not a checkpoint (empty file)")
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        offender = _refused_global(exc)
        if offender is None:
            raise AfmError(f"{filename}: not a checkpoint (damaged or not a torch file: "
                           f"{_first_line(exc)})") from None
        if trust or is_trusted(filename):
            return torch.load(filename, map_location=map_location, weights_only=False)
        raise ParameterError(
            f"{filename}: refusing to unpickle {offender}, which is outside the checkpoint "
            "allow-list; pass {trust=True} only if you trust this file", "trust=True") from None
    except Exception as exc:  # torch raises many kinds (IndexError, KeyError, RuntimeError...) on junk
        raise AfmError(f"{filename}: not a checkpoint (damaged or not a torch file: "
                       f"{type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def _mmengine_local_loader(filename, map_location):
    return load_checkpoint_file(filename, map_location)


def install_safe_loader() -> None:
    """Route mmengine's local checkpoint loading (Runner resume/load_from,
    ``mmengine.runner.load_checkpoint``) through :func:`load_checkpoint_file`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=_mmengine_local_loader, force=True)


def load_checkpoint(model: torch.nn.Module, filename: str | os.PathLike, map_location="cpu",
                    trust: bool = False, strict: bool = False):
    """Load weights into ``model`` (mmengine semantics: 'state_dict' key, prefixes)."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    checkpoint = load_checkpoint_file(filename, map_location, trust=trust)
    _load_checkpoint_to_model(model, checkpoint, strict=strict)
    return checkpoint
