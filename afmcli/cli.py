"""The `afm` command. Thin: each subcommand lives in afmcli/commands/<name>.py.

Any error prints as one line on stderr with exit code 2; `afm --debug ...` shows
the traceback instead.
"""

from __future__ import annotations

import sys

import typer

from afmcli.commands import (convert, demo, env, evaluate, fuse, infer, masks,
                             synth, train)

app = typer.Typer(
    name="afm",
    help="AFMNet small-object detection for aerial images (mmdetection 3.3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors.")) -> None:
    _state["debug"] = debug


app.command("convert-visdrone")(convert.convert_visdrone)
app.command("make-masks")(masks.make_masks)
app.command("synth")(synth.synth)
app.command("train", context_settings={"allow_extra_args": False})(train.train)
app.command("infer")(infer.infer)
app.command("fuse")(fuse.fuse)
app.command("evaluate")(evaluate.evaluate)
app.command("demo")(demo.demo)
app.command("env")(env.env)


# Options that take several values after one flag, as in mmdet's tools (nargs='+').
MULTI_VALUE_OPTIONS = ("--cfg-options", "--weights")


def _mmdet_style_options(argv: list[str]) -> list[str]:
    """Accept mmdet's tools/train.py spellings: a bare `--resume` means the latest
    checkpoint, and `--cfg-options a=1 b=2` gives several values after one flag."""
    out: list[str] = []
    multi = None
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            multi = arg if arg in MULTI_VALUE_OPTIONS else None
            out.append(arg)
            if arg == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
                out.append("auto")
        elif multi and out[-1] != multi:
            out += [multi, arg]
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = _mmdet_style_options(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in argv
    try:
        # Non-standalone click returns exit codes (help, --version) instead of exiting.
        code = app(args=argv, prog_name="afm", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("afm: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("afm: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the one place that turns any error into one line
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # typer's usage errors
            exc.show()
            sys.exit(2)
        if _state["debug"]:
            raise
        from afmcli.errors import AfmError

        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, AfmError):
            print(f"afm: error: {msg}", file=sys.stderr)
        else:
            print(f"afm: error: {type(exc).__name__}: {msg} (run with --debug for the traceback)",
                  file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
