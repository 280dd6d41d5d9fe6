"""Fine-tuning onto other classes: ``load_from`` a checkpoint trained on another class list.

mmengine loads such a checkpoint with a page of "size mismatch" warnings when the class
count differs, and silently keeps the old classification weights when only the names
or their order differ (class 3 of the checkpoint then scores the data's class 3,
whatever it is). :class:`ClassChangeHook` compares the checkpoint's class names
(``meta.dataset_meta.classes``, which mmengine's checkpoints record) with the data's and,
when they differ, rebuilds the classification layers in the loaded weights: backbone,
neck and box branches are kept; each class the data share with the checkpoint by name
keeps its trained rows (VisDrone's 10 -> pedestrian, car, bus: their three), every other
class starts as freshly initialised, and one line says so. Rows are a class's only where
the layer's first axis is (priors x classes), as in mmdet's sigmoid heads; any other
class-dependent tensor starts fresh.

The classification layers are found, not named: the parameters whose shape changes
when the model is built with one class more.
"""

from __future__ import annotations

import copy

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from afmcli.engine.checkpoint import checkpoint_classes
from afmcli.engine.class_keys import num_classes_in, set_num_classes
from afmcli.errors import few, warn


def class_dependent_keys(model_cfg, state_dict_shapes: dict) -> set[str]:
    """State-dict keys of the model ``model_cfg`` builds whose shape depends on its class count."""
    import torch
    from mmdet.registry import MODELS

    cfg = copy.deepcopy(model_cfg)
    counts = num_classes_in(cfg)
    if not counts:
        return set()
    set_num_classes(cfg, max(counts) + 1)
    cfg.pop("init_cfg", None)
    with torch.device("meta"):
        other = MODELS.build(cfg)
    return {k for k, v in other.state_dict().items()
            if k in state_dict_shapes and tuple(v.shape) != tuple(state_dict_shapes[k])}


def _names(classes) -> str:
    return f"{len(classes)} ({few(classes, 4)})"


@HOOKS.register_module()
class ClassChangeHook(Hook):
    """Start the classification layers fresh when ``load_from`` has other classes.

    Args:
        classes: the data's class names; default: the training dataset's metainfo.
    """

    priority = "VERY_HIGH"

    def __init__(self, classes=None):
        self.classes = tuple(classes) if classes else None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner._resume:  # resuming a run: its own classes
            return
        classes = self.classes or tuple(runner.train_dataloader.dataset.metainfo.get("classes") or ())
        old = checkpoint_classes(checkpoint) or ()
        if old and old == classes:
            return
        state = checkpoint.get("state_dict", checkpoint)
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        current = model.state_dict()  # initialised, before the checkpoint loads
        own = {k: tuple(v.shape) for k, v in current.items()}
        dependent = class_dependent_keys(runner.cfg.model, own)
        loaded = {k.removeprefix("module."): k for k in state}
        shape_changed = any(k in loaded and tuple(state[loaded[k]].shape) != own[k] for k in dependent)
        if not old and not shape_changed:
            return  # no class names recorded and the layers fit: nothing tells the classes differ
        shared = [(old.index(name), new) for new, name in enumerate(classes) if name in old]
        dropped, carried = [], []
        for key in sorted(k for k in dependent if k in loaded):
            rows = _class_rows(state[loaded[key]], own[key], len(old), len(classes), shared)
            if not rows:  # the model's own initialisation stays
                dropped.append(key)
                del state[loaded[key]]
                continue
            carried.append(key)
            merged = current[key].detach().clone()
            for old_row, new_row in rows:
                merged[new_row] = state[loaded[key]][old_row].to(merged)
            state[loaded[key]] = merged
        was = _names(old) if old else "unrecorded"
        layers = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in dropped + carried))
        cls = (f"the classification layers ({few(layers, 3)}) keep the trained weights of the {len(shared)} "
               f"classes shared by name ({few([classes[n] for _, n in shared], 4)}), the others start fresh"
               if carried else f"the classification layers start fresh ({few(layers, 3)})")
        warn(f"load_from {runner._load_from}: its classes ({was}) differ from the data's {_names(classes)}: "
             f"kept backbone, neck and box branches; {cls}")


def _class_rows(loaded, shape: tuple, old_count: int, new_count: int,
                shared: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """(checkpoint row, model row) pairs of the shared classes in a tensor whose first axis is
    priors x classes (mmdet's sigmoid heads: row = prior * classes + class); None where it is not."""
    if not old_count or not shape or loaded.ndim != len(shape) or tuple(loaded.shape[1:]) != tuple(shape[1:]):
        return None
    priors, rest = divmod(loaded.shape[0], old_count)
    if rest or priors * new_count != shape[0]:
        return None
    return [(p * old_count + o, p * new_count + n) for p in range(priors) for o, n in shared]
