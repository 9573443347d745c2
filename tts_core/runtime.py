"""Per-dtype copies of the networks and the fast paths built on them.

The float32 networks are loaded once; a float16 / bfloat16 copy of the LLM and the flow is made
the first time a dtype is asked for and then stays resident (both are needed for A/B listening).
Each copy gets its decoder (CUDA-graph decoding on CUDA, eager elsewhere) and its flow backend
(TensorRT / CUDA graphs / plain torch, chosen once by :func:`select_estimator_backend`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .devices import DeviceInfo
from .estimators import FlowBackend, select_estimator_backend
from .flow import FlowModel
from .llm import SpeechLM
from .llm_static import StaticDecoder
from .loading import LoadedModels
from .options import torch_dtype

LLM_BACKENDS = ("auto", "eager", "cuda-graph", "cuda-graph-compiled")


@dataclass
class DtypeModels:
    """The networks of one dtype and how they run."""

    dtype: str
    llm: SpeechLM
    flow: FlowModel
    generate: Callable[..., torch.Tensor]  # SpeechLM.generate's signature
    llm_backend: str  # "eager", "cuda-graph" or "cuda-graph-compiled"
    flow_backend: FlowBackend


class ModelCopies:
    """Lazily built, thread-safe map dtype -> :class:`DtypeModels`."""

    def __init__(
        self,
        models: LoadedModels,
        device: DeviceInfo,
        flow_backend: str,
        llm_backend: str,
        estimator_onnx: Path | None,
    ) -> None:
        if llm_backend not in LLM_BACKENDS:
            raise ValueError(f"llm_backend must be one of {LLM_BACKENDS}, got {llm_backend!r}")
        if llm_backend.startswith("cuda-graph") and not device.is_cuda:
            raise ValueError(f"llm_backend {llm_backend!r} needs a CUDA device, not {device.label}")
        self._models = models
        self._device = device
        self._flow_backend = flow_backend
        # torch.compile fuses the decode step (about 2x faster on an H100) but compiles for
        # ~30 s per dtype on first use; "auto" takes it on CUDA.
        self._llm_backend = (
            ("cuda-graph-compiled" if device.is_cuda else "eager") if llm_backend == "auto" else llm_backend
        )
        self._estimator_onnx = estimator_onnx
        self._lock = threading.RLock()
        self._copies: dict[str, DtypeModels] = {}

    def get(self, dtype: str) -> DtypeModels:
        with self._lock:
            if dtype not in self._copies:
                self._copies[dtype] = self._build(dtype)
            return self._copies[dtype]

    def _build(self, dtype: str) -> DtypeModels:
        if dtype == "float32":
            llm, flow = self._models.llm, self._models.flow
        else:
            target = torch_dtype(dtype)
            llm = copy.deepcopy(self._models.llm).to(target)
            flow = copy.deepcopy(self._models.flow).to(target)
        if self._llm_backend == "eager":
            generate = llm.generate
        else:
            generate = StaticDecoder(llm, compile_step=self._llm_backend == "cuda-graph-compiled").generate
        backend = select_estimator_backend(
            flow, self._device.torch, self._flow_backend, self._estimator_onnx, None
        )
        return DtypeModels(dtype, llm, flow, generate, self._llm_backend, backend)
