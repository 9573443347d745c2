"""What :meth:`tts_core.pipeline.Pipeline.warmup` prepares, how (``WarmupSteps``), and its report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tts_core.config_id import ConfigId
from tts_core.constants import N_MELS, SPEAKER_EMBEDDING_DIM
from tts_core.devices import DeviceInfo, resolve_dtype, synchronize
from tts_core.frontend.prompt import PromptFeatures
from tts_core.options import SynthesisOptions
from tts_core.results import OneTimeWork, SynthesisResult
from tts_core.runtime import ModelCopies

WARMUP_PROMPT_TOKENS = 75  # 3 s of prompt speech
WARMUP_PROMPT_TEXT_TOKENS = 12
# (text tokens, speech tokens) of the whole requests warm-up runs per dtype (output discarded):
# 2, 10 and 20 s of audio, so the prefill and the vocoder have met short and long inputs.
WARMUP_REQUESTS = ((8, 50), (32, 250), (96, 500))
# Text lengths whose decode states warm-up builds: with the default token ratios they need the KV
# capacities 1024 and 4096 of tts_core.llm.decode_state.CAPACITY_LADDER (a sentence up to ~180 text tokens).
WARMUP_TEXT_TOKENS = (4, 180)
# For streamed configurations, LLM prefill graphs of every length bucket up to this many positions
# (sos + prompt text + text + task + prompt speech: a 10 s prompt and a long sentence) in the decode
# states of WARMUP_KV_CAPACITIES, so that no streamed request pays a capture before its first chunk.
WARMUP_PREFILL_POSITIONS = 512
WARMUP_KV_CAPACITIES = (1024, 4096)
# Flow graphs are captured at warm-up for prompt + new tokens up to this (41 s of mel: a 15 s
# prompt and a 26 s sentence); a longer input is captured on first use, reported as one-time work.
WARMUP_MAX_TOKENS = 1024


@dataclass(frozen=True)
class WarmupReport:
    """What :meth:`Pipeline.warmup` did and what it holds."""

    seconds: float  # wall clock of the whole warm-up
    work: tuple[OneTimeWork, ...]  # each piece of one-time work it paid
    device_memory_mb: float  # GPU memory reserved by it (0 on a CPU)

    def summary(self) -> str:
        graphs = sum(w.what.startswith("flow graph") for w in self.work)
        return (
            f"warm-up {self.seconds:.1f} s: {graphs} flow graphs, {len(self.work) - graphs} other one-time "
            f"steps; holds {self.device_memory_mb:.0f} MB of GPU memory"
        )


def warmup_prompt() -> PromptFeatures:
    """A zero-shot prompt of about 3 s, like the app's (text tokens and speech tokens)."""
    return PromptFeatures.from_arrays(
        torch.ones(WARMUP_PROMPT_TEXT_TOKENS, dtype=torch.long),
        torch.zeros(WARMUP_PROMPT_TOKENS, dtype=torch.long),
        torch.zeros(2 * WARMUP_PROMPT_TOKENS, N_MELS),
        torch.ones(SPEAKER_EMBEDDING_DIM),
    )


# (text or token ids, prompt, options) -> the result, as Pipeline.synthesize
Synthesize = Callable[[Sequence[int], PromptFeatures, SynthesisOptions], SynthesisResult]


@dataclass(frozen=True)
class WarmupSteps:
    """What :meth:`tts_core.pipeline.Pipeline.warmup` runs, over the pipeline's dtype copies."""

    copies: ModelCopies
    device: DeviceInfo
    lock: threading.RLock  # the pipeline's device lock
    synthesize: Synthesize

    def run(
        self,
        configs: Sequence[ConfigId],
        max_tokens: int,
        progress: Callable[[float, str], None] | None,
    ) -> WarmupReport:
        dev = self.device.torch
        held_before = torch.cuda.memory_reserved(dev) if self.device.is_cuda else 0
        start = time.perf_counter()
        prompt = warmup_prompt()
        work: list[OneTimeWork | None] = []
        dtypes = list(dict.fromkeys(c.dtype for c in configs))
        for i, config in enumerate(configs):
            if progress:
                progress(i / max(1, len(configs)), f"warming up {config.label}")
            if config.dtype in dtypes:  # first configuration of its dtype: the LLM and the vocoder
                dtypes.remove(config.dtype)
                work += self._llm_and_vocoder(config, prompt)
                if any(c.streaming and c.dtype == config.dtype for c in configs):
                    work.append(self._prefills(config))
            copy_ = self.copies.get(resolve_dtype(self.device, config.dtype)[0])
            with self.lock:
                work += [copy_.flow_backend.prepare(n, config.flow_steps) for n in range(1, max_tokens + 1)]
                if config.streaming:  # chunk calls hold 3 look-ahead tokens, so they have more than 3
                    chunked = copy_.chunk_backend
                    work += [chunked.prepare_chunk(n, config.flow_steps) for n in range(4, max_tokens + 1)]
        synchronize(dev)
        held_after = torch.cuda.memory_reserved(dev) if self.device.is_cuda else 0
        return WarmupReport(
            seconds=time.perf_counter() - start,
            work=tuple(w for w in work if w is not None),
            device_memory_mb=(held_after - held_before) / 2**20,
        )

    def _llm_and_vocoder(self, config: ConfigId, prompt: PromptFeatures) -> list[OneTimeWork | None]:
        """Decoder states for the KV capacities of WARMUP_TEXT_TOKENS, and whole requests at the
        lengths of WARMUP_REQUESTS: first kernel launches, per-shape cuBLAS/cuDNN plans of the
        prefill and the vocoder are paid here, not by the first listener."""
        work: list[OneTimeWork | None] = []
        for n_text, n_tokens in WARMUP_REQUESTS:
            options = SynthesisOptions(fixed_tokens=n_tokens).with_config(config)
            result = self.synthesize(list(range(1, 1 + n_text)), prompt, options)
            work += result.one_time
        models = self.copies.get(result.dtype_ran)
        natural = SynthesisOptions().with_config(config)  # stops by itself: the real capacities
        with self.lock:
            for n_text in WARMUP_TEXT_TOKENS:
                ids = torch.ones(n_text, dtype=torch.long)
                work.append(models.prepare_llm(ids, prompt.text_tokens, prompt.speech_tokens, natural))
        return work

    def _prefills(self, config: ConfigId) -> OneTimeWork | None:
        """The LLM prefill graphs a streamed request of ``config``'s dtype replays before its first chunk."""
        models = self.copies.get(resolve_dtype(self.device, config.dtype)[0])
        options = SynthesisOptions().with_config(config)
        with self.lock:
            return models.prepare_prefills(options, WARMUP_KV_CAPACITIES, WARMUP_PREFILL_POSITIONS)
