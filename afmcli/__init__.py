"""afmcli: AFMNet small-object detection for aerial images on mmdetection 3.3."""

__version__ = "0.1.0"
