"""Estimator backends: what the Euler solver calls once per step, and how one is chosen.

The solver only knows the :class:`EstimatorBackend` call signature, so a backend is chosen once
and the ODE loop never branches on its kind. The backends made here (:class:`FlowBackend`) also
run a whole utterance through the flow (``run_flow``), which lets a backend take over more than
the estimator: ``torch-cudagraph`` replays the encoder and all Euler steps as one CUDA graph.

    name               where           what runs
    torch              any device      the estimator module, eagerly
    torch-cudagraph    CUDA            encoder + n_steps Euler steps captured as one CUDA graph
                                       per (length bucket, n_steps, dtype)   (cuda_graph_flow.py)
    tensorrt           CUDA + tensorrt a TensorRT engine of the estimator     (trt_backend.py)

:func:`select_estimator_backend` picks one; "auto" takes the fastest that can run and logs it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from tts_core.estimator import CausalConditionalDecoder
from tts_core.results import OneTimeWork

if TYPE_CHECKING:
    from tts_core.flow import FlowModel

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "torch", "torch-cudagraph", "tensorrt")


class EstimatorBackend(Protocol):
    """One evaluation of the velocity field on the classifier-free-guidance batch of two.

    Shapes (T = prompt + new frames), all in the flow's compute dtype:
    x, mu, cond (2, 80, T); mask (2, 1, T); t (2,); spks (2, 80) -> velocity (2, 80, T).
    Row 0 is conditional, row 1 unconditional (mu, spks and cond zeroed).
    """

    name: str  # "torch", "torch-cudagraph", "tensorrt", ...

    def __call__(
        self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor
    ) -> Tensor: ...


class FlowBackend(EstimatorBackend, Protocol):
    """An estimator backend that can also run a whole utterance through the flow.

    ``run_flow`` takes the arguments of :meth:`FlowModel.inference` (non-streaming) and returns
    the same mel (1, 80, 2 L) float32; use it in preference to ``flow.inference(estimator=...)``,
    which only ever uses the per-step ``__call__``.
    """

    def run_flow(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor: ...

    def prepare(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        """Do now the one-time work (e.g. a graph capture) that ``run_flow`` on ``n_total_tokens``
        (prompt + new) tokens with ``n_steps`` would pay; None when there is none left."""
        ...


class ChunkFlowBackend(Protocol):
    """Runs a non-final streaming call (:mod:`tts_core.streaming`) through the flow.

    ``run_chunk`` takes the arguments of :meth:`FlowModel.inference` and returns what
    ``flow.inference(..., streaming=True, lookahead=True)`` does: chunk attention masks, the last
    3 of ``tokens`` as look-ahead context -> mel (1, 80, 2 (L - 3)) float32.
    """

    name: str

    def run_chunk(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor: ...

    def prepare_chunk(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        """Do now the one-time work that ``run_chunk`` on ``n_total_tokens`` (prompt + new,
        look-ahead included) with ``n_steps`` would pay; None when there is none left."""
        ...


class TorchEstimator:
    """Runs the estimator module eagerly.

    ``streaming`` applies the chunk attention masks; ``key_padding`` hides frames with mask 0
    from attention (needed only for right-padded inputs; see ``CausalConditionalDecoder``).
    """

    name = "torch"

    def __init__(
        self, module: CausalConditionalDecoder, streaming: bool = False, key_padding: bool = False
    ) -> None:
        self.module = module
        self.streaming = streaming
        self.key_padding = key_padding

    def __call__(self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor) -> Tensor:
        return self.module(x, mask, mu, t, spks, cond, streaming=self.streaming, key_padding=self.key_padding)

    def run_flow(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor:
        """Same as ``flow.inference(..., n_steps, estimator=self)``."""
        return flow.inference(tokens, prompt_tokens, prompt_mel, embedding, n_steps, estimator=self)

    def prepare(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        return None  # eager: nothing is built per shape

    def run_chunk(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor:
        """A non-final streaming call in eager torch (the flow's own estimator, chunk masks)."""
        return flow.inference(
            tokens, prompt_tokens, prompt_mel, embedding, n_steps, streaming=True, lookahead=True
        )

    def prepare_chunk(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        return None  # eager: nothing is built per shape


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
    # Imported here: both import tts_core.flow, which imports this module.
    from tts_core.cuda_graph_flow import CudaGraphFlow
    from tts_core.trt_backend import build_tensorrt_estimator, tensorrt_unavailable_reason

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
