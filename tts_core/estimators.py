"""Estimator backends: what the Euler solver calls once per step.

The solver only knows the :class:`EstimatorBackend` call signature, so a backend is chosen once
(plain torch here; CUDA graphs or TensorRT elsewhere) and the ODE loop never branches on its kind.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from tts_core.estimator import CausalConditionalDecoder


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


class TorchEstimator:
    """Runs the estimator module eagerly; ``streaming`` applies the chunk attention masks."""

    name = "torch"

    def __init__(self, module: CausalConditionalDecoder, streaming: bool = False) -> None:
        self.module = module
        self.streaming = streaming

    def __call__(self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor) -> Tensor:
        return self.module(x, mask, mu, t, spks, cond, streaming=self.streaming)
