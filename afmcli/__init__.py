"""afmcli: AFMNet small-object detection for aerial images on mmdetection 3.3.

The Python API (afmcli/api.py): ``open_dataset``, ``convert_dataset``, ``train``,
``load_model``, ``predict``, ``predict_source``, ``evaluate``, ``track`` and the
``Detections`` they return; the `afm` command is afmcli.cli.
"""

__version__ = "0.1.0"

_API = ("Detections", "ImageItem", "Model", "OnnxModel", "convert_dataset", "evaluate", "export", "load_model",
        "open_dataset", "predict", "predict_source", "track", "train")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    # On first use: `import afmcli` stays light (the `afm` command imports it for the version).
    if name in _API:
        from afmcli import api

        return getattr(api, name)
    raise AttributeError(f"module 'afmcli' has no attribute {name!r}")
