"""--device-tiles / predict(device_tiles=True): tiles cut, resized and packed on the model's
device from one copy of the image give the test pipeline's input (metainfo exactly, pixels
within one grey level) and so its detections; a pipeline that cannot move is refused before
anything is written (its fingerprint test: test_infer_fp16.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import afmcli
from afmcli.cli import main
from afmcli.errors import ParameterError
from afmcli.inference.device_tiles import DeviceTiles
from afmcli.inference.backends.mmdet_backend import TilePipeline
from test_infer_e2e import CONFIG, save_tiny_checkpoint

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "visdrone-real" / "VisDrone2019-DET-train" / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("device_tiles") / "tiny.pth")


@pytest.fixture(scope="module")
def image(synth_split):
    return cv2.imread(str(sorted(synth_split.images.glob("*.jpg"))[0]))


def real_image() -> np.ndarray:
    files = sorted(REAL.glob("*.jpg"))
    if not files:
        pytest.skip(f"no real images under {REAL}")
    return cv2.imread(str(files[0]))


@pytest.mark.parametrize("scale,keep_ratio", [((512, 512), True), ((800, 600), True), ((640, 480), False)])
def test_device_batch_is_the_pipelines_input(scale, keep_ratio):
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIG))
    cfg.test_dataloader.dataset.pipeline[1] = dict(type="Resize", scale=scale, keep_ratio=keep_ratio)
    pipeline = TilePipeline(cfg)
    image = real_image()  # 960 x 540: up- and downscaled crops, odd sizes
    h, w = image.shape[:2]
    windows = np.array([[0, 0, 512, 512], [w - 512, h - 512, w, h], [100, 37, 401, 250], [0, 0, w, h]])
    want = pipeline([image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows])
    got = DeviceTiles(pipeline.steps).batch(torch.from_numpy(image), windows)
    for a, b in zip(want["data_samples"], got["data_samples"]):
        assert a.metainfo == b.metainfo
    for a, b in zip(want["inputs"], got["inputs"]):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
        diff = (a.int() - b.int()).abs()
        # cv2 resizes uint8 in fixed point: about one pixel in eight is one grey level apart
        assert diff.max() <= 1 and diff.float().mean() < 0.25, (diff.max(), diff.float().mean())



@pytest.mark.parametrize("scale", [(512, 512), (800, 600)])
def test_tiles_of_one_size_come_as_one_tensor_equal_to_the_list(checkpoint, scale):
    """SAHI's tiles all have one size: they come stacked, resized at once, and the data
    preprocessor's batch (normalised, padded) and metainfo are the list form's exactly."""
    model = afmcli.load_model(CONFIG, checkpoint)
    model.pipeline.steps[1] = dict(type="Resize", scale=scale, keep_ratio=True)
    tiles = DeviceTiles(model.pipeline.steps)
    image = torch.from_numpy(real_image())
    h, w = image.shape[:2]
    windows = np.array([[0, 0, 512, 512], [w - 512, h - 512, w, h], [300, 20, 812, 532]])  # 960 x 540
    stacked = tiles.batch(image, windows)
    assert torch.is_tensor(stacked["inputs"]) and stacked["inputs"].shape[0] == 3
    listed = dict(stacked, inputs=[tiles.resized(image[y1:y2, x1:x2].permute(2, 0, 1)[None])[0]
                                   for x1, y1, x2, y2 in windows])
    a, b = (model.module.data_preprocessor(d, False) for d in (stacked, listed))
    assert torch.equal(a["inputs"], b["inputs"])
    assert [s.metainfo for s in a["data_samples"]] == [s.metainfo for s in b["data_samples"]]
    mixed = tiles.batch(image, np.array([[0, 0, 512, 512], [0, 0, 300, 200]]))["inputs"]
    assert isinstance(mixed, list) and [t.shape[1:] for t in mixed] == [
        tuple(reversed(tiles.size(512, 512))), tuple(reversed(tiles.size(300, 200)))]

def test_device_tiles_give_the_pipelines_detections(checkpoint, image):
    model = afmcli.load_model(CONFIG, checkpoint)
    uploads = []
    forward_windows = model.forward_windows

    def recording(source, windows, score_thr=0.0):
        out = forward_windows(source, windows, score_thr)
        uploads.append(id(model._uploaded[1]))
        return out

    model.forward_windows = recording
    kwargs = dict(slice=256, overlap=0.2, batch_size=2)
    want = afmcli.predict(model, image, **kwargs)
    got = afmcli.predict(model, image, device_tiles=True, **kwargs)
    assert len(uploads) >= 4 and len(set(uploads)) == 1  # tile batches and full pass: one copy
    assert len(want.scores) > 20 and abs(len(got.scores) - len(want.scores)) <= 0.02 * len(want.scores)
    for box, score, label in zip(want.boxes[:20], want.scores[:20], want.labels[:20]):
        shift = np.abs(got.boxes - box).max(axis=1) + 1e3 * (got.labels != label)
        assert shift.min() < 1.0 and abs(got.scores[shift.argmin()] - score) < 0.01, (box, score)


def test_a_pipeline_step_that_cannot_move_is_refused_before_anything_is_written(checkpoint, image, tmp_path,
                                                                               capsys):
    config = tmp_path / "padded.py"
    config.write_text(f"_base_ = '{CONFIG}'\n"
                      "test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'), "
                      "dict(type='Resize', scale=(512, 512), keep_ratio=True), "
                      "dict(type='Pad', size_divisor=64), dict(type='PackDetInputs')]))\n")
    model = afmcli.load_model(config, checkpoint)
    with pytest.raises(ParameterError, match=r"device_tiles.*Pad step .*runs on the CPU only"):
        afmcli.predict(model, image, device_tiles=True)
    path = tmp_path / "image.jpg"
    cv2.imwrite(str(path), image)
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", str(config), str(checkpoint), str(path), "--out", str(tmp_path / "out"), "--device-tiles"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--device-tiles" in err and "Pad step" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))

