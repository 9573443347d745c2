"""Typed results of token generation and synthesis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tts_core.constants import SAMPLE_RATE
from tts_core.options import SynthesisOptions


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
class StreamChunk:
    """One streamed flow + vocoder call and the audio it yielded (no samples: see ``sample_start``)."""

    segment: int  # sentence segment it belongs to
    call: int  # call within the segment (0 = first hop)
    token_start: int  # first token of the segment whose mel this call added
    token_end: int  # one past the last; the look-ahead tokens after it were context only
    lookahead_tokens: int  # tokens after token_end the flow saw (3, or 0 in a final call)
    final: bool  # last call of its segment (offline flow, nothing held back)
    flow_frames: int  # new mel frames (2 per token in [token_start, token_end))
    vocoder_frames: int  # frames the vocoder got: flow_frames + the cached 8 of the previous call
    sample_start: int  # first yielded sample's index in the stitched audio
    samples: int  # samples yielded (all but the final call hold their last 3840 back)
    flow_seconds: float  # flow compute time of this call (device time on CUDA)
    vocoder_seconds: float  # vocoder compute time, cross-fade included
    ready_seconds: float  # request start -> these samples on the host, device synchronised


@dataclass(frozen=True)
class StreamReport:
    """How a streamed synthesis went, chunk by chunk."""

    chunks: tuple[StreamChunk, ...]
    wall_seconds: float  # request start -> last chunk on the host (the LLM included)
    llm_overlapped: bool  # True: the LLM decoded while chunks rendered (Pipeline.stream)

    @property
    def first_chunk_latency(self) -> float:
        """Seconds from the request's start to the first chunk on the host."""
        return self.chunks[0].ready_seconds

    @property
    def boundary_frames(self) -> tuple[int, ...]:
        """Mel frames of the stitched mel where a call other than the first begins (its chunk edges)."""
        starts, frames = [], 0
        for chunk in self.chunks:
            if frames:
                starts.append(frames)
            frames += chunk.flow_frames
        return tuple(starts)

    @property
    def chunk_intervals(self) -> tuple[float, ...]:
        """Seconds between consecutive chunks' arrival on the host."""
        ready = [c.ready_seconds for c in self.chunks]
        return tuple(b - a for a, b in zip(ready, ready[1:]))


@dataclass(frozen=True)
class SynthesisResult:
    """Audio and everything a listener or benchmark wants to know about how it was made.

    audio:         (N,) float32 numpy array at ``sample_rate`` Hz, in [-0.99, 0.99]
    mel:           (80, T) float32 CPU tensor, the flow output fed to the vocoder (after speed);
                   streamed: each call's new frames, concatenated
    speech_tokens: tuple of (L_i,) int64 CPU tensors, one per sentence segment
    stream:        the chunks of a streamed synthesis (``options.streaming``), else None
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
    stream: StreamReport | None = None

    @property
    def one_time_seconds(self) -> float:
        return sum(w.seconds for w in self.one_time)

    @property
    def duration(self) -> float:
        """Audio length in seconds."""
        return len(self.audio) / self.sample_rate

    @property
    def chunks(self) -> tuple[StreamChunk, ...]:
        """The streamed chunks (empty when not streamed)."""
        return self.stream.chunks if self.stream is not None else ()

    @property
    def first_chunk_latency(self) -> float | None:
        """Request start -> first chunk on the host, in seconds; None when not streamed."""
        return self.stream.first_chunk_latency if self.stream is not None else None

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio (lower is faster).

        Processing = the stage times added up; streamed, the wall time from the request's start to
        the last chunk (the LLM may decode while chunks render, so stage times overlap).
        """
        seconds = self.stream.wall_seconds if self.stream is not None else self.timings.total
        return seconds / self.duration if self.duration > 0 else float("inf")
