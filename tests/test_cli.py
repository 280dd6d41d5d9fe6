"""The `afm` command: subcommands exist with help, errors are one line with exit 2."""

import subprocess
import sys

import pytest

from afmcli.cli import _mmdet_style_options, main

SUBCOMMANDS = ["convert", "convert-visdrone", "make-masks", "synth", "train", "infer", "track", "fuse", "evaluate",
               "demo", "env"]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    main([name, "--help"])
    assert "Usage: afm " + name in " ".join(capsys.readouterr().out.split())


def test_env_reports_stack_and_ops(capsys):
    main(["env"])
    out = capsys.readouterr().out
    for key in ("torch", "mmcv", "mmengine", "mmdet", "CUDA available", "mmcv ops devices"):
        assert key in out
    assert "compiled" in out and "NOT compiled" not in out


def test_error_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "missing.py")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"afm: error: {tmp_path / 'missing.py'}: config not found"


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "afmcli", "--debug", "train", str(tmp_path / "x.py")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "AfmError" in proc.stderr


def test_bad_option_value_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "out", "--images", "many"])
    assert exit_info.value.code == 2


def test_mmdet_style_options():
    assert _mmdet_style_options(["train", "c.py", "--resume"]) == ["train", "c.py", "--resume", "auto"]
    assert _mmdet_style_options(["train", "c.py", "--resume", "--amp"]) == [
        "train", "c.py", "--resume", "auto", "--amp"]
    assert _mmdet_style_options(["train", "c.py", "--resume", "w/epoch_2.pth"]) == [
        "train", "c.py", "--resume", "w/epoch_2.pth"]
    assert _mmdet_style_options(["train", "c.py", "--cfg-options", "a=1", "b.c=2", "--amp"]) == [
        "train", "c.py", "--cfg-options", "a=1", "--cfg-options", "b.c=2", "--amp"]
    assert _mmdet_style_options(["fuse", "a.json", "b.json", "--weights", "2", "1", "--out", "f.json"]) == [
        "fuse", "a.json", "b.json", "--weights", "2", "--weights", "1", "--out", "f.json"]


def test_library_errors_and_warnings_name_the_command_s_flags(capsys):
    """A ParameterError (or AfmWarning) names the library's parameter; the command says its
    flag: its own parameters by name, others through the module's FLAGS."""
    import types
    from typing import Optional

    import typer

    from afmcli.commands.flags import flag_errors
    from afmcli.errors import AfmError, AfmWarning, ParameterError, warn

    def run(src: str = typer.Argument(...), slice_size: int = typer.Option(640, "--slice"),
            frame_step: int = typer.Option(1), images: Optional[str] = typer.Option(None, "--images")) -> None:
        warn("{slice_size} 640 makes many tiles", "slice_size")
        raise ParameterError("{src}: none exists; check {images_dir}, {frame_step} and {slices=False}",
                             "src", "images_dir", "frame_step", "slices=False")

    module = types.SimpleNamespace(run=run, FLAGS={"images_dir": "--images", "slices=False": "--no-slices"})
    with pytest.raises(AfmError) as info:
        flag_errors(module, "run")(src="x")
    assert str(info.value) == "SRC: none exists; check --images, --frame-step and --no-slices"
    assert capsys.readouterr().err == "afm: warning: --slice 640 makes many tiles\n"
    with pytest.warns(AfmWarning, match="^slice_size 640 makes many tiles$"), \
            pytest.raises(ParameterError, match="^src: none exists; check images_dir, frame_step and slices=False$"):
        run(src="x")  # the library call itself says the parameters
