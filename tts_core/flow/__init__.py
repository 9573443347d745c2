"""The flow: conformer encoder, estimator network, CFM solver, estimator backends (torch, CUDA graph,
TensorRT) and their selection, ONNX export."""
