"""Typed results of token generation and synthesis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .constants import SAMPLE_RATE
from .options import SynthesisOptions


@dataclass(frozen=True)
class OneTimeWork:
    """Work paid once per process and shape (graph capture, compilation, a dtype copy), timed apart
    from the stage timings so that a clip's speed shows what the configuration costs when warm."""

    what: str  # e.g. "flow graph capture: 352 tokens x 5 steps (bfloat16)"
    seconds: float  # wall clock, device synchronised


@dataclass(frozen=True)
class GeneratedTokens:
    """Speech tokens of one text, one tensor per sentence segment.

    segments: tuple of (L_i,) int64 CPU tensors (stop tokens removed)
    """

    segments: tuple[torch.Tensor, ...]
    texts: tuple[str, ...]  # the normalised text of each segment ("" when ids were given)
    llm_seconds: float  # wall time of the LLM, device synchronised
    dtype_ran: str  # dtype the LLM actually ran in
    options: SynthesisOptions
    llm_backend: (
        str  # decoder that made them: "eager", "cuda-graph", "cuda-graph-compiled", "cuda-graph-triton"
    )
    one_time: tuple[OneTimeWork, ...] = ()  # paid before decoding, not in llm_seconds

    @property
    def n_tokens(self) -> int:
        return sum(int(s.numel()) for s in self.segments)


@dataclass(frozen=True)
class Timings:
    """Seconds per stage, each measured with the device synchronised."""

    llm: float = 0.0
    flow: float = 0.0
    vocoder: float = 0.0

    @property
    def total(self) -> float:
        return self.llm + self.flow + self.vocoder


@dataclass(frozen=True)
class SynthesisResult:
    """Audio and everything a listener or benchmark wants to know about how it was made.

    audio:         (N,) float32 numpy array at ``sample_rate`` Hz, in [-0.99, 0.99]
    mel:           (80, T) float32 CPU tensor, the flow output fed to the vocoder (after speed)
    speech_tokens: tuple of (L_i,) int64 CPU tensors, one per sentence segment
    """

    audio: np.ndarray
    mel: torch.Tensor
    speech_tokens: tuple[torch.Tensor, ...]
    timings: Timings
    options: SynthesisOptions  # the options as requested
    dtype_ran: str  # dtype LLM/flow actually ran in (differs from options.dtype only with a warning)
    backend: str  # flow estimator backend that ran: "torch", "torch-cudagraph", "tensorrt"
    llm_backend: str  # LLM decoder that made the tokens; "none" when token ids were passed in
    device: str  # e.g. "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)"
    sample_rate: int = SAMPLE_RATE
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # One-time work this call paid (its tokens' included), not counted in ``timings`` or ``rtf``.
    one_time: tuple[OneTimeWork, ...] = ()

    @property
    def one_time_seconds(self) -> float:
        return sum(w.seconds for w in self.one_time)

    @property
    def duration(self) -> float:
        """Audio length in seconds."""
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio (lower is faster)."""
        return self.timings.total / self.duration if self.duration > 0 else float("inf")
