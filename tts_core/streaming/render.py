"""Runs the streaming schedule of :mod:`tts_core.streaming.schedule`: flow call, vocoder with cache, cross-fade.

:class:`ChunkRenderer` renders the calls of one request (all its sentence segments) one at a
time, whether the tokens were all known up front (``Pipeline.tokens_to_audio``) or arrive from
the LLM (``Pipeline.stream``), and records each call as a :class:`~tts_core.results.StreamChunk`.

The vocoder's excitation comes from an :class:`ExcitationSource`: fresh SineGen draws from the
request's seeded generator (:class:`DrawnExcitation`, as officially), or recorded excitations
(:class:`RecordedExcitation`): the test seam that makes the official streamed chunks
reproducible sample by sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from tts_core.devices import DeviceInfo, tf32_convolutions
from tts_core.flow.backends import ChunkFlowBackend, FlowBackend, TorchEstimator
from tts_core.flow.cuda_graph import CudaGraphFlow
from tts_core.flow.model import FlowModel
from tts_core.frontend.prompt import PromptFeatures
from tts_core.options import SynthesisOptions
from tts_core.results import OneTimeWork, StreamChunk, StreamReport, SynthesisResult, Timings
from tts_core.streaming.schedule import (
    MEL_CACHE_FRAMES,
    OVERLAP_SAMPLES,
    SOURCE_CACHE_SAMPLES,
    StreamCall,
    cross_fade,
    crossfade_window,
    plan_stream_calls,
)
from tts_core.vocoder.hift import HiFTGenerator


def select_chunk_backend(flow: FlowModel, offline: FlowBackend) -> ChunkFlowBackend:
    """The backend for non-final streaming calls, chosen once per flow copy.

    The CUDA-graph backend runs them as graphs (sharing its graph pool); TensorRT engines have no
    chunk masks, so a TensorRT flow gets a CUDA-graph backend for them; plain torch stays eager.
    """
    if isinstance(offline, CudaGraphFlow):
        return offline
    if offline.name == "tensorrt":
        return CudaGraphFlow(flow)
    return TorchEstimator(flow.decoder.estimator)


class ExcitationSource(Protocol):
    """The vocoder's excitation for one vocoder call of a request.

    index: 0, 1, ... over the request's vocoder calls (all segments, in order); f0 (1, T) Hz of
    the mel the vocoder got (cache frames included) -> source (1, 1, T * 480) float32 on f0's device.
    """

    def __call__(self, index: int, f0: Tensor) -> Tensor: ...


class DrawnExcitation:
    """Fresh harmonic-source draws from ``generator`` (seeded per request: same seed, same audio)."""

    def __init__(self, hift: HiFTGenerator, generator: torch.Generator) -> None:
        self.hift = hift
        self.generator = generator

    def __call__(self, index: int, f0: Tensor) -> Tensor:
        return self.hift.excitation(f0, self.generator)


class RecordedExcitation:
    """Replays recorded excitations, one per vocoder call (e.g. the official ``chunk_k_hift_source``).

    With them the vocoder output is deterministic, so streamed chunks can be compared with the
    official ones sample by sample. A streamed call's first 3840 samples are then replaced by the
    previous call's cached excitation, as officially (the official recording already holds them).
    """

    def __init__(self, sources: Sequence[Tensor | np.ndarray], samples_per_frame: int) -> None:
        self.sources = [torch.as_tensor(s, dtype=torch.float32) for s in sources]
        self.samples_per_frame = samples_per_frame

    def __call__(self, index: int, f0: Tensor) -> Tensor:
        if index >= len(self.sources):
            raise ValueError(f"no recorded excitation for vocoder call {index} ({len(self.sources)} given)")
        source = self.sources[index]
        expected = (1, 1, f0.shape[1] * self.samples_per_frame)
        if tuple(source.shape) != expected:
            raise ValueError(
                f"recorded excitation {index} is {tuple(source.shape)}, the vocoder needs {expected}"
            )
        return source.to(f0.device)


@torch.inference_mode()
def vocode(hift: HiFTGenerator, mel: Tensor, excitation: ExcitationSource, index: int) -> Tensor:
    """Offline vocoder call: mel (1, 80, T) float32 -> (1, T * 480) with ``excitation(index, f0)``."""
    return hift.decode(mel, excitation(index, hift.predict_f0(mel)))


class DeviceClock:
    """Stage times without stalling the device queue: CUDA events on CUDA, host time elsewhere.

    Read :meth:`seconds` only after a host sync that covers both marks (e.g. copying the chunk out).
    """

    def __init__(self, device: DeviceInfo) -> None:
        self.cuda = device.is_cuda

    def mark(self) -> torch.cuda.Event | float:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: torch.cuda.Event | float, end: torch.cuda.Event | float) -> float:
        if isinstance(start, float) and isinstance(end, float):
            return end - start
        end.synchronize()  # type: ignore[union-attr]
        return start.elapsed_time(end) / 1000.0  # type: ignore[union-attr, arg-type]


@dataclass(frozen=True)
class VocoderCache:
    """What a non-final call leaves for the next one (tensors on the device)."""

    mel: Tensor  # (1, 80, 8) the last mel frames the vocoder got
    source: Tensor  # (1, 1, 3840) their excitation, reused so the waveform continues
    speech: Tensor  # (1, 3840) the held-back output tail (after its own cross-fade)


@dataclass(frozen=True)
class PromptTensors:
    """The flow prompt of a request on the device."""

    tokens: Tensor  # (1, Lp) int64
    mel: Tensor  # (1, 2 Lp, 80)
    embedding: Tensor  # (1, 192)

    @classmethod
    def of(cls, prompt: PromptFeatures, device: torch.device) -> PromptTensors:
        """The flow half of ``prompt`` on ``device`` (float32; the flow casts to its dtype)."""
        return cls(
            prompt.speech_tokens.to(device).unsqueeze(0),
            prompt.mel.to(device).unsqueeze(0),
            prompt.embedding.to(device).unsqueeze(0),
        )


class ChunkRenderer:
    """Renders one request's streaming calls in order and keeps the chunks, mel and audio.

    ``request_start``: ``time.perf_counter()`` at the request's start (after a device sync);
    each chunk's ``ready_seconds`` counts from it. Call :meth:`start_segment` before the first
    call of every segment (the vocoder cache does not cross segments, as officially each segment
    is its own request).
    """

    def __init__(
        self,
        flow: FlowModel,
        offline: FlowBackend,
        chunked: ChunkFlowBackend,
        hift: HiFTGenerator,
        device: DeviceInfo,
        prompt: PromptTensors,
        n_steps: int,
        excitation: ExcitationSource,
        request_start: float,
    ) -> None:
        self.flow, self.offline, self.chunked, self.hift = flow, offline, chunked, hift
        self.device, self.prompt, self.n_steps = device, prompt, n_steps
        self.excitation = excitation
        self.request_start = request_start
        self.clock = DeviceClock(device)
        self.window = crossfade_window(device.torch)
        self.chunks: list[StreamChunk] = []
        self.mels: list[Tensor] = []  # (80, frames) float32 CPU, each call's new frames
        self.audio: list[np.ndarray] = []
        self.one_time: list[OneTimeWork] = []  # graph captures paid on first use of a shape
        self.excluded_seconds = 0.0  # their wall time, left out of ready_seconds and wall times
        self._cache: VocoderCache | None = None
        self._vocoder_calls = 0
        self._samples = 0

    @property
    def backend_name(self) -> str:
        """What ran: one name, or "<chunk calls>/<final calls>" when they differ."""
        names = (self.chunked.name, self.offline.name)
        return names[0] if names[0] == names[1] else "/".join(names)

    def start_segment(self) -> None:
        self._cache = None

    def _prepare(self, call: StreamCall) -> None:
        """Pay the one-time work of ``call``'s flow shape (a graph capture) outside every timing."""
        n_total, steps = self.prompt.tokens.shape[1] + call.n_tokens, self.n_steps
        begin = time.perf_counter()
        if call.final:
            work = self.offline.prepare(n_total, steps)
        else:
            work = self.chunked.prepare_chunk(n_total, steps)
        if work is not None:
            self.one_time.append(work)
            self.excluded_seconds += time.perf_counter() - begin

    @torch.inference_mode()
    def render(self, segment: int, call: StreamCall, tokens: Tensor) -> np.ndarray:
        """Run ``call`` on tokens (1, call.n_tokens) int64 on the device -> its samples (n,) float32.

        A graph capture that this call's shape still needs is paid first and left out of its
        ``ready_seconds`` (listed in the result's ``one_time``), as in ``tokens_to_audio``.
        """
        p = self.prompt
        self._prepare(call)
        start = self.clock.mark()
        if call.final:  # officially an offline call (stream=False, finalize=True)
            mel = self.offline.run_flow(self.flow, tokens, p.tokens, p.mel, p.embedding, self.n_steps)
        else:
            mel = self.chunked.run_chunk(self.flow, tokens, p.tokens, p.mel, p.embedding, self.n_steps)
        new = mel[:, :, self.flow.cfg.token_mel_ratio * call.token_offset :]
        flow_done = self.clock.mark()
        with tf32_convolutions(self.device):
            speech, vocoder_frames = self._vocode(new, call.final)
        done = self.clock.mark()
        samples = speech[0].cpu().numpy()  # host sync: the chunk is ready
        ready = time.perf_counter() - self.request_start - self.excluded_seconds
        self.chunks.append(
            StreamChunk(
                segment=segment,
                call=call.index,
                token_start=call.token_offset,
                token_end=call.token_end,
                lookahead_tokens=call.lookahead_tokens,
                final=call.final,
                flow_frames=new.shape[2],
                vocoder_frames=vocoder_frames,
                sample_start=self._samples,
                samples=len(samples),
                flow_seconds=self.clock.seconds(start, flow_done),
                vocoder_seconds=self.clock.seconds(flow_done, done),
                ready_seconds=ready,
            )
        )
        self._samples += len(samples)
        self.mels.append(new[0].cpu())
        self.audio.append(samples)
        return samples

    def _vocode(self, new_mel: Tensor, final: bool) -> tuple[Tensor, int]:
        """new_mel (1, 80, F) -> (samples to yield (1, n), frames the vocoder got); updates the cache."""
        cache = self._cache
        mel = new_mel if cache is None else torch.cat([cache.mel, new_mel], dim=2)
        f0 = self.hift.predict_f0(mel)
        source = self.excitation(self._vocoder_calls, f0)
        self._vocoder_calls += 1
        if cache is not None:
            source = source.clone()
            source[:, :, :SOURCE_CACHE_SAMPLES] = cache.source
        speech = self.hift.decode(mel, source)
        if cache is not None:
            speech = cross_fade(speech, cache.speech, self.window)
        if final:
            self._cache = None
            return speech, mel.shape[2]
        self._cache = VocoderCache(
            mel[:, :, -MEL_CACHE_FRAMES:], source[:, :, -SOURCE_CACHE_SAMPLES:], speech[:, -OVERLAP_SAMPLES:]
        )
        return speech[:, :-OVERLAP_SAMPLES], mel.shape[2]

    def render_tokens(self, segments: Sequence[Tensor]) -> None:
        """Stream every call of segments whose tokens are all known: each (L_i,) int64 CPU."""
        n_prompt = self.prompt.tokens.shape[1]
        for index, segment in enumerate(segments):
            self.start_segment()
            on_device = segment.to(self.device.torch).unsqueeze(0)
            for call in plan_stream_calls(n_prompt, segment.numel()):
                self.render(index, call, on_device[:, : call.n_tokens])

    def result(
        self,
        speech_tokens: tuple[Tensor, ...],
        options: SynthesisOptions,
        dtype_ran: str,
        llm: tuple[float, str],
        warnings: tuple[str, ...],
        wall_seconds: float,
        llm_overlapped: bool,
        one_time: tuple[OneTimeWork, ...],
    ) -> SynthesisResult:
        """Everything rendered so far as one result.

        llm: (seconds, decoder) of the LLM run that made ``speech_tokens``; wall_seconds: request
        start -> last chunk, with the renderer's one-time work still in it (it is taken out
        here); llm_overlapped: the LLM decoded while chunks rendered; one_time: the one-time work
        paid before rendering (the renderer's own is added).
        """
        audio = np.concatenate(self.audio).astype(np.float32) if self.audio else np.zeros(0, np.float32)
        mel = torch.cat(self.mels, dim=-1) if self.mels else torch.zeros(self.flow.cfg.output_size, 0)
        flow_s = sum(c.flow_seconds for c in self.chunks)
        vocoder_s = sum(c.vocoder_seconds for c in self.chunks)
        return SynthesisResult(
            audio=audio,
            mel=mel,
            speech_tokens=speech_tokens,
            timings=Timings(llm=llm[0], flow=flow_s, vocoder=vocoder_s),
            options=options,
            dtype_ran=dtype_ran,
            backend=self.backend_name,
            llm_backend=llm[1],
            device=self.device.label,
            warnings=warnings,
            one_time=one_time + tuple(self.one_time),
            stream=StreamReport(tuple(self.chunks), wall_seconds - self.excluded_seconds, llm_overlapped),
        )
