"""The public entry points: ``load_pipeline`` (load once) and ``Pipeline`` (infer many times).

Data path: text -> speech tokens (LLM, dtype A/B) -> mel (flow, ``flow_steps`` Euler steps) ->
24 kHz audio (HiFT, always float32). Loading does every file check and weight load; the
inference methods only compute.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from tts_core.config_id import ConfigId
from tts_core.constants import MAX_TEXT_CHARS
from tts_core.devices import DeviceInfo, resolve_device, resolve_dtype, synchronize, tf32_convolutions
from tts_core.flow.selection import BACKEND_CHOICES
from tts_core.frontend.prompt import PromptFeatures
from tts_core.frontend.speech_frontend import SpeechFrontend
from tts_core.frontend.text_normalize import normalize_text, segment_text
from tts_core.frontend.tokenizer import TextTokenizer
from tts_core.model.loading import LoadedModels, load_models
from tts_core.model.model_dir import ModelDir, resolve_source, weights_digest
from tts_core.options import SynthesisOptions
from tts_core.results import GeneratedTokens, OneTimeWork, SynthesisResult, Timings
from tts_core.runtime import DtypeModels, ModelCopies
from tts_core.streaming.render import ChunkRenderer, DrawnExcitation, ExcitationSource, PromptTensors, vocode
from tts_core.streaming.session import StreamJob, SynthesisStream
from tts_core.warmup import (
    WARMUP_MAX_TOKENS,
    WARMUP_REQUESTS,
    WARMUP_TEXT_TOKENS,
    WarmupReport,
    warmup_prompt,
)

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class PipelineInfo:
    """What was loaded and where it runs (shown in the app and recorded by benchmarks)."""

    model_id: str
    model_hash: str  # short digest of llm/flow/hift weights
    model_dir: str
    device: str  # e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    random_weights: bool  # a random-weight model (demo/tests): the audio is not speech
    backend: str  # flow estimator backend of float32 ("torch", "torch-cudagraph", "tensorrt")
    llm_backend: str  # LLM decoder of float32 (each result records the one that ran for its dtype)
    dtypes: tuple[str, ...]  # dtypes that run on this device
    missing_frontend: tuple[str, ...]  # frontend files absent from the model dir


class Pipeline:
    """A loaded CosyVoice2 model. Thread-safe: calls are serialised on one device lock."""

    def __init__(
        self,
        md: ModelDir,
        models: LoadedModels,
        copies: ModelCopies,
        device: DeviceInfo,
        frontend: SpeechFrontend,
        tokenizer: TextTokenizer | None,
    ) -> None:
        self._md = md
        self._models = models
        self._copies = copies
        self._device = device
        self._frontend = frontend
        self._tokenizer = tokenizer
        self._lock = threading.RLock()
        # Pipeline.stream's LLM thread decodes on this stream (see StreamJob.llm_stream).
        self._llm_stream = torch.cuda.Stream(device.torch) if device.is_cuda else None
        runnable = tuple(d for d in ("float32", "float16", "bfloat16") if resolve_dtype(device, d)[1] is None)
        fp32 = copies.get("float32")
        self.info = PipelineInfo(
            model_id=md.model_id,
            model_hash=weights_digest(md),
            model_dir=str(md.root),
            device=device.label,
            random_weights=md.random_weights,
            backend=fp32.flow_backend.name,
            llm_backend=fp32.llm_backend,
            dtypes=runnable,
            missing_frontend=tuple(md.missing_frontend()),
        )

    # ------------------------------------------------------------------ prompt
    def prepare_prompt(
        self, audio: np.ndarray, sample_rate: int, transcript: str | None = None
    ) -> PromptFeatures:
        """Voice prompt audio (any rate, mono or (N, channels)) -> PromptFeatures.

        With a transcript: zero-shot mode (the LLM continues the prompt). Without: cross-lingual
        mode (the LLM gets no prompt text or prompt speech tokens; the flow still gets the voice).
        ValueError with a user-facing message for unusable audio.
        """
        transcript = (transcript or "").strip() or None
        text_tokens: list[int] = []
        if transcript is not None:
            text_tokens = self._require_tokenizer().encode(normalize_text(transcript))
        with self._lock:
            return self._frontend.prompt_features(
                np.asarray(audio), int(sample_rate), text_tokens, transcript
            )

    # ------------------------------------------------------------------ LLM
    def generate_tokens(
        self, text: str | Sequence[int], prompt: PromptFeatures, options: SynthesisOptions
    ) -> GeneratedTokens:
        """Text (or text token ids) -> speech tokens, one tensor per sentence segment."""
        segments_ids, texts = self._segment_text(text)
        dtype_ran, warning = resolve_dtype(self._device, options.dtype)
        if warning:
            log.warning(warning)
        zero_shot = prompt.mode == "zero_shot"
        prompt_text = prompt.text_tokens if zero_shot else torch.zeros(0, dtype=torch.long)
        prompt_speech = prompt.speech_tokens if zero_shot else torch.zeros(0, dtype=torch.long)
        dev = self._device.torch
        generator = torch.Generator(device=dev).manual_seed(options.seed)
        text_ids = [torch.tensor(ids, dtype=torch.long) for ids in segments_ids]
        with self._lock:
            # One-time work (a dtype copy, decoder compilation and graph capture) first, timed
            # apart: the LLM time shows what decoding costs when warm.
            one_time = [self._copies.ensure(dtype_ran)]
            models = self._copies.get(dtype_ran)
            one_time += [models.prepare_llm(ids, prompt_text, prompt_speech, options) for ids in text_ids]
            synchronize(dev)
            start = time.perf_counter()
            out = []
            for ids in text_ids:
                tokens = models.generate(
                    ids,
                    prompt_text,
                    prompt_speech,
                    options,
                    generator,
                    stop_check_every=self._device.stop_check_every,
                )
                out.append(tokens.cpu())
            synchronize(dev)
            seconds = time.perf_counter() - start
        return GeneratedTokens(
            tuple(out),
            texts,
            seconds,
            dtype_ran,
            options,
            models.llm_backend,
            one_time=tuple(w for w in one_time if w is not None),
        )

    def _segment_text(self, text: str | Sequence[int]) -> tuple[list[list[int]], tuple[str, ...]]:
        if not isinstance(text, str):
            ids = [int(i) for i in text]
            if not ids:
                raise ValueError("no text token ids given")
            return [ids], ("",)
        stripped = text.strip()
        if not stripped:
            raise ValueError("the text is empty: type something to synthesise")
        if len(stripped) > MAX_TEXT_CHARS:
            raise ValueError(
                f"the text has {len(stripped)} characters; the limit is {MAX_TEXT_CHARS} "
                "(split it into several requests)"
            )
        return segment_text(stripped, self._require_tokenizer().encode)

    # ------------------------------------------------------------------ flow + vocoder
    def tokens_to_audio(
        self,
        tokens: GeneratedTokens | torch.Tensor | Sequence[torch.Tensor],
        prompt: PromptFeatures,
        options: SynthesisOptions,
        excitation: ExcitationSource | None = None,
    ) -> SynthesisResult:
        """Render speech tokens with the flow settings of ``options`` (flow_steps, dtype, speed,
        streaming).

        Render the same ``GeneratedTokens`` twice with different options to compare flow settings
        on identical tokens. The result's LLM time is that of ``tokens`` when it is GeneratedTokens.
        ``options.streaming`` renders them chunk by chunk as the official streaming path does
        (:mod:`tts_core.streaming.schedule`) and lists the chunks in ``result.stream``.
        ``excitation``: a test seam; the vocoder's excitation per vocoder call (e.g. a
        :class:`~tts_core.streaming.render.RecordedExcitation` of the official run) instead of fresh
        draws seeded by ``options.seed``.
        """
        segments, llm_seconds, warnings = self._token_segments(tokens)
        llm_backend = tokens.llm_backend if isinstance(tokens, GeneratedTokens) else "none"
        dtype_ran, warning = resolve_dtype(self._device, options.dtype)
        if warning:
            warnings.append(warning)
            log.warning(warning)
        one_time = list(tokens.one_time) if isinstance(tokens, GeneratedTokens) else []
        if options.streaming:
            llm = (llm_seconds, llm_backend)
            return self._stream_tokens(
                segments, prompt, options, excitation, dtype_ran, llm, warnings, one_time
            )
        dev = self._device.torch
        p_tokens = prompt.speech_tokens.to(dev).unsqueeze(0)
        p_mel = prompt.mel.to(dev).unsqueeze(0)
        p_emb = prompt.embedding.to(dev).unsqueeze(0)
        if excitation is None:
            generator = torch.Generator(device=dev).manual_seed(options.seed)
            excitation = DrawnExcitation(self._models.hift, generator)
        mels, audio = [], []
        flow_s = vocoder_s = 0.0
        with self._lock:
            one_time.append(self._copies.ensure(dtype_ran))
            models = self._copies.get(dtype_ran)
            flow, backend = models.flow, models.flow_backend
            for index, seg in enumerate(segments):
                # A graph capture for a new length or step count is paid here, outside the timing.
                one_time.append(backend.prepare(p_tokens.shape[1] + seg.numel(), options.flow_steps))
                synchronize(dev)
                t0 = time.perf_counter()
                mel = backend.run_flow(
                    flow, seg.to(dev).unsqueeze(0), p_tokens, p_mel, p_emb, options.flow_steps
                )
                if options.speed != 1.0:
                    new_len = max(1, int(mel.shape[-1] / options.speed))
                    mel = F.interpolate(mel, size=new_len, mode="linear")
                synchronize(dev)
                t1 = time.perf_counter()
                with tf32_convolutions(self._device):
                    wav = vocode(self._models.hift, mel.float(), excitation, index)
                synchronize(dev)
                t2 = time.perf_counter()
                flow_s += t1 - t0
                vocoder_s += t2 - t1
                mels.append(mel[0].float().cpu())
                audio.append(wav[0].float().cpu().numpy())
        return SynthesisResult(
            audio=np.concatenate(audio).astype(np.float32),
            mel=torch.cat(mels, dim=-1),
            speech_tokens=tuple(segments),
            timings=Timings(llm=llm_seconds, flow=flow_s, vocoder=vocoder_s),
            options=options,
            dtype_ran=dtype_ran,
            backend=backend.name,
            llm_backend=llm_backend,
            device=self._device.label,
            warnings=tuple(warnings),
            one_time=tuple(w for w in one_time if w is not None),
        )

    def _stream_tokens(
        self,
        segments: list[torch.Tensor],
        prompt: PromptFeatures,
        options: SynthesisOptions,
        excitation: ExcitationSource | None,
        dtype_ran: str,
        llm: tuple[float, str],
        warnings: list[str],
        one_time: list[OneTimeWork | None],
    ) -> SynthesisResult:
        """``tokens_to_audio`` with ``options.streaming``: every call of the schedule, in order.

        llm: (seconds, decoder) of the LLM run that made the tokens; one_time: what it paid.
        """
        with self._lock:
            one_time.append(self._copies.ensure(dtype_ran))
            models = self._copies.get(dtype_ran)
            synchronize(self._device.torch)
            start = time.perf_counter()
            renderer = self._renderer(models, prompt, options, excitation, start)
            renderer.render_tokens(segments)
            wall = time.perf_counter() - start
        return renderer.result(
            speech_tokens=tuple(segments),
            options=options,
            dtype_ran=dtype_ran,
            llm=llm,
            warnings=tuple(warnings),
            wall_seconds=llm[0] + wall,
            llm_overlapped=False,
            one_time=tuple(w for w in one_time if w is not None),
        )

    def _renderer(
        self,
        models: DtypeModels,
        prompt: PromptFeatures,
        options: SynthesisOptions,
        excitation: ExcitationSource | None,
        request_start: float,
    ) -> ChunkRenderer:
        dev = self._device.torch
        if excitation is None:
            generator = torch.Generator(device=dev).manual_seed(options.seed)
            excitation = DrawnExcitation(self._models.hift, generator)
        return ChunkRenderer(
            models.flow,
            models.flow_backend,
            models.chunk_backend,
            self._models.hift,
            self._device,
            PromptTensors.of(prompt, dev),
            options.flow_steps,
            excitation,
            request_start,
        )

    def _token_segments(self, tokens) -> tuple[list[torch.Tensor], float, list[str]]:
        warnings: list[str] = []
        llm_seconds = 0.0
        if isinstance(tokens, GeneratedTokens):
            segments = list(tokens.segments)
            llm_seconds = tokens.llm_seconds
            if tokens.dtype_ran != tokens.options.dtype:
                warnings.append(f"the LLM ran in {tokens.dtype_ran}, not {tokens.options.dtype}")
        elif isinstance(tokens, torch.Tensor):
            segments = [tokens]
        else:
            segments = [torch.as_tensor(t) for t in tokens]
        segments = [s.reshape(-1).long().cpu() for s in segments]
        segments = [s for s in segments if s.numel() > 0]
        if not segments:
            raise ValueError("the LLM produced no speech tokens for this text; try another seed or text")
        size = self._models.flow_vocab_size
        for s in segments:
            if int(s.min()) < 0 or int(s.max()) >= size:
                raise ValueError(f"speech tokens must be in [0, {size})")
        return segments, llm_seconds, warnings

    # ------------------------------------------------------------------ end to end
    def synthesize(
        self,
        text: str | Sequence[int],
        prompt: PromptFeatures,
        options: SynthesisOptions,
        progress: Progress | None = None,
    ) -> SynthesisResult:
        """Text -> audio with one set of options (LLM and flow in ``options.dtype``).

        With ``options.streaming`` this is :meth:`stream` run to the end: the result records the
        chunks and the first-chunk latency of a real stream (the LLM decoding while chunks render).
        """
        if options.streaming:
            stream = self.stream(text, prompt, options)
            for number, _ in enumerate(stream, start=1):
                if progress:  # the total is not known until the LLM stops
                    progress(0.5, f"streamed {number} chunk{'s' if number > 1 else ''}")
            if progress:
                progress(1.0, "done")
            return stream.result
        if progress:
            progress(0.0, "generating speech tokens")
        tokens = self.generate_tokens(text, prompt, options)
        if progress:
            progress(0.6, "rendering audio")
        result = self.tokens_to_audio(tokens, prompt, options)
        if progress:
            progress(1.0, "done")
        return result

    def stream(
        self, text: str | Sequence[int], prompt: PromptFeatures, options: SynthesisOptions
    ) -> SynthesisStream:
        """Text -> audio chunks as they are ready, while the LLM keeps decoding.

        ``options.streaming`` must be True. Iterate over the returned stream for
        :class:`~tts_core.streaming.session.AudioChunk` items, then read ``stream.result``: the stitched
        audio (the same as ``tokens_to_audio`` of the same tokens with these options), the chunks,
        ``first_chunk_latency`` (request start -> first chunk on the host, device synchronised) and
        ``stream.chunk_intervals``. Text problems raise ValueError here, before any work.
        """
        if not options.streaming:
            raise ValueError("stream() renders streamed audio: pass options with streaming=True")
        segments_ids, _ = self._segment_text(text)
        dtype_ran, warning = resolve_dtype(self._device, options.dtype)
        if warning:
            log.warning(warning)
        with self._lock:
            copy_work = self._copies.ensure(dtype_ran)
            models = self._copies.get(dtype_ran)
        job = StreamJob(
            segments=tuple(segments_ids),
            prompt=prompt,
            options=options,
            dtype_ran=dtype_ran,
            models=models,
            make_renderer=partial(self._renderer, models, prompt, options, None),
            device=self._device,
            llm_stream=self._llm_stream,
            lock=self._lock,
            warnings=(warning,) if warning else (),
            one_time=(copy_work,) if copy_work is not None else (),
        )
        return SynthesisStream(job)

    def warmup(
        self,
        configs: Sequence[ConfigId],
        max_tokens: int = WARMUP_MAX_TOKENS,
        progress: Progress | None = None,
    ) -> WarmupReport:
        """Pay every one-time cost the listed configurations will meet, now, before serving.

        Per dtype: the dtype copy, the LLM decoder's compilation and graph capture for the KV
        capacities of WARMUP_TEXT_TOKENS, the vocoder's kernels; per configuration: the flow graph
        of every length bucket up to ``max_tokens`` (prompt + new tokens), and for a streaming
        configuration the chunk graphs of those buckets too. A request beyond that is prepared on
        first use, and its one-time work is reported apart from its timings.
        """
        dev = self._device.torch
        held_before = torch.cuda.memory_reserved(dev) if self._device.is_cuda else 0
        start = time.perf_counter()
        prompt = warmup_prompt()
        work: list[OneTimeWork] = []
        dtypes = list(dict.fromkeys(c.dtype for c in configs))
        for i, config in enumerate(configs):
            if progress:
                progress(i / max(1, len(configs)), f"warming up {config.label}")
            if config.dtype in dtypes:  # first configuration of its dtype: the LLM and the vocoder
                dtypes.remove(config.dtype)
                work += self._warm_llm_and_vocoder(config, prompt)
            dtype_ran, _ = resolve_dtype(self._device, config.dtype)
            copy_ = self._copies.get(dtype_ran)
            with self._lock:
                work += [copy_.flow_backend.prepare(n, config.flow_steps) for n in range(1, max_tokens + 1)]
                if config.streaming:  # chunk calls hold 3 look-ahead tokens, so they have more than 3
                    chunked = copy_.chunk_backend
                    work += [chunked.prepare_chunk(n, config.flow_steps) for n in range(4, max_tokens + 1)]
        synchronize(dev)
        held_after = torch.cuda.memory_reserved(dev) if self._device.is_cuda else 0
        return WarmupReport(
            seconds=time.perf_counter() - start,
            work=tuple(w for w in work if w is not None),
            device_memory_mb=(held_after - held_before) / 2**20,
        )

    def _warm_llm_and_vocoder(self, config: ConfigId, prompt: PromptFeatures) -> list[OneTimeWork | None]:
        """Decoder states for the KV capacities of WARMUP_TEXT_TOKENS, and whole requests at the
        lengths of WARMUP_REQUESTS: first kernel launches, per-shape cuBLAS/cuDNN plans of the
        prefill and the vocoder are paid here, not by the first listener."""
        work: list[OneTimeWork | None] = []
        for n_text, n_tokens in WARMUP_REQUESTS:
            options = SynthesisOptions(fixed_tokens=n_tokens).with_config(config)
            result = self.synthesize(list(range(1, 1 + n_text)), prompt, options)
            work += result.one_time
        models = self._copies.get(result.dtype_ran)
        natural = SynthesisOptions().with_config(config)  # stops by itself: the real capacities
        with self._lock:
            for n_text in WARMUP_TEXT_TOKENS:
                ids = torch.ones(n_text, dtype=torch.long)
                work.append(models.prepare_llm(ids, prompt.text_tokens, prompt.speech_tokens, natural))
        return work

    # ------------------------------------------------------------------ internals
    def _require_tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            raise RuntimeError(
                f"{self._md.root}/CosyVoice-BlankEN has no tokenizer files (vocab.json + merges.txt); "
                "text input needs them: use a complete model directory, or pass token ids"
            )
        return self._tokenizer


def load_pipeline(
    source: str | os.PathLike[str],
    *,
    device: str | None = None,
    backend: str = "auto",
    llm_backend: str = "auto",
    require_frontend: bool = False,
    preload_dtypes: Sequence[str] = (),
) -> Pipeline:
    """Load a CosyVoice2 model once.

    source: an official-layout model directory, or a ModelScope id (``iic/CosyVoice2-0.5B``),
        downloaded into the ModelScope cache on first use.
    device: "cpu", "cuda", "cuda:1" ...; default CUDA when available.
    backend: flow estimator backend: "auto" (TensorRT when it imports on CUDA, else CUDA graphs on
        CUDA, else plain torch), "torch", "torch-cudagraph" or "tensorrt".
    llm_backend: "auto" (on CUDA: fused Triton kernels in CUDA graphs for float16/bfloat16 when
        Triton imports, the compiled torch step in CUDA graphs for float32; eager on CPU), "eager",
        "cuda-graph", "cuda-graph-compiled" or "cuda-graph-triton".
    require_frontend: raise when speech_tokenizer_v2.onnx / campplus.onnx / tokenizer files are
        missing. Otherwise a directory without them still loads (token-level work, parity tests)
        and the methods that need them raise an error naming the file.
    preload_dtypes: dtypes whose weight copies (and fast paths) are made now, not on first use.
    """
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    md = resolve_source(source)
    missing = md.missing_frontend()
    if missing:
        if require_frontend:
            raise ValueError(f"{md.root} lacks frontend files: {', '.join(missing)}")
        log.warning(
            "%s lacks %s: prompts must be given as PromptFeatures arrays", md.root, ", ".join(missing)
        )
    dev = resolve_device(device)
    models = load_models(md, dev.torch)
    copies = ModelCopies(models, dev, backend, llm_backend, md.estimator_onnx)
    frontend = SpeechFrontend(md.speech_tokenizer, md.campplus, dev.torch)
    tokenizer = TextTokenizer.from_dir(md.tokenizer_dir) if md.tokenizer_dir is not None else None
    pipe = Pipeline(md, models, copies, dev, frontend, tokenizer)
    for name in preload_dtypes:
        copies.get(resolve_dtype(dev, name)[0])
    return pipe
