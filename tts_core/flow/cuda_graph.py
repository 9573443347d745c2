"""The "torch-cudagraph" flow backend: encoder + every Euler step replayed as one CUDA graph.

At batch 1 eager PyTorch is bound by kernel launches: the encoder is a few hundred small
kernels, each estimator step about a thousand. Capturing the encoder, all ``n_steps`` estimator
calls (classifier-free guidance batched as two rows) and the Euler updates into one graph leaves
one launch per utterance and no host work between steps, so the flow time scales with n_steps.

A graph has fixed shapes, utterances do not. Inputs are right-padded to a token bucket
(:func:`bucket_tokens`: multiples of 32 tokens, at most 1/8 padding beyond 256 tokens) and a
length tensor inside the graph hides the padding, so the real frames get the values of an
unpadded run up to float rounding:
* encoder: the padded token rows are zeroed before the look-ahead conv (it reads three tokens
  ahead, and an unpadded run sees zeros past the end there), and attention ignores padded keys;
  everything else is per frame or a causal conv;
* estimator: ``key_padding=True`` hides padded frames from attention (the official code always
  masks keys this way); its convs are causal, so later (padded) frames never reach real ones.
Streaming (:mod:`tts_core.streaming.schedule`) adds a second kind of graph, ``run_chunk``: a non-final
streaming call, with chunk attention masks in encoder and estimator and the last 3 real tokens
as look-ahead context only (they feed the look-ahead conv, the masks hide them like padding).
The final streaming call is an ordinary ``run_flow``, as officially.
Graphs are cached per (bucket, n_steps, dtype, chunk or not), least recently used first out; they
share one memory pool, so memory grows with the largest graph, not with their number.

Measured (H100 80GB, torch 2.11, full-size random flow, 100 prompt + 250 new tokens -> bucket 352,
TF32 off): flow n5 / n10 = fp32 93 / 182 ms (eager 96 / 185), bf16 28.2 / 54.5 ms (eager 106 /
244), fp16 28.4 / 54.4 ms (eager 114 / 225); n5/n10 = 0.51-0.52; mel bit-identical to the eager
flow in all three dtypes (also at 1500 tokens); capture 0.55-1.3 s per graph (warm-up run included).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_core.flow.backends import EstimatorBackend, TorchEstimator
from tts_core.flow.conformer import PRE_LOOKAHEAD_LEN, UPSAMPLE_STRIDE, chunk_attention_mask
from tts_core.flow.model import FlowModel
from tts_core.results import OneTimeWork

log = logging.getLogger(__name__)

MIN_BUCKET_TOKENS = 32  # bucket quantum for short inputs (64 mel frames)
BUCKET_PADDING_BITS = 3  # beyond 8 quanta, quantum = 2^(bits(n)-1-3): padding < 1/8 of the length
# Captured graphs kept per backend (each holds its static buffers and a few MB of graph state):
# enough for the app's warm-up of every bucket up to WARMUP_MAX_TOKENS at three step counts;
# streaming adds about one chunk graph per call of a request (per step count).
DEFAULT_MAX_GRAPHS = 128

K = TypeVar("K")
V = TypeVar("V")


def bucket_tokens(n_tokens: int, limit: int) -> int:
    """Padded token count for ``n_tokens`` real tokens (prompt + new), capped at ``limit``.

    Multiples of 32 up to 511 tokens, then of 2^(floor(log2 n) - 3): 512-1023 -> 64, 1024-2047
    -> 128, ... so padding stays under 32 tokens or 1/8 of the length; about 50 buckets cover
    7500 tokens (the 15000-frame noise).
    """
    if n_tokens < 1 or n_tokens > limit:
        raise ValueError(f"n_tokens must be in 1..{limit}, got {n_tokens}")
    quantum = max(MIN_BUCKET_TOKENS, 1 << max(0, n_tokens.bit_length() - 1 - BUCKET_PADDING_BITS))
    return min(-(-n_tokens // quantum) * quantum, limit)


class LruCache(Generic[K, V]):
    """At most ``max_items`` entries; ``get`` marks an entry used, ``put`` drops the stalest."""

    def __init__(self, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> list[K]:
        """Insert (or refresh) ``key``; returns the keys evicted to stay within max_items."""
        self._items[key] = value
        self._items.move_to_end(key)
        evicted = []
        while len(self._items) > self.max_items:
            evicted.append(self._items.popitem(last=False)[0])
        return evicted

    def keys(self) -> list[K]:
        """Oldest first."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


def encode_padded(
    flow: FlowModel, tokens: Tensor, n_tokens: Tensor, chunk: bool = False
) -> tuple[Tensor, Tensor]:
    """Right-padded flow encoder.

    tokens (1, Lb) int64, valid in the first ``n_tokens`` positions; n_tokens (1,) int64 on the
    same device -> (mu (1, 80, ratio*Lb) in the compute dtype, frame_valid (1, ratio*Lb) bool).
    ``chunk``: a non-final streaming call: the last PRE_LOOKAHEAD_LEN of the n_tokens are
    look-ahead context (no frames of their own) and attention keeps to chunks, as
    ``flow.inference(streaming=True, lookahead=True)``. Mirrors ``UpsampleConformerEncoder.forward``
    with key masks; no host sync, so it can be captured.
    """
    enc = flow.encoder
    ratio = flow.cfg.token_mel_ratio
    length = tokens.shape[1]
    n_real = n_tokens - PRE_LOOKAHEAD_LEN if chunk else n_tokens  # tokens that get frames
    positions = torch.arange(ratio * length, device=tokens.device)
    token_valid = positions[None, :length] < n_real[:, None]  # (1, Lb)
    frame_valid = positions[None, :] < ratio * n_real[:, None]  # (1, ratio*Lb)
    conv_input_valid = positions[None, :length] < n_tokens[:, None]  # real tokens + look-ahead

    xs, pos_emb = enc.embed(flow.input_embedding(tokens.clamp(min=0)))
    # NOTE: the look-ahead conv reads the next tokens; past the end an unpadded run sees zeros
    # (or, in a chunk call, the look-ahead context, which sits right after the real tokens).
    xs = enc.pre_lookahead_layer(xs * conv_input_valid[:, :, None].to(xs.dtype))
    keys = token_valid[:, None, None, :]  # (1, 1, 1, Lb): broadcast over heads and queries
    if chunk:
        keys = keys & chunk_attention_mask(length, enc.static_chunk_size, tokens.device)
    for layer in enc.encoders:
        xs = layer(xs, pos_emb, keys)
    xs = enc.up_layer(xs.transpose(1, 2)).transpose(1, 2)
    xs, pos_emb = enc.up_embed(xs)
    keys = frame_valid[:, None, None, :]
    if chunk:
        keys = keys & chunk_attention_mask(
            ratio * length, enc.static_chunk_size * UPSAMPLE_STRIDE, tokens.device
        )
    for layer in enc.up_encoders:
        xs = layer(xs, pos_emb, keys)
    mu = flow.encoder_proj(enc.after_norm(xs)).transpose(1, 2).contiguous()
    return mu, frame_valid


def padded_flow_mel(
    flow: FlowModel,
    tokens: Tensor,
    n_tokens: Tensor,
    cond: Tensor,
    embedding: Tensor,
    n_steps: int,
    estimator: EstimatorBackend,
    chunk: bool = False,
) -> Tensor:
    """The whole flow on right-padded inputs, with no host sync (what a graph captures).

    tokens (1, Lb) int64 (prompt ++ new, then padding); n_tokens (1,) int64; cond (1, 80,
    ratio*Lb) prompt mel in the first frames, zeros after; embedding (1, 192); all on the flow's
    device, cond/embedding in its dtype. ``estimator`` must mask padded keys (and, with ``chunk``,
    apply the streaming chunk masks). Returns x at t=1 (1, 80, ratio*Lb) in the compute dtype;
    frames from ratio*n_tokens on (ratio*(n_tokens - 3) with ``chunk``) are padding.
    """
    mu, frame_valid = encode_padded(flow, tokens, n_tokens, chunk)
    mask = frame_valid[:, None, :].to(mu.dtype)
    spks = flow.spk_embed_affine_layer(F.normalize(embedding, dim=1))
    return flow.decoder.solve(mu, mask, spks, cond, n_steps, estimator)


@dataclass(frozen=True)
class CaptureRecord:
    """One graph capture: what it cost (warm-up run + capture + instantiation, wall clock)."""

    bucket_tokens: int
    n_steps: int
    dtype: str
    seconds: float
    chunk: bool = False  # a streaming chunk graph (chunk masks, look-ahead context)

    def as_work(self) -> OneTimeWork:
        kind = "streaming chunk " if self.chunk else ""
        return OneTimeWork(
            f"flow graph capture: {kind}{self.bucket_tokens} tokens x {self.n_steps} steps ({self.dtype})",
            self.seconds,
        )


@dataclass
class _CapturedFlow:
    """A graph and its static buffers: write the inputs, replay, read ``mel``."""

    graph: torch.cuda.CUDAGraph
    tokens: Tensor  # (1, Lb) int64
    n_tokens: Tensor  # (1,) int64
    cond: Tensor  # (1, 80, ratio*Lb) compute dtype
    embedding: Tensor  # (1, spk_embed_dim) compute dtype
    mel: Tensor  # (1, 80, ratio*Lb) compute dtype, written by each replay


class CudaGraphFlow:
    """The "torch-cudagraph" :class:`~tts_core.flow.backends.FlowBackend` for one CUDA flow.

    ``run_flow`` is the fast path (one graph replay per utterance; the first call for a new
    (bucket, n_steps, dtype) captures a graph, see ``captures``); ``run_chunk`` is the same for a
    non-final streaming call. ``__call__`` evaluates the estimator eagerly, for callers that
    drive the solver themselves. Calls are serialised: the static buffers of a graph serve one
    utterance at a time.
    """

    name = "torch-cudagraph"

    def __init__(self, flow: FlowModel, max_graphs: int = DEFAULT_MAX_GRAPHS) -> None:
        if flow.device.type != "cuda":
            raise ValueError(f"torch-cudagraph needs a flow on a CUDA device, this one is on {flow.device}")
        self.flow = flow
        self._step = TorchEstimator(flow.decoder.estimator, key_padding=True)
        self._chunk_step = TorchEstimator(flow.decoder.estimator, streaming=True, key_padding=True)
        self._graphs: LruCache[tuple[int, int, torch.dtype, bool], _CapturedFlow] = LruCache(max_graphs)
        self._pool: tuple[int, int] | None = None  # memory pool shared by all graphs (made at first capture)
        self._lock = threading.Lock()
        self.captures: list[CaptureRecord] = []

    def __call__(self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor) -> Tensor:
        return self._step(x, mask, mu, t, spks, cond)

    def graph_keys(self) -> list[tuple[int, int, torch.dtype, bool]]:
        """(bucket tokens, n_steps, dtype, chunk) of the cached graphs, least recently used first."""
        return self._graphs.keys()

    def run_flow(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor:
        """Same contract as ``flow.inference`` (non-streaming): -> (1, 80, ratio*L) float32."""
        return self._run(flow, tokens, prompt_tokens, prompt_mel, embedding, n_steps, chunk=False)

    def run_chunk(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor:
        """Same as ``flow.inference(..., streaming=True, lookahead=True)``: a non-final streaming
        call; the last 3 of ``tokens`` are look-ahead -> (1, 80, ratio*(L - 3)) float32."""
        if tokens.shape[1] <= PRE_LOOKAHEAD_LEN:
            raise ValueError(f"a chunk call needs more than {PRE_LOOKAHEAD_LEN} new tokens")
        return self._run(flow, tokens, prompt_tokens, prompt_mel, embedding, n_steps, chunk=True)

    @torch.inference_mode()
    def _run(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
        chunk: bool,
    ) -> Tensor:
        if flow is not self.flow:
            raise ValueError("this CudaGraphFlow was made for another FlowModel (one backend per flow copy)")
        total = flow.check_inputs(tokens, prompt_tokens, prompt_mel, embedding, n_steps)
        ratio = flow.cfg.token_mel_ratio
        n_prompt, n_total = prompt_tokens.shape[1], total // ratio
        prompt_frames = ratio * n_prompt
        end = total - ratio * PRE_LOOKAHEAD_LEN if chunk else total  # frames with a mel of their own
        with self._lock:
            entry = self._graph_for(bucket_tokens(n_total, flow.max_frames() // ratio), n_steps, chunk)
            # Rewrite every static input in full: the buffers still hold the previous utterance.
            entry.tokens[:, :n_prompt].copy_(prompt_tokens)
            entry.tokens[:, n_prompt:n_total].copy_(tokens)
            entry.tokens[:, n_total:].zero_()
            entry.n_tokens.fill_(n_total)
            entry.cond.zero_()
            entry.cond[:, :, :prompt_frames].copy_(prompt_mel.transpose(1, 2))
            entry.embedding.copy_(embedding)
            entry.graph.replay()
            # NOTE: copy out before any other replay: graphs share a pool, so another graph's
            # intermediates may live where this one's output does.
            return entry.mel[:, :, prompt_frames:end].to(torch.float32, copy=True)

    @torch.inference_mode()
    def prepare(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        """Capture the graph that ``run_flow`` on ``n_total_tokens`` (prompt + new) needs, if missing."""
        return self._prepare(n_total_tokens, n_steps, chunk=False)

    def prepare_chunk(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        """Capture the graph that ``run_chunk`` on ``n_total_tokens`` (look-ahead included) needs."""
        return self._prepare(n_total_tokens, n_steps, chunk=True)

    @torch.inference_mode()
    def _prepare(self, n_total_tokens: int, n_steps: int, chunk: bool) -> OneTimeWork | None:
        limit = self.flow.max_frames() // self.flow.cfg.token_mel_ratio
        start = len(self.captures)
        with self._lock:
            self._graph_for(bucket_tokens(n_total_tokens, limit), n_steps, chunk)
        return self.captures[-1].as_work() if len(self.captures) > start else None

    @torch.inference_mode()
    def warmup(
        self, token_counts: Iterable[int], steps: Iterable[int], chunk: bool = False
    ) -> list[CaptureRecord]:
        """Capture the graphs for these utterance lengths (prompt + new tokens, look-ahead
        included for ``chunk`` graphs) and step counts now."""
        limit = self.flow.max_frames() // self.flow.cfg.token_mel_ratio
        start = len(self.captures)
        step_list = list(steps)
        with self._lock:
            for bucket in sorted({bucket_tokens(n, limit) for n in token_counts}):
                for n_steps in step_list:
                    self._graph_for(bucket, n_steps, chunk)
        return self.captures[start:]

    def _graph_for(self, bucket: int, n_steps: int, chunk: bool = False) -> _CapturedFlow:
        key = (bucket, n_steps, self.flow.compute_dtype, chunk)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(bucket, n_steps, chunk)
            for old in self._graphs.put(key, entry):
                log.info(
                    "torch-cudagraph: dropped the graph for %s (cache holds %d)", old, self._graphs.max_items
                )
        return entry

    def _capture(self, bucket: int, n_steps: int, chunk: bool) -> _CapturedFlow:
        flow = self.flow
        device, dtype = flow.device, flow.compute_dtype
        frames = flow.cfg.token_mel_ratio * bucket
        start = time.perf_counter()
        static = _CapturedFlow(
            graph=torch.cuda.CUDAGraph(),
            tokens=torch.zeros(1, bucket, dtype=torch.long, device=device),
            n_tokens=torch.full((1,), bucket, dtype=torch.long, device=device),
            cond=torch.zeros(1, flow.cfg.output_size, frames, dtype=dtype, device=device),
            embedding=torch.ones(1, flow.cfg.spk_embed_dim, dtype=dtype, device=device),
            mel=torch.empty(0, device=device),
        )

        step = self._chunk_step if chunk else self._step

        def run() -> Tensor:
            return padded_flow_mel(
                flow, static.tokens, static.n_tokens, static.cond, static.embedding, n_steps, step, chunk
            )

        # One eager run on a side stream first (as torch.cuda.graphs advises): lazy set-up such as
        # cuBLAS workspaces and kernel selection must not happen inside the capture.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        # NOTE: sharing one pool is safe because graphs never run concurrently, every replay
        # recomputes all intermediates from its own static inputs (allocated outside the pool),
        # and run_flow copies the output out before the next replay.
        with torch.cuda.graph(static.graph, pool=self._pool, capture_error_mode="thread_local"):
            static.mel = run()
        torch.cuda.synchronize(device)
        record = CaptureRecord(
            bucket, n_steps, str(dtype).removeprefix("torch."), time.perf_counter() - start, chunk
        )
        self.captures.append(record)
        log.info(
            "torch-cudagraph: captured %d tokens x %d steps (%s%s) in %.2f s",
            bucket,
            n_steps,
            record.dtype,
            ", chunk" if chunk else "",
            record.seconds,
        )
        return static
