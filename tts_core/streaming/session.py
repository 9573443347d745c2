"""``Pipeline.stream``: audio chunks while the LLM keeps decoding.

The LLM decodes in a helper thread (on its own CUDA stream on a GPU) and hands its tokens over
at every stop check; the calling thread runs the streaming schedule (:mod:`tts_core.streaming.schedule`)
and renders a chunk as soon as enough tokens are there, so flow and vocoder work overlaps the
decoding instead of stalling it. The calls made depend only on the token counts, never on
timing: the same seed gives the same audio as ``tokens_to_audio`` of the same tokens with
``streaming=True``.

First-chunk latency (request start -> first audio on the host) is what streaming users ask
about, so the first chunk gets the device to itself:

* the decoder also checks for a stop right after the first hop's tokens (25 + pad + 3), so they
  are handed over the moment they exist, not at the next multiple of the stop-check period;
* once they are handed over, the LLM waits until the first chunk is on the host. Beside the decode
  steps the chunk's flow graph runs about 1.5x slower (H200, 3 s prompt: 23 -> 36 ms at 5 steps,
  45 -> 69 ms at 10; benchmarks/scripts/stream_timeline.py), while the pause costs the LLM no
  more than that render, and the player then holds 0.84 s of audio: far more than the next hop
  (50 tokens and one flow call) takes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tts_core.devices import DeviceInfo, synchronize
from tts_core.frontend.prompt import PromptFeatures
from tts_core.options import SynthesisOptions
from tts_core.results import OneTimeWork, StreamChunk, SynthesisResult
from tts_core.runtime import DtypeModels
from tts_core.streaming.render import ChunkRenderer
from tts_core.streaming.schedule import StreamSchedule, first_call_tokens


@dataclass(frozen=True)
class AudioChunk:
    """One streamed piece of audio, as soon as it is ready."""

    audio: np.ndarray  # (n,) float32 samples at 24 kHz, to play right after the previous chunk
    info: StreamChunk  # which tokens, how long it took, when it arrived


@dataclass(frozen=True)
class StreamJob:
    """Everything one streamed request needs (made by ``Pipeline.stream``)."""

    segments: tuple[list[int], ...]  # text token ids per sentence segment
    prompt: PromptFeatures
    options: SynthesisOptions
    dtype_ran: str
    models: DtypeModels
    make_renderer: Callable[[float], ChunkRenderer]  # request start -> renderer
    device: DeviceInfo
    # The producer's CUDA stream (None off CUDA), one per pipeline: torch keeps cached allocator
    # blocks and cuBLAS workspaces per stream, so a fresh stream per request would start cold.
    llm_stream: torch.cuda.Stream | None
    lock: threading.RLock  # the pipeline's device lock, held while the request runs
    warnings: tuple[str, ...]
    one_time: tuple[OneTimeWork, ...]  # paid before the request (e.g. the dtype copy)


def llm_prompt_tokens(prompt: PromptFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt text ids, prompt speech tokens) the LLM continues; both empty in cross-lingual mode."""
    if prompt.mode == "zero_shot":
        return prompt.text_tokens, prompt.speech_tokens
    empty = torch.zeros(0, dtype=torch.long)
    return empty, empty


@dataclass(frozen=True)
class _Piece:
    tokens: list[int]


@dataclass(frozen=True)
class _SegmentEnd:
    pass


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _TokenProducer(threading.Thread):
    """Decodes every segment in turn and queues its tokens (as host ints) as they are confirmed.

    After handing over the first hop of the first segment it waits for :attr:`resume` (set by
    the consumer once the first chunk is on the host, and when the request ends).
    """

    def __init__(self, job: StreamJob, start: float) -> None:
        super().__init__(name="tts-stream-llm", daemon=True)
        self.job = job
        self.start_time = start
        self.items: queue.Queue[_Piece | _SegmentEnd | _Failed] = queue.Queue()
        self.halt = threading.Event()
        self.resume = threading.Event()
        self.first_hop = first_call_tokens(job.prompt.speech_tokens.numel())
        self.llm_seconds = 0.0

    def run(self) -> None:
        try:
            if self.job.llm_stream is not None:
                # A new thread starts on device 0; and a stream of its own lets decode steps run
                # beside the chunks' flow and vocoder work on the caller's stream.
                with torch.cuda.device(self.job.device.torch), torch.cuda.stream(self.job.llm_stream):
                    self._decode_all()
            else:
                self._decode_all()
        except BaseException as exc:  # handed to the consumer, which raises it
            self.items.put(_Failed(exc))

    def _decode_all(self) -> None:
        job = self.job
        prompt_text, prompt_speech = llm_prompt_tokens(job.prompt)
        generator = torch.Generator(device=job.device.torch).manual_seed(
            job.options.seed
        )  # as generate_tokens
        for segment, ids in enumerate(job.segments):
            pieces = job.models.generate_pieces(
                torch.tensor(ids, dtype=torch.long),
                prompt_text,
                prompt_speech,
                job.options,
                generator,
                stop_check_every=job.device.stop_check_every,
                check_at=self.first_hop,
            )
            made, hold = 0, segment == 0
            for piece in pieces:
                if self.halt.is_set():
                    return
                self.items.put(_Piece(piece.cpu().tolist()))
                made += piece.numel()
                if hold and made >= self.first_hop:
                    hold = False
                    self.resume.wait()  # the first chunk renders with the device to itself
            self.items.put(_SegmentEnd())
            self.llm_seconds = time.perf_counter() - self.start_time


class SynthesisStream:
    """Iterate for :class:`AudioChunk` items as they are ready; then read :attr:`result`.

    Iterate in one thread, once. The pipeline's device lock is held from the first ``next`` until
    the last chunk (or until the iteration is abandoned, which stops the LLM).
    """

    def __init__(self, job: StreamJob) -> None:
        self._job = job
        self._result: SynthesisResult | None = None
        self._started = False

    @property
    def result(self) -> SynthesisResult:
        """The stitched audio, tokens, chunks and timings (RuntimeError before the stream ends)."""
        if self._result is None:
            raise RuntimeError("the stream has not finished: iterate over it to the end first")
        return self._result

    def __iter__(self) -> Iterator[AudioChunk]:
        if self._started:
            raise RuntimeError("a SynthesisStream can be iterated only once")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[AudioChunk]:
        job = self._job
        with job.lock:
            # The decoder's one-time work (compilation, graph capture) first, outside the timing.
            prompt_text, prompt_speech = llm_prompt_tokens(job.prompt)
            one_time = list(job.one_time)
            for ids in job.segments:
                ids_tensor = torch.tensor(ids, dtype=torch.long)
                # The prefill as a graph too: it runs before the first chunk (tts_core.llm.static_decoder).
                work = job.models.prepare_llm(ids_tensor, prompt_text, prompt_speech, job.options, True)
                one_time.append(work)
            synchronize(job.device.torch)
            start = time.perf_counter()
            renderer = job.make_renderer(start)
            producer = _TokenProducer(job, start)
            producer.start()
            try:
                tokens = yield from self._consume(producer, renderer)
                wall = time.perf_counter() - start
            finally:
                producer.halt.set()
                producer.resume.set()
                producer.join()
        if not any(tokens):
            raise ValueError("the LLM produced no speech tokens for this text; try another seed or text")
        self._result = renderer.result(
            speech_tokens=tuple(torch.tensor(t, dtype=torch.long) for t in tokens if t),
            options=job.options,
            dtype_ran=job.dtype_ran,
            llm=(producer.llm_seconds, job.models.llm_backend),
            warnings=job.warnings,
            wall_seconds=wall,
            llm_overlapped=True,
            one_time=tuple(w for w in one_time if w is not None),
        )

    def _consume(self, producer: _TokenProducer, renderer: ChunkRenderer) -> Iterator[AudioChunk]:
        """Render each segment's calls as its tokens arrive; returns the tokens of every segment."""
        n_prompt = renderer.prompt.tokens.shape[1]
        device = self._job.device.torch
        all_tokens: list[list[int]] = []
        for segment in range(len(self._job.segments)):
            schedule, tokens, finished = StreamSchedule(n_prompt), [], False
            renderer.start_segment()
            while not finished:
                item = producer.items.get()
                if isinstance(item, _Failed):
                    raise item.error
                if isinstance(item, _Piece):
                    tokens.extend(item.tokens)
                finished = isinstance(item, _SegmentEnd)
                while (call := schedule.next_call(len(tokens), finished)) is not None:
                    if call.n_tokens == 0:  # the LLM stopped at once: nothing to render
                        break
                    on_device = torch.tensor(tokens[: call.n_tokens], dtype=torch.long, device=device)
                    samples = renderer.render(segment, call, on_device.unsqueeze(0))
                    producer.resume.set()  # the first chunk is on the host: the LLM goes on
                    yield AudioChunk(samples, renderer.chunks[-1])
            all_tokens.append(tokens)
        return all_tokens
