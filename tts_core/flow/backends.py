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
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from tts_core.flow.estimator_net import CausalConditionalDecoder
from tts_core.results import OneTimeWork

if TYPE_CHECKING:
    from tts_core.flow.model import FlowModel

log = logging.getLogger(__name__)



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
    """Runs a non-final streaming call (:mod:`tts_core.streaming.schedule`) through the flow.

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
