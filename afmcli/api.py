"""afmcli as a library: open a dataset, train, load a detector, predict an image or a whole
source, evaluate, track.

    import afmcli

    dataset = afmcli.open_dataset("my_flights/data.yaml")   # .classes, .splits, .read("val")
    afmcli.train("configs/AFM/afmnet_tiny_synth.py", data="my_flights/data.yaml", work_dir="work")

    model = afmcli.load_model("configs/AFM/afmnet_tiny_synth.py", "work_dir/epoch_12.pth")
    dets = afmcli.predict(model, "image.jpg", slice=640, overlap=0.25, fusion="nms")
    for item, dets in afmcli.predict_source(model, "Datasets/labels/annotations/val_labels.json"):
        ...
    metrics = afmcli.evaluate("Datasets/labels/annotations/val_labels.json", "predictions.json")
    metrics = afmcli.evaluate("my_flights/data.yaml", "predictions.json", split="val")
    for sequence, item, tracked in afmcli.track(model, "drone.mp4", tracker="bytetrack"):
        tracked.ids, tracked.boxes  # per frame: the tracked detections and their track ids

:func:`predict` and :func:`predict_source` run the code `afm infer` runs
(afmcli.inference.predict: the same tiles, batches and fusion), so their detections
are `afm infer`'s, exactly. Errors are :class:`afmcli.errors.AfmError` naming the
parameter at fault; warnings go through :mod:`warnings` (:class:`afmcli.errors.AfmWarning`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from afmcli.data.datasets import convert_dataset, open_dataset
from afmcli.detections import Detections, detections_to_results
from afmcli.engine.train import train
from afmcli.errors import AfmError, ParameterError, warn
from afmcli.inference.loader import UnitStream, image_weight, make_loader
from afmcli.inference.predict import PredictSettings, check_settings, predict_units
from afmcli.inference.backends.onnx_runtime import OnnxModel, is_onnx
from afmcli.inference.backends.mmdet_backend import Model
from afmcli.inference.backends.mmdet_backend import load_model as load_torch_model
from afmcli.inference.sources import ArrayImage, ImageItem, Source, category_ids, open_source, why_unreadable

__all__ = ["Detections", "ImageItem", "Model", "OnnxModel", "convert_dataset", "evaluate", "export", "load_model",
           "open_dataset", "predict", "predict_source", "track", "train"]

# The settings' names that this API spells otherwise (after the issue's, SAHI-like, keywords).
NAMES = {"slice_size": "slice", "method": "fusion"}


@contextlib.contextmanager
def _named_as_here() -> Iterator[None]:
    """Errors about a setting name this API's keyword for it."""
    try:
        yield
    except ParameterError as exc:
        raise ParameterError(exc.spelled(NAMES)) from None


def load_model(config: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str = "cpu",
               trust: bool = False, fuse_conv_bn: bool = False, fp16: bool = False, channels_last: bool = False,
               threads: int = 0) -> Model | OnnxModel:
    """A detector for :func:`predict` and :func:`predict_source`: an mmdet ``config`` and its
    ``checkpoint`` (afmcli.inference.backends.mmdet_backend.load_model: the other options are its), or an
    ONNX model from :func:`export` alone, run on ONNX Runtime (``device`` cpu, cuda[:N] or
    tensorrt[:N], ``threads`` 0: one per core) without importing mmcv, mmdet or mmengine."""
    if is_onnx(config):
        for name in ("fuse_conv_bn", "fp16", "channels_last"):
            if locals()[name]:
                raise ParameterError(f"{{{name}}} applies to PyTorch models, not to an ONNX model", name)
        return OnnxModel(config, device, threads)
    if checkpoint is None:
        raise ParameterError("{checkpoint} is needed with a config (only an ONNX model comes alone)", "checkpoint")
    return load_torch_model(config, checkpoint, device, trust, fuse_conv_bn, fp16, channels_last)


def export(config: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
           trust: bool = False) -> dict:
    """`afm export`: write the detector as an ONNX model ``out`` for :func:`load_model`; returns
    its metadata (class names, test geometry, decoding settings)."""
    from afmcli.deploy.export import export_onnx

    return export_onnx(config, checkpoint, out, trust=trust)


def _settings(slice: int, overlap: float, fusion: str, iou: float, match: str, batch_size: int, slices: bool,
              full: bool, score_thr: float, max_per_img: int, device_tiles: bool) -> PredictSettings:
    settings = PredictSettings(slice_size=slice, overlap=overlap, batch_size=batch_size, slices=slices, full=full,
                               score_thr=score_thr, method=fusion, iou=iou, match=match, max_per_img=max_per_img,
                               device_tiles=device_tiles)
    with _named_as_here():
        check_settings(settings)
    return settings


def _predictions(model: Model, source: Source, settings: PredictSettings,
                 workers: int) -> Iterator[tuple[ImageItem, Detections | None]]:
    """Each image of ``source`` with its fused detections (None where it cannot be read),
    labels as category ids, named."""
    if settings.device_tiles:
        model.device_tiles()  # refuses a pipeline that cannot move, before any image is read
    to_category = category_ids(model.classes, source.categories, source.path)
    names = dict(zip(to_category, model.classes))
    weights = [image_weight(source, item, settings) for item in source.items] if workers > 0 else \
        [1] * len(source.items)
    stream = UnitStream(source, source.items, weights, model.pipeline, settings)
    by_id = {item.image_id: item for item in source.items}
    loader = make_loader(stream, workers, pin_memory=model.device.startswith("cuda"))
    for image_id, result, _ in predict_units(model, loader, to_category, settings):
        yield by_id[image_id], None if result is None else Detections(
            result.fused.boxes, result.fused.scores, result.fused.labels, names)


CHANNELS = ("bgr", "rgb")


def _check_model(model) -> None:
    if not isinstance(model, (Model, OnnxModel)):
        raise ParameterError(f"{{model}} must be a model from afmcli.load_model(config, checkpoint), got "
                             f"{type(model).__name__} {str(model)[:60]!r}", "model")


def _image_source(image, channels: str) -> Source:
    """One image of what a notebook holds: a path, an array (``channels`` bgr as OpenCV reads,
    or rgb), a PIL image (converted to RGB, then BGR)."""
    if isinstance(image, (str, os.PathLike)):
        source = open_source(image)
        if len(source.items) != 1 or source.is_video:
            raise ParameterError(f"{image}: holds {len(source.items)} images or frames; {{image}} is one image "
                                 "(predict_source runs on many)", "image")
        return source
    if type(image).__module__.startswith("PIL.") and hasattr(image, "convert"):
        return ArrayImage(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
    if isinstance(image, np.ndarray):
        return ArrayImage(np.ascontiguousarray(image[:, :, ::-1]) if channels == "rgb" and image.ndim == 3
                          else image)
    raise ParameterError(f"{{image}} must be an image file's path, a uint8 array (H, W, 3) or a PIL image, or a "
                         f"list of them; got {type(image).__name__}", "image")


def predict(model: Model, image, *, channels: str = "bgr", slice: int = 640, overlap: float = 0.25,
            fusion: str = "nms", iou: float = 0.6, match: str = "iou", batch_size: int = 8, slices: bool = True,
            full: bool = True, score_thr: float = 0.01, max_per_img: int = 500,
            device_tiles: bool = False) -> Detections | list[Detections]:
    """Sliced inference plus a full-image pass, fused, on one image; `afm infer`'s defaults.

    ``image``: a file's path, a uint8 array (H, W, 3) in ``channels`` order (bgr, as OpenCV
    reads; rgb, as PIL and matplotlib hold it), a PIL image (converted), or a list of these
    (then a list of results, in order). Returns the fused detections, best first: ``boxes``
    x1 y1 x2 y2 in the image's pixels, ``scores``, ``labels`` (category ids: 1..K in the order
    of ``model.classes``, the checkpoint's class names) and ``names`` (class names).
    ``slice``: tile size in pixels; ``overlap``: ratio of ``slice`` in [0, 1); ``fusion``: nms,
    soft-nms, wbf or greedy-nmm at ``iou`` (``match``: iou or ios); ``slices=False`` or
    ``full=False`` skips the tiles or the full-image pass; ``device_tiles``: the tiles are cut
    and resized on the model's device (`--device-tiles`).
    """
    _check_model(model)
    if channels not in CHANNELS:
        raise ParameterError(f"{{channels}} must be one of {', '.join(CHANNELS)}, got {channels!r}", "channels")
    settings = _settings(slice, overlap, fusion, iou, match, batch_size, slices, full, score_thr, max_per_img,
                         device_tiles)
    if isinstance(image, (list, tuple)):
        return [_predict_one(model, _image_source(one, channels), settings) for one in image]
    return _predict_one(model, _image_source(image, channels), settings)


def _predict_one(model: Model, source: Source, settings: PredictSettings) -> Detections:
    ((item, dets),) = _predictions(model, source, settings, workers=0)
    if dets is None:
        raise AfmError(f"{item}: not a readable image (missing, truncated or corrupt)")
    return dets


def predict_source(model: Model, source: str | os.PathLike, *, images_dir: str | os.PathLike | None = None,
                   frame_step: int = 1, workers: int = 0, slice: int = 640, overlap: float = 0.25,
                   fusion: str = "nms", iou: float = 0.6, match: str = "iou", batch_size: int = 8,
                   slices: bool = True, full: bool = True, score_thr: float = 0.01,
                   max_per_img: int = 500, device_tiles: bool = False,
                   split: str = "val") -> Iterator[tuple[ImageItem, Detections]]:
    """Yield ``(item, detections)`` image by image over what `afm infer` runs on: an image,
    a folder of images, our COCO json (its images under ``images_dir``, by default the
    split's Datasets/images/<split>/; labels are its category ids, by class name), a video
    or a folder of videos (every ``frame_step``-th frame), or a dataset yaml (its ``split``,
    with the ids :func:`evaluate` gives that split). ``item.image_id`` is the id
    `afm infer` gives the image (the json's own ids for a json); ``workers`` decode and tile
    ahead in that many processes. An image that cannot be read is skipped with a warning.
    Settings as :func:`predict`.
    """
    _check_model(model)
    settings = _settings(slice, overlap, fusion, iou, match, batch_size, slices, full, score_thr, max_per_img,
                         device_tiles)
    if workers < 0:
        raise ParameterError(f"{{workers}} must be >= 0, got {workers}", "workers")
    opened = open_source(source, None if images_dir is None else Path(images_dir), frame_step, split)
    for item, dets in _predictions(model, opened, settings, workers):
        if dets is None:
            warn(f"{why_unreadable(item)}; skipped")
            continue
        yield item, dets


def track(model: Model, source: str | os.PathLike, *, tracker: str = "bytetrack", frame_step: int = 1,
          workers: int = 0, slice: int = 640, overlap: float = 0.25, fusion: str = "nms", iou: float = 0.6,
          match: str = "iou", batch_size: int = 8, slices: bool = True, full: bool = True, score_thr: float = 0.01,
          max_per_img: int = 500, device_tiles: bool = False, **tracker_settings) -> Iterator[tuple]:
    """Yield ``(sequence, item, tracked)`` frame by frame, in frame order per sequence, over a
    video, a folder of videos, an image sequence folder or a folder of them (as `afm track`).

    ``tracked`` is a :class:`afmcli.tracking.base.TrackedDetections`: the frame's detections
    that are on a track (``boxes`` x1 y1 x2 y2, ``scores``, ``labels`` as category ids,
    ``names``) and ``ids``, each one's track id (1, 2, ... per sequence). Detection as
    :func:`predict_source` (same settings); ``tracker``: bytetrack or ocsort, with its settings
    as keywords (``match_iou=0.2``, ``keep_lost=60``: README "Tracking"). A frame that cannot
    be read is skipped with a warning (the tracker sees it as a frame without detections).
    """
    from afmcli.tracking.build import build_tracker
    from afmcli.tracking.sources import open_track_source, sequence_of

    settings = _settings(slice, overlap, fusion, iou, match, batch_size, slices, full, score_thr, max_per_img,
                         device_tiles)
    if workers < 0:
        raise ParameterError(f"{{workers}} must be >= 0, got {workers}", "workers")
    follower = build_tracker({"type": tracker, **tracker_settings})
    opened = open_track_source(source, frame_step)
    current = None
    for item, dets in _predictions(model, opened, settings, workers):
        sequence = sequence_of(item)
        if sequence != current:
            follower.reset()
            current = sequence
        if dets is None:
            warn(f"{item}: not a readable image (missing, truncated or corrupt); skipped")
            follower.update(Detections.empty())
            continue
        yield sequence, item, follower.update(dets)


def evaluate(gt: str | os.PathLike, predictions, *, view: str = "both",
             images_dir: str | os.PathLike | None = None, size_ranges: str = "coco", split: str = "val") -> dict:
    """Both views' numbers, as `afm evaluate --json` writes them: ``{"visdrone": {...},
    "coco": {...}, "classwise": {view: {class: {...}}}}`` (percent; NaN as None).

    ``gt``: a COCO json of any category table, a VisDrone annotations folder (with
    ``images_dir`` for the image sizes), or a dataset (a data.yaml, a dataset yaml or folder:
    :func:`open_dataset`), of which ``split`` is scored. ``predictions``: a VisDrone results folder, a COCO
    results json or list, or ``{image_id: Detections}`` (labels as category ids, as
    :func:`predict_source` gives them; their names are checked against the ground truth's
    table, as `afm infer`'s categories.json is). ``view``: visdrone (the official toolkit's,
    VisDrone's table only), coco or both; ``size_ranges``: coco or aitod.
    """
    from afmcli.evaluation.categories import CategoryTable
    from afmcli.evaluation.loaders import image_rows, load_ground_truth, load_predictions
    from afmcli.evaluation.metrics import check_view, compute_metrics

    check_view(view)
    truth = load_ground_truth(Path(gt), None if images_dir is None else Path(images_dir), split)
    table = None
    if isinstance(predictions, Mapping):
        names = {cid: name for dets in predictions.values() for cid, name in (dets.categories or {}).items()}
        table = CategoryTable(tuple(names), tuple(names.values())) if names else None
        predictions = [r for image_id, dets in predictions.items() for r in detections_to_results(image_id, dets)]
    elif isinstance(predictions, Sequence) and not isinstance(predictions, (str, bytes)):
        predictions = list(predictions)
    rows = image_rows(truth, load_predictions(predictions, truth, table))
    return compute_metrics(rows, view, table=truth.table, size_ranges=size_ranges).to_json()
