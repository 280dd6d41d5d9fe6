"""`afm infer` end to end: images -> tiles + full pass -> fusion -> result files.

Output folder (each file written at a temporary name, renamed into place at the end):
    sources/slices.json   raw tile detections, image coordinates (COCO results)
    sources/full.json     raw full-image detections (COCO results)
    predictions.json      the fused result (COCO results)
    visdrone/<name>.txt   the fused result in VisDrone's format, one file per image
    viz/<name>.png        with --viz: fused boxes drawn on the image, with a legend (.jpg above 0.5 MP)
    vid/<video>.txt       with --vid: VisDrone-VID result files of video sources
    .afm-infer/           run state: fingerprint, per-image records (afmcli.inference.state)

Images stream: each is written to a record log as it finishes (memory stays flat),
a rerun of the same command skips the images done, and the final files are put
together from the records at the end (afmcli.inference.assemble). Under
``--launcher`` each rank runs its shard and rank 0 puts the files together.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from afmcli.errors import AfmError
from afmcli.inference.assemble import Totals, assemble, output_names
from afmcli.inference.distributed import DistContext, balanced_shards, distributed
from afmcli.inference.fusion import check_fusion_options, fuse_predictions
from afmcli.inference.loader import PendingImage, UnitStream, make_loader
from afmcli.inference.predictor import Predictor, load_detector
from afmcli.inference.records import ImageResult, RecordWriter, scan_records
from afmcli.inference.sources import ImageItem, category_ids, resolve_source
from afmcli.inference.state import RunState, fingerprint
from afmcli.inference.tiles import plan_windows


@dataclass
class InferSettings:
    """Everything that changes the results (part of the run's fingerprint)."""

    slice_size: int = 640
    overlap: float = 0.25
    batch_size: int = 8
    slices: bool = True
    full: bool = True
    score_thr: float = 0.01
    method: str = "nms"
    iou: float = 0.6
    match: str = "iou"
    max_per_img: int = 500
    viz: bool = False
    viz_score: float = 0.3
    vid: bool = False


@dataclass
class InferStats(Totals):
    processed: int = 0  # images run by this start (the others were done before)
    seconds: float = 0.0
    ranks: int = 1
    rank: int = 0  # of this process


@dataclass
class Plan:
    """What rank 0 decided and every rank follows."""

    items: list[ImageItem]
    categories: list[dict] | None
    fingerprint: dict
    status: str  # new, resume or complete
    shards: list[list[ImageItem]] = field(default_factory=list)
    weights: list[list[int]] = field(default_factory=list)  # tiles + full pass per image, per shard


def check_settings(s: InferSettings) -> None:
    if not (s.slices or s.full):
        raise AfmError("--no-slices and --no-full-image together leave nothing to run")
    if s.slice_size < 1 or s.batch_size < 1:
        raise AfmError(f"--slice and --batch-size must be >= 1, got {s.slice_size} and {s.batch_size}")
    check_fusion_options(s.method, s.iou, s.match, False, None, 2)


def check_images_present(items: list[ImageItem], source: Path) -> None:
    """A wrong images folder is one clear line before anything runs."""
    if not any(item.path.is_file() for item in items):
        raise AfmError(f"{source}: none of its {len(items)} image(s) exists (first: {items[0].path}); "
                       "check the path or --images")


def image_weight(item: ImageItem, settings: InferSettings) -> int:
    """Forward passes of one image (its tiles, plus the full pass), from its size
    without decoding; an unreadable header counts as one."""
    from afmcli.data.images import image_size

    size = item.size
    if size is None:
        try:
            size = image_size(item.path, complete=False)
        except AfmError:
            return 1
    return len(plan_windows(size[1], size[0], settings.slice_size, settings.overlap, settings.slices,
                            settings.full)) + int(settings.full)


def make_plan(config: Path, checkpoint: Path, source: Path, out: Path, settings: InferSettings, device: str,
              images_dir: Path | None, frame_step: int, overwrite: bool, ranks: int) -> Plan:
    items, categories = resolve_source(source, images_dir, frame_step)
    has_frames = any(item.frame is not None for item in items)
    if frame_step != 1 and not has_frames:
        raise AfmError("--frame-step applies to video sources")
    if settings.vid and not has_frames:
        raise AfmError(f"--vid writes VisDrone-VID files for videos; {source} has none")
    check_images_present(items, source)
    state = RunState(out)
    state.check_targets(output_names(settings))
    fp = fingerprint(config, checkpoint, settings, items, device)
    status = state.status(fp, overwrite)
    plan = Plan(items, categories, fp, status)
    if status == "complete":
        return plan
    done = set(scan_records(state.records)) if status == "resume" else set()
    todo = [item for item in items if item.image_id not in done]
    weights = [image_weight(item, settings) for item in todo]  # header reads: fast
    for part in balanced_shards(weights, ranks):
        plan.shards.append(todo[part])
        plan.weights.append(weights[part])
    return plan


def finish_image(pending: PendingImage, image_id: int, to_category: list[int], settings: InferSettings) -> ImageResult:
    """Relabel to category ids and fuse the tiles with the full pass."""
    slices, full, n_tiles = pending.detections()
    slices, full = slices.relabel(to_category), full.relabel(to_category)
    fused = fuse_predictions([{image_id: slices}, {image_id: full}], settings.method, settings.iou, settings.match,
                             max_per_img=settings.max_per_img, image_sizes={image_id: pending.size})[image_id]
    return ImageResult(image_id, pending.size, n_tiles, slices, full, fused)


def write_viz(stem_path: Path, image) -> None:
    """write_image (.png, or .jpg when large) under a temporary name, then renamed: a kill
    never leaves a half-written picture for a resumed run."""
    from afmcli.viz.draw import write_image

    tmp = write_image(stem_path.with_name(f".{stem_path.name}.tmp"), image)
    os.replace(tmp, stem_path.with_name(stem_path.name + tmp.suffix))


def run_shard(predictor: Predictor, shard: list[ImageItem], weights: list[int], settings: InferSettings,
              state: RunState, ctx: DistContext, workers: int, to_category: list[int], names: dict) -> None:
    """Run this rank's images, appending each finished image to a record log."""
    from afmcli.progress import make_progress
    from afmcli.viz.draw import draw_detections

    by_id = {item.image_id: item for item in shard}
    stream = UnitStream(shard, weights, predictor.pipeline, settings, keep_image=settings.viz)
    on_gpu = ctx.device.startswith("cuda")
    loader = make_loader(stream, workers, pin_memory=on_gpu)
    if on_gpu and hasattr(predictor.model.data_preprocessor, "_non_blocking"):
        predictor.model.data_preprocessor._non_blocking = True  # copies from pinned memory overlap compute
    if settings.viz:
        state.viz.mkdir(parents=True, exist_ok=True)
    pending: dict[int, PendingImage] = {}
    with RecordWriter(state.records, ctx.rank) as writer, make_progress(disable=ctx.rank > 0) as progress:
        image_task = progress.add_task("images", total=len(shard))
        tile_task = progress.add_task("tiles", total=sum(weights) - len(shard) * settings.full)
        for unit in loader:
            if unit.failed:
                progress.advance(image_task)
                continue
            image = pending.setdefault(unit.image_id, PendingImage(unit.count, unit.size))
            complete = image.add(unit, predictor.forward(unit.data))
            progress.advance(tile_task, len(unit.windows) * (not unit.full))
            if not complete:
                continue
            del pending[unit.image_id]
            result = finish_image(image, unit.image_id, to_category, settings)
            if settings.viz:
                write_viz(state.viz / by_id[unit.image_id].name,
                          draw_detections(image.image, result.fused, names, settings.viz_score))
            writer.append(result)
            progress.advance(image_task)


def run_inference(config: Path, checkpoint: Path, source: Path, out: Path, settings: InferSettings,
                  device: str = "cpu", images_dir: Path | None = None, trust: bool = False, workers: int = 0,
                  launcher: str = "none", overwrite: bool = False, frame_step: int = 1) -> InferStats:
    """Run (or resume) and write everything; unreadable images are skipped and listed in the stats."""
    check_settings(settings)
    if workers < 0:
        raise AfmError(f"--workers must be >= 0, got {workers}")
    start = time.perf_counter()
    state = RunState(out)
    with distributed(launcher, device) as ctx:
        plan = ctx.on_rank0(lambda: make_plan(config, checkpoint, source, out, settings, device, images_dir,
                                              frame_step, overwrite, ctx.world))
        if plan.status == "complete":
            return InferStats(**state.stored_stats(), seconds=time.perf_counter() - start, ranks=ctx.world,
                              rank=ctx.rank)
        model, cfg, classes = load_detector(config, checkpoint, ctx.device, trust)
        to_category = category_ids(classes, plan.categories, source)
        ctx.on_rank0(lambda: state.begin(plan.fingerprint, plan.status))
        run_shard(Predictor(model, cfg, settings.score_thr), plan.shards[ctx.rank],
                              plan.weights[ctx.rank], settings, state, ctx, workers, to_category,
                              dict(zip(to_category, classes)))
        ctx.barrier()  # every shard is done before rank 0 reads the records
        totals = ctx.on_rank0(lambda: assemble(state, plan.items, settings))
    stats = InferStats(**asdict(totals), processed=sum(map(len, plan.shards)) - len(totals.failed),
                       seconds=time.perf_counter() - start, ranks=ctx.world, rank=ctx.rank)
    if ctx.rank == 0 and not stats.failed:  # with failures the records stay: a rerun retries those images
        state.finish(plan.fingerprint, asdict(totals))
    return stats
