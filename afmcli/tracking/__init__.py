"""Multi-object tracking of `afm infer`'s detections (`afm track`, :func:`afmcli.track`)."""
