"""What :meth:`tts_core.pipeline.Pipeline.warmup` prepares, and its report."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tts_core.constants import N_MELS, SPEAKER_EMBEDDING_DIM
from tts_core.frontend.prompt import PromptFeatures
from tts_core.results import OneTimeWork

WARMUP_PROMPT_TOKENS = 75  # 3 s of prompt speech
WARMUP_PROMPT_TEXT_TOKENS = 12
# (text tokens, speech tokens) of the whole requests warm-up runs per dtype (output discarded):
# 2, 10 and 20 s of audio, so the prefill and the vocoder have met short and long inputs.
WARMUP_REQUESTS = ((8, 50), (32, 250), (96, 500))
# Text lengths whose decode states warm-up builds: with the default token ratios they need the KV
# capacities 1024 and 4096 of llm_static.CAPACITY_LADDER (a sentence up to ~180 text tokens).
WARMUP_TEXT_TOKENS = (4, 180)
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
