"""`afm export`: a trained detector as an ONNX model that `afm infer` runs on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm export configs/AFM/tood_tiny_synth.py work_dirs/tood_tiny/epoch_12.pth --out tood_tiny.onnx

  afm export configs/AFM/AFMNet-tood_r50_k13.py work_dirs/run1/epoch_12.pth --out afmnet.onnx --int8 --calib Datasets/images/train

  afm infer tood_tiny.onnx Datasets/images/val --out results/val
"""


def export(
    config: Path = typer.Argument(..., help="The mmdet config the model was trained with."),
    checkpoint: Path = typer.Argument(..., help="The trained weights (.pth)."),
    out: Path = typer.Option(..., "--out", help="The ONNX model to write (.onnx)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Fully unpickle the "
                                          "checkpoint (runs code from it: only for files you trust)."),
    int8: bool = typer.Option(False, "--int8", help="Quantize to INT8 (ONNX Runtime's static quantization; "
                              "needs --calib)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="--int8: a folder of images like the ones to "
                                         "detect on, to calibrate the activations' ranges."),
    calib_images: int = typer.Option(8, "--calib-images", help="--int8: calibrate on this many of them "
                                     "(their tiles and whole)."),
    calib_slice: int = typer.Option(640, "--calib-slice", help="--int8: the tile size of the calibration "
                                    "(the --slice you will infer with)."),
) -> None:
    """Export a TOOD or AFMNet detector to ONNX: a dynamic batch of any size, preprocessing in
    the graph, the class names and test settings in its metadata (standard operators only)."""
    from rich.console import Console
    from rich.table import Table

    from afmcli.deploy.export import export_onnx
    from afmcli.errors import ParameterError

    if int8 != (calib is not None):
        raise ParameterError("{int8} and {calib} go together (INT8 needs images to calibrate on)", "int8", "calib")
    meta = export_onnx(config, checkpoint, out, trust=trust_checkpoint, calib=calib, calib_images=calib_images,
                       calib_slice=calib_slice)
    table = Table(title="afm export", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in (("model", meta["arch"]), ("classes", len(meta["classes"])),
                        ("test scale", meta["scale"]), ("int8", meta["int8"]), ("levels (strides)", meta["strides"]),
                        ("size", f"{out.stat().st_size / 1e6:.1f} MB"), ("output", out)):
        table.add_row(name, str(value))
    Console().print(table)
