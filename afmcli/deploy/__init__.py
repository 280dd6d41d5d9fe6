"""`afm export`: a trained detector as one ONNX graph that ONNX Runtime runs without the
OpenMMLab stack (afmcli.inference.backends.onnx_runtime runs it)."""
