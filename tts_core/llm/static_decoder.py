"""Fast speech-LM decoding: fixed-shape decode steps replayed as one CUDA graph per token.

At batch 1 the eager decoder is bound by Python and kernel launches (the official code: about
20 ms per token on an H100). Here one decode step (sampling included) is written with fixed
tensor shapes and every piece of per-token state on the device:

* a KV cache preallocated for ``capacity`` positions; attention covers all of it with a mask
  ``key_position <= pos`` (``pos`` is a device tensor, so the shapes never change);
* grouped-query attention for a single query token computed as ``kv_heads`` heads with
  ``heads / kv_heads`` queries each, so no key/value copies are needed;
* the repetition-aware sampler (:mod:`tts_core.llm.sampling`) with its uniforms drawn up front;
* the stop check reads one device flag every ``stop_check_every`` tokens.

On CUDA the step is captured once per (dtype, capacity, window) as a CUDA graph and replayed;
on the CPU the same step runs eagerly (used by the tests to check it against the eager decoder).
Only the speech head (``llm_decoder``) is computed, never the 151,936-wide text head.

The prefill (about 100 positions for a 3 s prompt) is the eager backbone: ~1000 small launches,
20-35 ms of host time on an H200 machine, and far more when another thread competes for the host
(measured 65-150 ms inside ``Pipeline.stream``; benchmarks/scripts/stream_timeline.py), all of
it before the first streamed chunk. So ``prepare(..., prefill_graph=True)`` (what ``Pipeline.stream``
asks for) also captures a prefill graph, and ``generate_pieces`` replays one whenever it exists
(eager prefill otherwise). A graph serves a length bucket (PREFILL_BUCKET positions): the prompt
and text fill its first n positions, zeros the rest; causal attention keeps positions < n blind to
the padding, the hidden state is read at n - 1, and the cache entries written at n.. are masked
by the decode step (keys 0..pos only) and overwritten as decoding goes on. So the app's warm-up
can capture every bucket up to a few hundred positions (``prepare_prefill_buckets``) and no
streamed request pays a capture. NOTE: the padded matrix products may round differently from the
eager prefill of exactly n positions (another GEMM shape), so graph and eager prefills agree to
rounding, not bit for bit; every path that has the graph uses it, offline included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from tts_core.devices import synchronize
from tts_core.llm.decode_state import (
    PREFILL_BUCKET,
    STEPS_PER_GRAPH,
    DecodeState,
    PrefillGraph,
    kv_capacity,
    new_state,
    prefill_bucket,
)
from tts_core.llm.qwen2 import apply_rotary
from tts_core.llm.sampling import SamplingParams, draw_uniforms, ras_sample
from tts_core.llm.speech_lm import SpeechLM, decode_plan, first_stop, join_pieces
from tts_core.lru import LruCache
from tts_core.options import SynthesisOptions
from tts_core.results import OneTimeWork

if TYPE_CHECKING:
    from tts_core.llm.triton_backbone import KernelTuning

MAX_STATES = 6  # captured graphs kept (LRU); each holds a KV cache and a memory pool
WARMUP_STEPS = 2  # eager steps on a side stream before capture (lazy CUDA init, cuBLAS handles)
STEP_KINDS = ("torch", "compiled", "triton")


@dataclass
class _FusedLayer:
    """One layer's projections stored as one matrix each (fewer, larger GEMVs per token)."""

    qkv_weight: Tensor  # (q + k + v out, H)
    qkv_bias: Tensor
    gate_up_weight: Tensor  # (2 * intermediate, H)


def fuse_projections(lm: SpeechLM) -> list[_FusedLayer]:
    """Concatenate q/k/v and gate/up weights; the modules' parameters become views into them.

    Same numbers, same memory: the original modules (used by the eager prefill) keep working.
    """
    fused = []
    for layer in lm.backbone.layers:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        qkv_w = torch.cat([m.weight.data for m in projections])
        qkv_b = torch.cat([m.bias.data for m in projections])
        gu_w = torch.cat([mlp.gate_proj.weight.data, mlp.up_proj.weight.data])
        start = 0
        for m in projections:
            n = m.weight.shape[0]
            m.weight.data, m.bias.data = qkv_w[start : start + n], qkv_b[start : start + n]
            start += n
        n = mlp.gate_proj.weight.shape[0]
        mlp.gate_proj.weight.data, mlp.up_proj.weight.data = gu_w[:n], gu_w[n:]
        fused.append(_FusedLayer(qkv_w, qkv_b, gu_w))
    return fused


def _single_query_attention(
    q: Tensor, k: Tensor, v: Tensor, visible: Tensor, group: int, scale: float
) -> Tensor:
    """Attention of one query token: q (1, heads, 1, d); k, v (1, kv, C, d); visible (C,) bool.

    Heads h = kv * group + g share kv head ``kv``, so the group folds into a query axis and no
    key/value copies are made. Written as broadcast products and sums (accumulated in float32):
    torch.compile turns them into two small reduction kernels, several times faster at this size
    than a general attention kernel.
    """
    n_kv, d = k.shape[1], k.shape[-1]
    qg = q.reshape(1, n_kv, group, 1, d).float() * scale
    scores = (qg * k.unsqueeze(2).float()).sum(-1)  # (1, kv, group, C)
    scores = scores.masked_fill(~visible, float("-inf"))
    probs = scores.softmax(dim=-1)
    out = (probs.unsqueeze(-1) * v.unsqueeze(2).float()).sum(-2)  # (1, kv, group, d)
    return out.to(q.dtype)


def _backbone_step(lm: SpeechLM, st: DecodeState, x: Tensor, fused: list[_FusedLayer]) -> Tensor:
    """One token x (1, 1, H) at position st.pos through the backbone -> (1, H), cache updated."""
    q_cfg = lm.cfg.qwen
    n_kv, d = q_cfg.num_key_value_heads, q_cfg.head_dim
    n_q = q_cfg.num_attention_heads * d
    group = q_cfg.num_attention_heads // n_kv
    freqs = st.pos.float()[:, None] * st.inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    visible = st.key_positions <= st.pos
    scale = 1.0 / math.sqrt(d)
    backbone = lm.backbone
    for i, layer in enumerate(backbone.layers):
        attn, w = layer.self_attn, fused[i]
        qkv = F.linear(layer.input_layernorm(x), w.qkv_weight, w.qkv_bias)
        qh = apply_rotary(qkv[..., :n_q].view(1, 1, -1, d).transpose(1, 2), cos, sin)  # (1, heads, 1, d)
        kh = apply_rotary(qkv[..., n_q : n_q + n_kv * d].view(1, 1, n_kv, d).transpose(1, 2), cos, sin)
        vh = qkv[..., n_q + n_kv * d :].view(1, 1, n_kv, d).transpose(1, 2)
        st.cache.k[i].index_copy_(2, st.pos, kh)
        st.cache.v[i].index_copy_(2, st.pos, vh)
        out = _single_query_attention(qh, st.cache.k[i], st.cache.v[i], visible, group, scale)
        x = x + attn.o_proj(out.reshape(1, 1, -1))
        gate, up = F.linear(layer.post_attention_layernorm(x), w.gate_up_weight).chunk(2, dim=-1)
        x = x + layer.mlp.down_proj(F.silu(gate) * up)
    return backbone.norm(x)[:, -1]


def _sample_token(lm: SpeechLM, st: DecodeState, params: SamplingParams, scores: Tensor) -> Tensor:
    """Sample the token at st.step from ``scores`` (V,) float32 logits and record it -> (1,) int64."""
    scores = torch.where(st.step < st.min_len, scores + st.early_mask, scores)
    # Device tensors for the values that change between calls, so one graph serves them all.
    live = SamplingParams(st.top_p, params.top_k, params.win_size, st.tau_r)  # type: ignore[arg-type]
    token = ras_sample(scores, st.history, live, st.uniforms.index_select(0, st.step)[0])
    st.tokens.index_copy_(0, st.step, token)
    st.history.copy_(torch.cat([st.history[1:], token]))
    return token


def _decode_step(lm: SpeechLM, st: DecodeState, params: SamplingParams, fused: list[_FusedLayer]) -> None:
    """Sample the token at st.step from st.hidden, record it, and run it through the backbone."""
    scores = lm.llm_decoder(st.hidden)[0].float()  # softmax(logits) = softmax(log_softmax(logits))
    token = _sample_token(lm, st, params, scores)
    st.hidden.copy_(_backbone_step(lm, st, lm.speech_embedding(token).unsqueeze(0), fused))
    st.pos.add_(1)
    st.step.add_(1)


def _sample_and_embed(lm: SpeechLM, st: DecodeState, params: SamplingParams) -> Tensor:
    """The torch part of a Triton step: sample from st.scores -> the token's embedding (H,)."""
    return lm.speech_embedding(_sample_token(lm, st, params, st.scores))[0]


class StaticDecoder:
    """Decodes with fixed-shape steps; captures them as CUDA graphs on CUDA devices.

    ``step_kind`` is how one step runs: "torch" (plain torch ops), "compiled" (the same step
    through torch.compile, which fuses its element-wise work) or "triton" (the backbone and the
    speech head as fused Triton kernels, :mod:`tts_core.llm.triton_backbone`, and the sampler
    compiled; CUDA, or Triton's interpreter in the tests).

    ``tuning`` sets the Triton kernels' launch shapes (None: the defaults, tuned on an H100).

    One instance per SpeechLM copy (per dtype). Not thread-safe: the pipeline serialises calls.
    """

    def __init__(
        self,
        lm: SpeechLM,
        use_graphs: bool | None = None,
        step_kind: str = "torch",
        tuning: KernelTuning | None = None,
    ) -> None:
        if step_kind not in STEP_KINDS:
            raise ValueError(f"step_kind must be one of {STEP_KINDS}, got {step_kind!r}")
        self.lm = lm
        device = lm.llm_decoder.weight.device
        self.use_graphs = device.type == "cuda" if use_graphs is None else use_graphs
        self._fused = fuse_projections(lm)
        self._triton = None
        if step_kind == "triton":
            from tts_core.llm.triton_backbone import TritonBackbone, speech_logits  # imports triton

            self._speech_logits = speech_logits
            self._triton = TritonBackbone(
                lm.backbone,
                [f.qkv_weight for f in self._fused],
                [f.qkv_bias for f in self._fused],
                [f.gate_up_weight for f in self._fused],
                tuning,
            )
            # Only the sampler is left to torch; compiling it fuses its ~20 small kernels (CUDA).
            self._sample = (
                torch.compile(_sample_and_embed, fullgraph=True, dynamic=False)
                if device.type == "cuda"
                else _sample_and_embed
            )
        # torch.compile fuses the many small elementwise kernels of a step (norms, rotary,
        # sampling); the compiled step is then captured in the same CUDA graph.
        self._torch_step = (
            torch.compile(_decode_step, fullgraph=True, dynamic=False)
            if step_kind == "compiled"
            else _decode_step
        )
        self._states: LruCache[tuple[int, int, int], DecodeState] = LruCache(MAX_STATES)
        self._prefill_pool: tuple[int, int] | None = None  # shared by every prefill graph (made at first use)

    def _step(self, st: DecodeState, params: SamplingParams) -> None:
        """One decode step: sample the token at st.step, feed it, advance pos and step."""
        if self._triton is None:
            self._torch_step(self.lm, st, params, self._fused)
            return
        head = self.lm.llm_decoder
        self._speech_logits(head.weight, head.bias, st.hidden[0], st.scores, self._triton.tuning)
        x = self._sample(self.lm, st, params)
        self._triton.step(x, st.pos, st.step, st.cache, st.inv_freq, st.hidden[0])

    def prepare(
        self,
        text_ids: Tensor,
        prompt_text_ids: Tensor,
        prompt_speech_tokens: Tensor,
        options: SynthesisOptions,
        prefill_graph: bool = False,
    ) -> OneTimeWork | None:
        """Build (compile, capture) now the decode state that :meth:`generate` with these inputs
        needs, so that its one-time cost is timed apart from decoding; None when it exists.

        ``prefill_graph``: also capture the prefill graph of these inputs' length bucket (CUDA only).
        """
        plan = decode_plan(text_ids, options)
        # prefill = sos + prompt text + text + task id + prompt speech (see prefill_embeddings)
        n_prefill = 2 + prompt_text_ids.numel() + text_ids.numel() + prompt_speech_tokens.numel()
        capacity = kv_capacity(n_prefill, plan.max_len)
        st = self._states.get((capacity, plan.sampling.win_size, plan.sampling.top_k))
        bucket = prefill_bucket(n_prefill)
        need_prefill = (
            prefill_graph
            and self.use_graphs
            and bucket <= capacity
            and (st is None or st.prefills.get(bucket) is None)
        )
        if st is not None and not need_prefill:
            return None
        device = self.lm.llm_decoder.weight.device
        synchronize(device)
        start = time.perf_counter()
        parts = []
        if st is None:
            st = self._state(capacity, plan.sampling)
            parts.append(f"decode {'graph capture' if self.use_graphs else 'state'}: {capacity} positions")
        if need_prefill:
            self._prefill_graph(st, bucket)
            parts.append(f"prefill graph capture: {bucket} positions")
        synchronize(device)
        dtype = str(self.lm.llm_decoder.weight.dtype).removeprefix("torch.")
        return OneTimeWork(f"LLM {', '.join(parts)} ({dtype})", time.perf_counter() - start)

    def _state(self, capacity: int, params: SamplingParams) -> DecodeState:
        key = (capacity, params.win_size, params.top_k)
        st = self._states.get(key)
        if st is not None:
            return st
        st = new_state(self.lm, capacity, params.win_size)
        if self.use_graphs:
            self._capture(st, params)
        self._states.put(key, st)
        return st

    def prepare_prefill_buckets(
        self, options: SynthesisOptions, capacities: Sequence[int], up_to: int
    ) -> OneTimeWork | None:
        """Capture now the prefill graphs of every bucket up to ``up_to`` positions in the decode
        states of ``capacities`` (made if missing) for ``options``' sampling; None off CUDA or when
        all exist. What the app's warm-up calls for streamed configurations."""
        if not self.use_graphs:
            return None
        params = decode_plan(torch.ones(1, dtype=torch.long), options).sampling
        device = self.lm.llm_decoder.weight.device
        synchronize(device)
        start, made = time.perf_counter(), 0
        for capacity in capacities:
            st = self._state(capacity, params)
            for bucket in range(PREFILL_BUCKET, min(up_to, capacity) + 1, PREFILL_BUCKET):
                if st.prefills.get(bucket) is None:
                    self._prefill_graph(st, bucket)
                    made += 1
        if not made:
            return None
        synchronize(device)
        dtype = str(self.lm.llm_decoder.weight.dtype).removeprefix("torch.")
        what = f"LLM prefill graph capture: {made} buckets up to {up_to} positions ({dtype})"
        return OneTimeWork(what, time.perf_counter() - start)

    @torch.inference_mode()
    def _prefill_graph(self, st: DecodeState, bucket: int) -> PrefillGraph:
        """Capture the prefill of ``bucket`` positions into ``st``'s cache (and a hidden buffer)."""
        entry = st.prefills.get(bucket)
        if entry is not None:
            return entry
        w = self.lm.llm_decoder.weight
        embeds = torch.zeros(1, bucket, self.lm.cfg.qwen.hidden_size, dtype=w.dtype, device=w.device)
        hidden = torch.zeros_like(embeds)

        def run() -> None:
            hidden.copy_(self.lm.backbone(embeds, st.cache, 0))

        # One eager run on a side stream first (cuBLAS workspaces, attention kernel selection);
        # it writes zeros' keys into the cache, which every request overwrites from position 0.
        side = torch.cuda.Stream(w.device)
        side.wait_stream(torch.cuda.current_stream(w.device))
        with torch.cuda.stream(side):
            run()
        torch.cuda.current_stream(w.device).wait_stream(side)
        if self._prefill_pool is None:
            self._prefill_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # NOTE: one pool for all prefill graphs is safe: a decoder runs one request at a time, and
        # a prefill's results (cache, hidden) live outside the pool.
        with torch.cuda.graph(graph, pool=self._prefill_pool, capture_error_mode="thread_local"):
            run()
        entry = PrefillGraph(graph, embeds, hidden)
        st.prefills.put(bucket, entry)
        return entry

    def _capture(self, st: DecodeState, params: SamplingParams) -> None:
        st.top_p.fill_(0.5)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARMUP_STEPS):
                self._step(st, params)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: Pipeline.stream decodes in a helper thread while the caller's thread may
        # render a chunk; only this thread's calls must not disturb the capture.
        with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            for _ in range(STEPS_PER_GRAPH):
                self._step(st, params)
        st.graph = graph

    @torch.inference_mode()
    def generate(
        self,
        text_ids: Tensor,
        prompt_text_ids: Tensor,
        prompt_speech_tokens: Tensor,
        options: SynthesisOptions,
        generator: torch.Generator | None,
        stop_check_every: int = 1,
    ) -> Tensor:
        """Same contract and randomness as :meth:`SpeechLM.generate` -> (L,) int64 on the device."""
        pieces = self.generate_pieces(
            text_ids, prompt_text_ids, prompt_speech_tokens, options, generator, stop_check_every
        )
        return join_pieces(list(pieces), self.lm.llm_decoder.weight.device)

    @torch.inference_mode()
    def generate_pieces(
        self,
        text_ids: Tensor,
        prompt_text_ids: Tensor,
        prompt_speech_tokens: Tensor,
        options: SynthesisOptions,
        generator: torch.Generator | None,
        stop_check_every: int = 1,
        check_at: int = 0,
    ) -> Iterator[Tensor]:
        """Same as :meth:`SpeechLM.generate_pieces`: the tokens confirmed at each stop check."""
        plan = decode_plan(text_ids, options)
        min_len, max_len, forbidden_early, params = (
            plan.min_len,
            plan.max_len,
            plan.forbidden_early,
            plan.sampling,
        )
        lm = self.lm
        embeds = lm.prefill_embeddings(text_ids.long(), prompt_text_ids.long(), prompt_speech_tokens.long())
        n_prefill = embeds.shape[1]
        st = self._state(kv_capacity(n_prefill, max_len), params)
        device = st.tokens.device

        prefill = st.prefills.get(prefill_bucket(n_prefill))
        if prefill is None:
            st.hidden.copy_(lm.forward_hidden(embeds, st.cache, 0))
        else:
            st.hidden.copy_(prefill.run(embeds))
        st.pos.fill_(n_prefill)
        st.step.zero_()
        st.history.fill_(-1)
        st.tokens.fill_(-1)
        st.uniforms[:max_len].copy_(draw_uniforms(max_len, generator, device))
        st.min_len.fill_(min_len)
        st.early_mask.zero_()
        st.early_mask[forbidden_early] = float("-inf")
        st.top_p.fill_(params.top_p)
        st.tau_r.fill_(params.tau_r)

        per_call = STEPS_PER_GRAPH if st.graph is not None else 1
        check_every = max(1, stop_check_every // per_call)  # in calls
        made, calls, confirmed = 0, 0, 0
        while made < max_len:
            if st.graph is not None:
                st.graph.replay()
            else:
                self._step(st, params)
            made, calls = min(made + per_call, max_len), calls + 1
            at_check = made - per_call < check_at <= made  # check_at is reached in this call
            if calls % check_every == 0 or at_check or made == max_len:
                end, stopped = first_stop(st.tokens, confirmed, made, lm.cfg.speech_token_size)
                if end > confirmed:
                    # A copy: the state (and its token buffer) serves the next request.
                    yield st.tokens[confirmed:end].clone()
                confirmed = end
                if stopped:
                    return
