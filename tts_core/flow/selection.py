"""Choosing the flow's estimator backend, once per dtype copy (the solver only sees the interface).

    name               where           what runs
    torch              any device      the estimator module, eagerly          (backends.py)
    torch-cudagraph    CUDA            encoder + n_steps Euler steps captured as one CUDA graph
                                       per (length bucket, n_steps, dtype)   (cuda_graph.py)
    tensorrt           CUDA + tensorrt a TensorRT engine of the estimator     (tensorrt.py)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tts_core.flow.backends import FlowBackend, TorchEstimator
from tts_core.flow.cuda_graph import CudaGraphFlow
from tts_core.flow.model import FlowModel
from tts_core.flow.tensorrt import build_tensorrt_estimator, tensorrt_unavailable_reason

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "torch", "torch-cudagraph", "tensorrt")


def select_estimator_backend(
    flow: FlowModel,
    device: torch.device,
    requested: str = "auto",
    onnx_path: Path | None = None,
    cache_dir: Path | None = None,
) -> FlowBackend:
    """The flow backend to use for ``flow`` (already on ``device``, in its compute dtype).

    requested: "torch" | "torch-cudagraph" | "tensorrt" | "auto" (tensorrt if it can run, else
    torch-cudagraph on CUDA, else torch; the choice is logged). A requested backend that cannot
    run raises ValueError naming the reason: there is no silent swap. onnx_path: the estimator
    ONNX to build TensorRT engines from (e.g. the model directory's
    ``flow.decoder.estimator.fp32.onnx``); None exports one from ``flow`` into ``cache_dir``.
    cache_dir: where exported ONNX files and TensorRT engines are kept (default
    ``~/.cache/cosyvoice2-ab/trt``). The returned backend's ``name`` says what runs.
    """
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {requested!r}")
    device = torch.device(device)
    if flow.device.type != device.type or (device.index is not None and flow.device != device):
        raise ValueError(f"the flow lives on {flow.device}, not on the requested device {device}")

    if requested == "torch":
        return TorchEstimator(flow.decoder.estimator)
    if requested == "torch-cudagraph":
        if device.type != "cuda":
            raise ValueError(f"backend 'torch-cudagraph' needs a CUDA device, not {device}")
        return CudaGraphFlow(flow)
    trt_reason = tensorrt_unavailable_reason(device)
    if requested == "tensorrt":
        if trt_reason is not None:
            raise ValueError(f"backend 'tensorrt' cannot run: {trt_reason}")
        return build_tensorrt_estimator(flow, onnx_path=onnx_path, cache_dir=cache_dir)

    # auto
    if trt_reason is None:
        try:
            backend = build_tensorrt_estimator(flow, onnx_path=onnx_path, cache_dir=cache_dir)
        except (RuntimeError, ValueError, OSError) as exc:
            # Visible, not silent: TensorRT imports but this engine could not be built or loaded.
            log.warning("flow backend auto: TensorRT failed (%s); using the fastest torch path", exc)
        else:
            log.info("flow backend auto: tensorrt (%s)", flow.compute_dtype)
            return backend
    if device.type == "cuda":
        log.info("flow backend auto: torch-cudagraph (TensorRT: %s)", trt_reason or "failed, see above")
        return CudaGraphFlow(flow)
    log.info("flow backend auto: torch (%s)", trt_reason)
    return TorchEstimator(flow.decoder.estimator)
