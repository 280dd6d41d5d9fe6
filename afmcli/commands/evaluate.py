"""`afm evaluate`: the official VisDrone numbers and the COCO view."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

EXAMPLES = """Examples:

  afm evaluate --gt Datasets/labels/annotations/val_labels.json --pred results/val/visdrone

  afm evaluate --gt VisDrone2019-DET-val/annotations --images VisDrone2019-DET-val/images --pred results/val/predictions.json --view visdrone --json metrics.json
"""

VIEWS = ("visdrone", "coco", "both")
CLASS_COLUMNS = ("AP", "AP50", "AP75", "AR100", "AR500", "images", "gt")


def _json_number(v: float) -> float | None:
    return None if v is None or math.isnan(v) else v


def evaluate(
    gt: Path = typer.Option(..., "--gt", help="Ground truth: a VisDrone annotations folder "
                          "(with --images) or the COCO json of `afm convert-visdrone`."),
    pred: Path = typer.Option(..., "--pred", help="Detections: a VisDrone results folder "
                            "(<image>.txt each, e.g. results/val/visdrone) or a COCO results json."),
    images: Optional[Path] = typer.Option(None, "--images", help="Images folder, for the image "
                                           "sizes of a txt --gt."),
    view: str = typer.Option("both", "--view", help="Which numbers: visdrone (the official "
                          "toolkit's), coco, or both."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers "
                                              "(percent, unrounded) to this json file."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also write PR curves at IoU 0.5 "
                                           "(PNG) into this folder (replaced only when afm wrote it)."),
    classwise: bool = typer.Option(False, "--classwise", help="Also print per-class results."),
) -> None:
    """Evaluate detections: the VisDrone toolkit's numbers and the COCO view.

    The VisDrone view equals the official MATLAB toolkit 1.0.4 on the same files.
    """
    from rich.console import Console

    from afmcli.errors import AfmError, warn
    from afmcli.evaluation.loaders import load_images
    from afmcli.evaluation.visdrone import evaluate_visdrone
    from afmcli.io import check_output_file, check_replaceable, write_json
    from afmcli.progress import console as err_console

    if view not in VIEWS:
        raise AfmError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
    if json_out is not None:
        check_output_file(json_out, "--json")
    if plots is not None:
        check_replaceable(plots, "--plots")
    rows, warnings = load_images(gt, pred, images)
    for message in warnings:
        warn(message)
    report: dict = {}
    per_class: dict = {}
    visdrone = None
    if view in ("visdrone", "both") or plots is not None:
        visdrone = evaluate_visdrone(rows)
    if view in ("visdrone", "both"):
        report["visdrone"] = visdrone.stats
        per_class["visdrone"] = visdrone.classwise()
    if view in ("coco", "both"):
        from afmcli.evaluation.coco_view import evaluate_coco

        report["coco"], per_class["coco"] = evaluate_coco(rows)

    console = Console()
    for table in _tables(report, per_class if classwise else {}, len(rows)):
        console.print(table)
    if json_out is not None:
        out = {name: {k: _json_number(v) for k, v in stats.items()} for name, stats in report.items()}
        out["classwise"] = {name: {cls: None if row is None else {k: _json_number(v) for k, v in row.items()}
                                   for cls, row in table.items()} for name, table in per_class.items()}
        write_json(json_out, out, indent=2)
    if plots is not None:
        from afmcli.viz.pr_curves import plot_pr_curves

        written = plot_pr_curves(visdrone, plots)
        err_console.print(f"PR curves: {len(written)} PNG files in {plots}", markup=False, highlight=False)


def _fmt(v: float | None, visdrone: bool) -> str:
    from afmcli.evaluation.visdrone import round_percent

    if v is None or math.isnan(v):
        return "-"
    # The toolkit prints roundn(v, -2): round half away from zero on 100 * v.
    return f"{round_percent(v):.2f}" if visdrone else f"{v:.2f}"


def _tables(report: dict, per_class: dict, num_images: int) -> list:
    """One summary table (a column per view), then per-class tables."""
    from rich.table import Table

    heads = {"visdrone": "VisDrone toolkit (official)", "coco": "COCO view"}
    summary = Table(title=f"Detection results, {num_images} images (%)")
    summary.add_column("metric")
    keys: list[str] = []
    for name, stats in report.items():
        summary.add_column(heads[name], justify="right")
        keys += [k for k in stats if k not in keys]
    for key in sorted(keys, key=lambda k: (k.startswith("AR"), keys.index(k))):
        summary.add_row(key, *(_fmt(stats.get(key), name == "visdrone") for name, stats in report.items()))
    tables = [summary]
    for name, rows in per_class.items():
        # The json has every per-class number; the table keeps what fits 80 columns.
        columns = [k for k in next((r for r in rows.values() if r is not None), {}) if k in CLASS_COLUMNS]
        table = Table(title=f"{heads[name]}, per class (%)")
        table.add_column("class", no_wrap=True)
        for key in columns:
            table.add_column(key, justify="right")
        for cls, row in rows.items():
            cells = ["-"] * len(columns) if row is None else [
                str(row[k]) if k in ("images", "gt") else _fmt(row[k], name == "visdrone") for k in columns]
            table.add_row(cls, *cells)
        tables.append(table)
    return tables
