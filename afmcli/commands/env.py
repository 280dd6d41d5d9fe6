"""`afm env`: versions and what mmcv's ops were compiled for."""

from __future__ import annotations

import importlib.metadata
import platform

EXAMPLES = """Examples:

  afm env
"""


def collect_env() -> dict[str, str]:
    """Versions of the stack, CUDA availability and mmcv's compiled ops."""
    import torch

    info = {"python": platform.python_version()}
    for pkg in ("torch", "mmcv", "mmengine", "mmdet", "numpy", "opencv-python"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    info["torch CUDA build"] = torch.version.cuda or "none (CPU build)"
    info["CUDA available"] = (f"yes ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available()
                              else "no")
    try:
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version

        cuda_ops = get_compiling_cuda_version()
        info["mmcv ops"] = "compiled"
        info["mmcv ops devices"] = "CPU" if cuda_ops == "not available" else f"CPU, CUDA {cuda_ops}"
        info["mmcv ops compiler"] = get_compiler_version()
    except (ImportError, OSError, AttributeError) as exc:
        info["mmcv ops"] = f"NOT compiled ({exc})"
    return info


def env() -> None:
    """Print python, torch, mmcv, mmengine and mmdet versions, CUDA and mmcv's ops."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="afm env", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in collect_env().items():
        table.add_row(key, value)
    Console().print(table)
