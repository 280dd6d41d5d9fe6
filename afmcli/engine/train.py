"""Training: an mmdet config through mmengine's Runner, as mmdet's tools/train.py does,
plus what afm adds: safe checkpoint loading, a rich progress display, TensorBoard
when installed, CPU DDP on gloo, a wall-clock limit, and one option for the data root."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import uuid
from pathlib import Path

from afmcli.errors import AfmError, ParameterError
from afmcli.io import output_lock


def parse_cfg_options(options: list[str] | None) -> dict:
    """Parse ``key=value`` overrides exactly as mmdet's tools do (mmengine DictAction)."""
    if not options:
        return {}
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    for opt in options:
        if "=" not in opt:
            raise ParameterError(f"{{cfg_options}}: expected key=value, got {opt!r}", "cfg_options")
    return parser.parse_args(["--cfg-options", *options]).cfg_options


def leaf_datasets(dataset) -> list:
    """The datasets inside wrappers (RepeatDataset's `dataset`, ConcatDataset's `datasets`)."""
    if "datasets" in dataset:
        return [leaf for inner in dataset.datasets for leaf in leaf_datasets(inner)]
    if "dataset" in dataset:
        return leaf_datasets(dataset.dataset)
    return [dataset]


def inner_datasets(cfg, loaders) -> list[tuple[str, object]]:
    """(loader key, each innermost dataset config) for each of ``loaders`` the config has."""
    return [(key, leaf) for key in loaders if cfg.get(key) is not None
            for leaf in leaf_datasets(cfg.get(key).dataset)]


def set_data_root(cfg, data_root: str) -> None:
    """Point every dataloader's dataset (and the evaluators' ann_file) at ``data_root``."""
    old = cfg.get("data_root")
    cfg.data_root = data_root
    for _key, dataset in inner_datasets(cfg, ("train_dataloader", "val_dataloader", "test_dataloader")):
        dataset.data_root = data_root
    for key in ("val_evaluator", "test_evaluator"):
        evaluator = cfg.get(key)
        if evaluator and old and str(evaluator.get("ann_file", "")).startswith(old):
            evaluator.ann_file = data_root + evaluator.ann_file[len(old):]


def load_config(config: str | os.PathLike, cfg_options: list[str] | None = None):
    from mmengine.config import Config

    config = Path(config)
    if not config.is_file():
        raise AfmError(f"{config}: config not found")
    try:
        cfg = Config.fromfile(str(config))
    except Exception as exc:  # mmengine raises many kinds on a broken config
        raise AfmError(f"{config}: cannot load config ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    cfg.merge_from_dict(parse_cfg_options(cfg_options))
    return cfg


def prepare_config(cfg, config_path: Path, work_dir: Path | None = None, resume: str | None = None,
                   amp: bool = False, launcher: str = "none", data_root: str | None = None,
                   progress: bool = True, max_time: str | float | None = None):
    """Apply the command-line choices to a loaded config (pure: no Runner built)."""
    if launcher not in ("none", "pytorch", "slurm", "mpi"):
        raise ParameterError(f"{{launcher}}: expected none, pytorch, slurm or mpi, got {launcher!r}", "launcher")
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / config_path.stem)
    if data_root:
        set_data_root(cfg, data_root if data_root.endswith("/") else data_root + "/")
    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    check_load_from(cfg)
    custom_hooks = list(cfg.get("custom_hooks", []) or [])
    if progress and not any(h.get("type") == "RichProgressHook" for h in custom_hooks):
        custom_hooks.append(dict(type="RichProgressHook"))
    if max_time is not None:
        from afmcli.engine.time_limit_hook import parse_duration

        try:
            seconds = parse_duration(max_time)
        except ValueError as exc:
            raise ParameterError(f"{{max_time}}: {exc}", "max_time") from None
        custom_hooks = [h for h in custom_hooks if h.get("type") != "TrainTimeLimitHook"]
        custom_hooks.append(dict(type="TrainTimeLimitHook", max_time=seconds))
    cfg.custom_hooks = custom_hooks
    vis = cfg.get("visualizer")
    if vis is not None:
        # mmengine keeps one visualizer per name in a process: a second run there (the API, a
        # bench) got the first one's, warned, and logged its scalars into the first run's folder.
        vis.name = f"visualizer_{uuid.uuid4().hex[:12]}"
    if importlib.util.find_spec("tensorboard") is not None:
        if vis is not None:
            backends = list(vis.get("vis_backends", []))
            if not any(b.get("type") == "TensorboardVisBackend" for b in backends):
                backends.append(dict(type="TensorboardVisBackend"))
            vis.vis_backends = backends
    return cfg


def check_load_from(cfg) -> None:
    """Fail before building anything when a local ``load_from`` file is missing
    (the published config names the COCO TOOD checkpoint the user downloads)."""
    load_from = cfg.get("load_from")
    if not load_from or cfg.get("resume") or "://" in str(load_from):
        return
    if not Path(load_from).is_file():
        raise ParameterError(f"load_from: {load_from} not found; download it (see the config's comment) "
                             "or pass {cfg_options} load_from=None to train without it", "cfg_options")


def check_data_files(cfg) -> None:
    """Fail before the Runner creates the work dir when a dataset's json or image
    folder is missing (a wrong data root, say): one line naming the path."""
    loaders = ["train_dataloader"] + (["val_dataloader"] if cfg.get("val_cfg") else [])
    for key, dataset in inner_datasets(cfg, loaders):
        root = Path(str(dataset.get("data_root") or ""))
        ann_file = dataset.get("ann_file")
        if ann_file and not (root / ann_file).is_file():
            raise ParameterError(f"{key}: annotation file {root / ann_file} not found (data_root {root}/; "
                                 "set it with {data_root})", "data_root")
        img_dir = (dataset.get("data_prefix") or {}).get("img")
        if img_dir and not (root / img_dir).is_dir():
            raise AfmError(f"{key}: image folder {root / img_dir} not found (data_root {root}/)")
    for key in ("val_evaluator",) if cfg.get("val_cfg") else ():
        ann_file = (cfg.get(key) or {}).get("ann_file")
        if ann_file and not Path(ann_file).is_file():
            raise AfmError(f"{key}: annotation file {ann_file} not found")
    from afmcli.engine.data_config import check_class_keys

    check_class_keys(cfg, loaders)


def _init_cpu_distributed(cfg) -> None:
    """mmengine's pytorch launcher calls torch.cuda.set_device; on a CPU-only box we
    start the gloo process group ourselves and let DDP wrap a CPU module."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() or cfg.launcher != "pytorch" or dist.is_initialized():
        return
    dist.init_process_group(backend="gloo")
    cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)


def _prepare_data_once(cfg, data, options: dict, report):
    """--data written by one process: with a launcher, rank 0 writes while the others wait
    (mmengine's Runner keeps the process group started here)."""
    from mmengine.dist import barrier, get_rank, init_dist, is_distributed

    from afmcli.engine.data_config import prepare_data

    if cfg.launcher != "none" and not is_distributed():
        _init_cpu_distributed(cfg)
        if not is_distributed():
            init_dist(cfg.launcher, **cfg.get("env_cfg", {}).get("dist_cfg", {}))
    first = get_rank() == 0
    prepared = prepare_data(data, cfg.work_dir, **options) if first else None
    if prepared is not None and report is not None:
        report(prepared)
    barrier()
    return prepared or prepare_data(data, cfg.work_dir, write=False, **options)


def train(config: str | os.PathLike, work_dir=None, resume=None, amp=False, cfg_options=None,
          launcher="none", data_root=None, trust_checkpoint=False, progress=True, max_time=None,
          data=None, data_options=None, data_report=None, verbose=False):
    """Build the Runner and train. Returns the Runner (for tests and the demo).
    ``max_time`` (seconds, or a duration such as "1h30m") ends training at the last epoch
    forecast to finish within it (TrainTimeLimitHook). ``data``: a dataset (see
    :func:`afmcli.data.datasets.open_dataset`), written into the work dir and set into the
    config (:mod:`afmcli.engine.data_config`); ``data_options``: prepare_data's keywords
    (slice_size, overlap, skip_bad, images); ``data_report(prepared)`` is called once it is written.
    mmengine's log lines go to the work dir's log file, and with ``verbose`` to the terminal too."""
    from mmengine.runner import Runner

    from afmcli.engine import class_change_hook, progress_hook, time_limit_hook  # noqa: F401  (register the hooks)
    from afmcli.engine.checkpoint import install_safe_loader, trusted
    from afmcli.engine.quiet import quiet_coco_loads, quiet_runner

    config = Path(config)
    if data is not None and data_root:
        raise ParameterError("{data} and {data_root} both name the data: give one", "data", "data_root")
    cfg = prepare_config(load_config(config, cfg_options), config, work_dir, resume, amp,
                         launcher, data_root, progress, max_time)
    with contextlib.ExitStack() as stack:
        if _main_process():  # one run at a time trains into a work dir (the main process holds it for all)
            stack.enter_context(output_lock(cfg.work_dir, "afm train", "work_dir"))
        if data is not None:
            from afmcli.engine.data_config import apply_data

            apply_data(cfg, _prepare_data_once(cfg, data, data_options or {}, data_report))
        if cfg.get("load_from") and not cfg.get("resume") and \
                not any(h.get("type") == "ClassChangeHook" for h in cfg.custom_hooks):
            cfg.custom_hooks = [*cfg.custom_hooks, dict(type="ClassChangeHook")]
        check_data_files(cfg)
        if not verbose:
            stack.enter_context(quiet_coco_loads())
        _init_cpu_distributed(cfg)
        install_safe_loader()
        runner = (Runner if verbose else quiet_runner()).from_cfg(cfg)
        # Resuming reads the run's own files (optimizer state, message hub): trust them.
        trust_root = Path(cfg.work_dir) if resume else None
        if trust_checkpoint and cfg.get("load_from"):
            trust_root = Path(cfg.load_from)
        if trust_root is not None:
            stack.enter_context(trusted(trust_root))
        runner.train()
    return runner


def _main_process() -> bool:
    """Rank 0 of a launched run (torchrun's RANK, slurm's SLURM_PROCID), or the only process."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0
