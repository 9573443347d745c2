"""The fixed-shape state of the CUDA-graph decoder (tts_core/llm/static_decoder.py): KV capacities,
the per-step tensors, and the prefill graphs of each length bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from tts_core.llm.qwen2 import KVCache
from tts_core.llm.speech_lm import SpeechLM
from tts_core.lru import LruCache

# KV capacities (positions) a decoder is built for: few distinct shapes, so few compilations and
# graphs. Attention reads the whole capacity each step (masked), which costs little at these sizes.
CAPACITY_LADDER = (1024, 4096, 16384)
# Prefill graphs kept per decode state (LRU, one per length bucket); they share one memory pool,
# so each costs its (1, B, hidden) input and output buffers and the graph itself.
MAX_PREFILL_GRAPHS = 64
PREFILL_BUCKET = 16  # prefill graph lengths are multiples of this (padding costs < 16 positions)


def prefill_bucket(n_prefill: int) -> int:
    """The length of the prefill graph that serves ``n_prefill`` positions."""
    return -(-n_prefill // PREFILL_BUCKET) * PREFILL_BUCKET


# Decode steps per captured graph. Measured on an H100 (bf16, 250 tokens): 1.50 / 1.52 / 1.54 ms
# per token for 1 / 4 / 8 steps per graph: replay overhead is not what limits decoding.
STEPS_PER_GRAPH = 1


@dataclass
class PrefillGraph:
    """A captured prefill of one bucket length B: write the request's n <= B embeddings (zeros
    after them), replay; it fills the state's KV cache positions [0, B) and ``hidden``."""

    graph: torch.cuda.CUDAGraph
    embeds: Tensor  # (1, B, H) static input, in the weights' dtype
    hidden: Tensor  # (1, B, H) static output: the last layer's hidden state at every position

    def run(self, embeds: Tensor) -> Tensor:
        """Prefill ``embeds`` (1, n, H), n <= B -> the hidden state at position n - 1, (1, H)."""
        n = embeds.shape[1]
        self.embeds[:, :n].copy_(embeds)
        self.embeds[:, n:].zero_()
        self.graph.replay()
        return self.hidden[:, n - 1]


@dataclass
class DecodeState:
    """Every tensor one decode step reads or writes (fixed shapes; updated in place)."""

    cache: KVCache
    hidden: Tensor  # (1, H) last hidden state, input of the next step
    pos: Tensor  # (1,) int64 position of the token being fed
    step: Tensor  # (1,) int64 index of the token being sampled
    history: Tensor  # (win,) int64 last sampled tokens, -1 padded
    tokens: Tensor  # (capacity,) int64 sampled tokens
    uniforms: Tensor  # (capacity, 2) float32
    min_len: Tensor  # (1,) int64; before it, `early_mask` applies
    early_mask: Tensor  # (V,) float32, -inf on tokens forbidden before min_len
    top_p: Tensor  # (1,) float32
    tau_r: Tensor  # (1,) float32
    key_positions: Tensor  # (capacity,) int64 0..capacity-1
    inv_freq: Tensor  # (head_dim/2,) float32 rotary frequencies
    scores: Tensor  # (V,) float32 speech logits (written by the Triton step's head)
    graph: torch.cuda.CUDAGraph | None = None
    # prefill length -> its captured prefill into this state's cache and hidden (CUDA only)
    prefills: LruCache[int, PrefillGraph] = field(default_factory=lambda: LruCache(MAX_PREFILL_GRAPHS))

    @property
    def capacity(self) -> int:
        return self.tokens.shape[0]


def kv_capacity(n_prefill: int, max_len: int) -> int:
    """The smallest KV capacity of CAPACITY_LADDER for a request (ValueError when none fits)."""
    needed = n_prefill + max_len + STEPS_PER_GRAPH  # a last replay may run past max_len
    capacity = next((c for c in CAPACITY_LADDER if c >= needed), None)
    if capacity is None:
        raise ValueError(f"{needed} positions exceed the decoder's largest KV capacity {CAPACITY_LADDER[-1]}")
    return capacity


def new_state(lm: SpeechLM, capacity: int, win_size: int) -> DecodeState:
    w = lm.llm_decoder.weight
    dev, q = w.device, lm.cfg.qwen
    n_vocab = lm.cfg.speech_token_size + 3
    return DecodeState(
        cache=KVCache(q, capacity, w.dtype, dev),
        hidden=torch.zeros(1, q.hidden_size, dtype=w.dtype, device=dev),
        pos=torch.zeros(1, dtype=torch.long, device=dev),
        step=torch.zeros(1, dtype=torch.long, device=dev),
        history=torch.full((win_size,), -1, dtype=torch.long, device=dev),
        tokens=torch.full((capacity,), -1, dtype=torch.long, device=dev),
        uniforms=torch.zeros(capacity, 2, device=dev),
        min_len=torch.zeros(1, dtype=torch.long, device=dev),
        early_mask=torch.zeros(n_vocab, device=dev),
        top_p=torch.zeros(1, device=dev),
        tau_r=torch.zeros(1, device=dev),
        key_positions=torch.arange(capacity, device=dev),
        inv_freq=1.0 / (q.rope_theta ** (torch.arange(0, q.head_dim, 2, device=dev).float() / q.head_dim)),
        scores=torch.zeros(n_vocab, device=dev),
    )
