"""`afm infer` end to end: a source's images -> tiles + full pass -> fusion -> the writers' files.

Output folder (each entry written at a temporary name, renamed into place at the end):
    predictions.json      the fused result (COCO results)
    categories.json       its category table: the model's classes (the checkpoint's) and their ids
    images.json           the file of each image id, relative to the source (checked at evaluation)
    sources/slices.json   raw tile detections, image coordinates (COCO results)
    sources/full.json     raw full-image detections (COCO results)
    visdrone/<name>.txt   the fused result in VisDrone's format, one file per image (VisDrone's classes)
    viz/<name>.png        with viz: fused boxes drawn on the image, with a legend (.jpg above 0.5 MP)
    vid/<video>.txt       with vid: VisDrone-VID result files of video sources
    yolo/<name>.txt       with yolo: ultralytics-style txt results
    .afm-written          the entries above that afm wrote (afmcli.io.SharedFolder)
    .afm-infer/           run state: fingerprint, per-image records (afmcli.inference.state)
Each is one writer (afmcli/inference/writers/).

Images stream: each is written to a record log as it finishes (memory stays flat),
a rerun of the same command skips the images done, and the final files are put
together from the records at the end (afmcli.inference.assemble). Under
``launcher`` each rank runs its shard and rank 0 puts the files together.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from afmcli.data.slicing import MANY_TILES_PER_IMAGE, tile_count, warn_many_tiles
from afmcli.errors import ParameterError
from afmcli.io import named_write_errors, output_lock
from afmcli.inference.assemble import Totals, assemble
from afmcli.inference.backends.onnx_runtime import OnnxModel, is_onnx, read_metadata
from afmcli.inference.distributed import DistContext, balanced_shards, distributed
from afmcli.inference.loader import UnitStream, make_loader, size_weight
from afmcli.inference.predict import check_settings, predict_units
from afmcli.inference.settings import InferSettings
from afmcli.engine.train import load_config
from afmcli.inference.backends.mmdet_backend import Model, load_model
from afmcli.inference.records import RecordWriter, scan_records
from afmcli.inference.sources import ImageItem, Source, category_ids, open_source, why_unreadable
from afmcli.inference.state import RunState, fingerprint
from afmcli.inference.writers import RunInfo, enabled_writers, output_names

REFERENCE_SIZE = (2000, 1500)  # VisDrone's largest images (width, height)


@dataclass
class InferStats(Totals):
    processed: int = 0  # images run by this start (the others were done before)
    seconds: float = 0.0
    ranks: int = 1
    rank: int = 0  # of this process


@dataclass
class Plan:
    """What rank 0 decided and every rank follows."""

    source: Source
    fingerprint: dict
    status: str  # new, resume or complete
    shards: list[list[ImageItem]] = field(default_factory=list)
    weights: list[list[int]] = field(default_factory=list)  # tiles + full pass per image, per shard


def make_plan(cfg, checkpoint: Path, source: Path | Source, out: Path, settings: InferSettings, device: str,
              images_dir: Path | None, frame_step: int, overwrite: bool, ranks: int,
              classes: tuple[str, ...], split: str = "val") -> Plan:
    # A source opened already (afm track's image sequences) runs as it is.
    opened = open_source(source, images_dir, frame_step, split) if isinstance(source, (str, Path)) else source
    names = dict(zip(category_ids(classes, opened.categories, opened.path), classes))
    writers = enabled_writers(settings, names)
    for cls in writers:
        cls.check(opened, names)
    state = RunState(out)
    state.check_targets(output_names(writers))
    fp = fingerprint(cfg, checkpoint, settings, opened, device)
    status = state.status(fp, overwrite)
    plan = Plan(opened, fp, status)
    if status == "complete":
        return plan
    done = set(scan_records(state.records)) if status == "resume" else set()
    todo = [item for item in opened.items if item.image_id not in done]
    sizes = [opened.size(item) for item in todo]  # header reads (fast), once for both uses
    if settings.slices and tile_count(*REFERENCE_SIZE[::-1], settings.slice_size, settings.overlap) \
            <= MANY_TILES_PER_IMAGE:  # else said already, before any work
        warn_many_tiles([size for size in sizes if size], settings.slice_size, settings.overlap)
    weights = [size_weight(size, settings) for size in sizes]
    for part in balanced_shards(weights, ranks):
        plan.shards.append(todo[part])
        plan.weights.append(weights[part])
    return plan


def run_shard(model: Model, source: Source, shard: list[ImageItem], weights: list[int], run: RunInfo,
              state: RunState, ctx: DistContext, workers: int) -> dict[int, str]:
    """Run this rank's images, appending each finished image to a record log; returns why
    each image that could not be read could not, by image id."""
    from afmcli.progress import make_progress

    settings = run.settings
    drawers = [cls for cls in enabled_writers(settings) if cls.needs_pixels]
    by_id = {item.image_id: item for item in shard}
    stream = UnitStream(source, shard, weights, model.pipeline, settings, keep_image=bool(drawers))
    on_gpu = ctx.device.startswith("cuda") and isinstance(model, Model)
    loader = make_loader(stream, workers, pin_memory=on_gpu)
    if on_gpu and hasattr(model.module.data_preprocessor, "_non_blocking"):
        model.module.data_preprocessor._non_blocking = True  # copies from pinned memory overlap compute
    with named_write_errors(state.out), RecordWriter(state.records, ctx.rank) as writer, \
            make_progress(disable=ctx.rank > 0) as progress:
        image_task = progress.add_task("images", total=len(shard))
        tile_task = progress.add_task("tiles", total=sum(weights) - len(shard) * settings.full)

        def counted(units):
            for unit in units:
                yield unit
                progress.advance(tile_task, len(unit.windows) * (not unit.full))

        unreadable = {}
        for image_id, result, pixels in predict_units(model, counted(loader), list(run.category_ids), settings):
            if result is None:
                unreadable[image_id] = why_unreadable(by_id[image_id])
            else:
                for cls in drawers:
                    cls.on_image(run, by_id[image_id], pixels, result)
                writer.append(result)
            progress.advance(image_task)
    return unreadable


def check_onnx_settings(settings: InferSettings) -> None:
    """The PyTorch-only speed options refused for an ONNX model, by name."""
    for name in ("fuse_conv_bn", "fp16", "channels_last", "device_tiles"):
        if getattr(settings, name):
            raise ParameterError(f"{{{name}}} applies to PyTorch models (config + checkpoint), not to an ONNX "
                                 "model", name)
    if settings.method == "soft-nms":
        raise ParameterError("{method} soft-nms runs mmcv's kernel; with an ONNX model use nms, wbf or greedy-nmm",
                             "method")


def run_inference(config: Path, checkpoint: Path, source: Path | Source, out: Path, settings: InferSettings,
                  device: str = "cpu", images_dir: Path | None = None, trust: bool = False, workers: int = 0,
                  launcher: str = "none", overwrite: bool = False, frame_step: int = 1,
                  split: str = "val", threads: int = 0) -> InferStats:
    """Run (or resume) and write everything; unreadable images are skipped and listed in the stats.
    ``config`` an ONNX model (afm export; ``checkpoint`` the same file): run on ONNX Runtime with
    ``threads`` (0: one per core)."""
    check_settings(settings)
    onnx_model = is_onnx(config)
    if onnx_model:
        check_onnx_settings(settings)
    if settings.slices:  # before any image is read: at VisDrone's largest image size
        warn_many_tiles([REFERENCE_SIZE], settings.slice_size, settings.overlap)
    if workers < 0:
        raise ParameterError(f"{{workers}} must be >= 0, got {workers}", "workers")
    start = time.perf_counter()
    state = RunState(out)
    with distributed(launcher, device) as ctx, contextlib.ExitStack() as held:
        # One run at a time writes OUT (rank 0 holds it for all): a second is refused in one line.
        ctx.on_rank0(lambda: held.enter_context(output_lock(out, "afm infer", "out")))
        # once per process: the fingerprint and the model share it
        cfg = read_metadata(config) if onnx_model else load_config(config)
        # First: the run's classes are the model's (the writers that apply depend on them).
        model = OnnxModel(config, ctx.device, threads) if onnx_model else \
            load_model(cfg, checkpoint, ctx.device, trust, fuse_conv_bn=settings.fuse_conv_bn, fp16=settings.fp16,
                       channels_last=settings.channels_last)
        plan = ctx.on_rank0(lambda: make_plan(cfg, checkpoint, source, out, settings, device, images_dir,
                                              frame_step, overwrite, ctx.world, model.classes, split))
        if plan.status == "complete":
            return InferStats(**state.stored_stats(), seconds=time.perf_counter() - start, ranks=ctx.world,
                              rank=ctx.rank)
        classes = model.classes
        run = RunInfo(settings, plan.source, classes,
                      tuple(category_ids(classes, plan.source.categories, plan.source.path)), state.dir)
        if settings.device_tiles:
            model.device_tiles()  # a pipeline that cannot move is refused before anything is written
        ctx.on_rank0(lambda: state.begin(plan.fingerprint, plan.status))
        unreadable = ctx.merged(run_shard(model, plan.source, plan.shards[ctx.rank], plan.weights[ctx.rank], run,
                                          state, ctx, workers))
        ctx.barrier()  # every shard is done before rank 0 reads the records
        totals = ctx.on_rank0(lambda: assemble(state, plan.source.items, run, unreadable))
        stats = InferStats(**asdict(totals), processed=sum(map(len, plan.shards)) - len(totals.failed),
                           seconds=time.perf_counter() - start, ranks=ctx.world, rank=ctx.rank)
        if ctx.rank == 0 and not stats.failed:  # with failures the records stay: a rerun retries those images
            state.finish(plan.fingerprint, asdict(totals))
    return stats
