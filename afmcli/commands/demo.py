"""`afm demo`: the whole pipeline on a generated mini VisDrone set, on CPU."""

from __future__ import annotations

from pathlib import Path

import typer

EXAMPLES = """Examples:

  afm demo --out demo_out
"""


def demo(ctx: typer.Context,
         out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for every output (replaced only when "
                                  "afm wrote it)."),
         verbose: bool = typer.Option(False, "--verbose", help="Also print mmengine's training log on the "
                                      "terminal (it is always in the work dir's log file).")) -> None:
    """synth -> convert-visdrone -> make-masks -> train -> infer (sliced) -> fuse -> evaluate."""
    from afmcli.engine.demo import run_demo

    run_demo(ctx.find_root().command, out, verbose=verbose)  # the `afm` command itself runs each step
