"""Per-dtype copies of the networks and the fast paths built on them.

The float32 networks are loaded once; a float16 / bfloat16 copy of the LLM and the flow is made
the first time a dtype is asked for and then stays resident (both are needed for A/B listening).
Each copy gets its decoder (CUDA-graph decoding on CUDA, eager elsewhere) and its flow backend
(TensorRT / CUDA graphs / plain torch, chosen once by :func:`select_estimator_backend`).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tts_core.devices import DeviceInfo, synchronize
from tts_core.flow.backends import ChunkFlowBackend, FlowBackend
from tts_core.flow.model import FlowModel
from tts_core.flow.selection import select_estimator_backend
from tts_core.llm.speech_lm import SpeechLM
from tts_core.llm.static_decoder import StaticDecoder
from tts_core.model.loading import LoadedModels
from tts_core.options import SynthesisOptions, torch_dtype
from tts_core.results import OneTimeWork
from tts_core.streaming.render import select_chunk_backend

LLM_BACKENDS = ("auto", "eager", "cuda-graph", "cuda-graph-compiled", "cuda-graph-triton")
_STEP_KIND = {"cuda-graph": "torch", "cuda-graph-compiled": "compiled", "cuda-graph-triton": "triton"}


def triton_missing() -> str | None:
    """None when Triton imports, else why not (the Triton LLM backend needs it)."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton does not import ({exc})"
    return None


@dataclass
class DtypeModels:
    """The networks of one dtype and how they run."""

    dtype: str
    llm: SpeechLM
    flow: FlowModel
    generate: Callable[..., torch.Tensor]  # SpeechLM.generate's signature
    # StaticDecoder.prepare's signature: (text ids, prompt text ids, prompt speech tokens, options,
    # prefill_graph=False) -> the decoder's one-time work
    prepare_llm: Callable[..., OneTimeWork | None]
    llm_backend: str  # one of LLM_BACKENDS other than "auto"
    flow_backend: FlowBackend
    generate_pieces: Callable[..., Iterator[torch.Tensor]]  # SpeechLM.generate_pieces's signature
    chunk_backend: ChunkFlowBackend  # non-final streaming calls (tts_core.streaming.schedule)


def _eager_needs_nothing(
    text_ids: torch.Tensor,
    prompt_text_ids: torch.Tensor,
    prompt_speech_tokens: torch.Tensor,
    options: SynthesisOptions,
    prefill_graph: bool = False,
) -> OneTimeWork | None:
    return None  # the eager decoder builds nothing per shape


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
        if llm_backend == "cuda-graph-triton" and triton_missing() is not None:
            raise ValueError(f"llm_backend 'cuda-graph-triton' needs Triton: {triton_missing()}")
        self._models = models
        self._device = device
        self._flow_backend = flow_backend
        self._llm_backend = llm_backend
        self._estimator_onnx = estimator_onnx
        self._lock = threading.RLock()
        self._copies: dict[str, DtypeModels] = {}

    def get(self, dtype: str) -> DtypeModels:
        with self._lock:
            if dtype not in self._copies:
                self._copies[dtype] = self._build(dtype)
            return self._copies[dtype]

    def ensure(self, dtype: str) -> OneTimeWork | None:
        """Build the ``dtype`` copy now if it is missing, timing it (None when it exists)."""
        with self._lock:
            if dtype in self._copies:
                return None
            start = time.perf_counter()
            self._copies[dtype] = self._build(dtype)
            synchronize(self._device.torch)
            seconds = time.perf_counter() - start
        return OneTimeWork(f"{dtype} copy of the LLM and flow, decoder and flow backend set up", seconds)

    def _build(self, dtype: str) -> DtypeModels:
        if dtype == "float32":
            llm, flow = self._models.llm, self._models.flow
        else:
            target = torch_dtype(dtype)
            llm = copy.deepcopy(self._models.llm).to(target)
            flow = copy.deepcopy(self._models.flow).to(target)
        llm_backend = self._resolve_llm_backend(dtype, llm)
        if llm_backend == "eager":
            decoder, prepare = llm, _eager_needs_nothing
        else:
            decoder = StaticDecoder(llm, step_kind=_STEP_KIND[llm_backend])
            prepare = decoder.prepare
        backend = select_estimator_backend(
            flow, self._device.torch, self._flow_backend, self._estimator_onnx, None
        )
        return DtypeModels(
            dtype,
            llm,
            flow,
            decoder.generate,
            prepare,
            llm_backend,
            backend,
            decoder.generate_pieces,
            select_chunk_backend(flow, backend),
        )

    def _resolve_llm_backend(self, dtype: str, llm: SpeechLM) -> str:
        """What "auto" means for one dtype; explicit choices are kept.

        On CUDA, float16/bfloat16 take the fused Triton kernels (about 2x the tokens/s of the
        compiled torch step on an H100, see BENCHMARKS.md) when Triton imports and supports the
        model; float32 takes the compiled torch step, whose tokens equal the eager decoder's.
        The compiled step costs ~30-50 s of compilation per dtype on first use.
        """
        if self._llm_backend != "auto":
            return self._llm_backend
        if not self._device.is_cuda:
            return "eager"
        if dtype != "float32" and triton_missing() is None:
            from tts_core.llm.triton_backbone import triton_supports

            if triton_supports(llm.backbone) is None:
                return "cuda-graph-triton"
        return "cuda-graph-compiled"
