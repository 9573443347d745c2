"""Triton kernels for one batch-1 decode step of the Qwen2 backbone: five or six launches per layer.

The compiled torch step spends ~290 small kernels per token (cuBLAS GEMVs with split-K reduces,
inductor element-wise kernels); at batch 1 the per-kernel latency, not the weight bandwidth,
bounds it. These kernels fuse each layer into five launches (six with split attention):

1. ``norm_qkv_rope``: input RMSNorm + q/k/v projection (+bias) + rotary embedding; q goes to a
   scratch vector, k and v straight into the KV cache at the current position;
2. ``decode_attention``: one query token against the cache (online softmax, float32), split
   over the keys with a small merge kernel when that is faster;
3. ``gemv`` with residual: o projection added onto the residual stream, in place;
4. ``norm_gate_up_silu``: post-attention RMSNorm + gate/up projection + SiLU(gate) * up;
5. ``gemv`` with residual: down projection added onto the residual stream.

Rounding follows the torch modules step by step: each value the reference rounds to the model
dtype (a linear layer's output, the normalised input, SiLU, each residual sum) is rounded here at
the same place; products are accumulated in float32. Every kernel reads the position from a
device tensor, so the launches can be captured in a CUDA graph and replayed.

On a CPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``), which the tests use.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _rms_scale(x_ptr, eps, H: tl.constexpr, BLOCK_H: tl.constexpr):
    """1 / sqrt(mean(x^2) + eps) over the H entries of x, in float32."""
    offs = tl.arange(0, BLOCK_H)
    x = tl.load(x_ptr + offs, mask=offs < H, other=0.0).to(tl.float32)
    return tl.rsqrt(tl.sum(x * x, axis=0) / H + eps)


@triton.jit
def _normed_chunk(x_ptr, ln_ptr, offs, mask, r):
    """RMSNorm of x at ``offs`` given its scale ``r``: weight * (x * r).to(dtype), as float32."""
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    w = tl.load(ln_ptr + offs, mask=mask, other=0.0)
    h = (x.to(tl.float32) * r).to(x.dtype)
    return (w.to(tl.float32) * h.to(tl.float32)).to(x.dtype).to(tl.float32)


@triton.jit
def _normed_gemv_pair(
    x_ptr, ln_ptr, w_ptr, rows_a, rows_b, rmask, eps,
    H: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """W[rows_a] . RMSNorm(x) and W[rows_b] . RMSNorm(x), float32 sums, in one pass over x.

    w_ptr: (rows, H) row-major; rows_a / rows_b: (BLOCK_N,) row indices; rmask: (BLOCK_N,) valid rows.
    """
    r = _rms_scale(x_ptr, eps, H, BLOCK_H)
    acc_a = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        offs = k0 + tl.arange(0, BLOCK_K)
        kmask = offs < H
        h = _normed_chunk(x_ptr, ln_ptr, offs, kmask, r)
        m = rmask[:, None] & kmask[None, :]
        wa = tl.load(w_ptr + rows_a[:, None] * H + offs[None, :], mask=m, other=0.0)
        wb = tl.load(w_ptr + rows_b[:, None] * H + offs[None, :], mask=m, other=0.0)
        acc_a += wa.to(tl.float32) * h[None, :]
        acc_b += wb.to(tl.float32) * h[None, :]
    return tl.sum(acc_a, axis=1), tl.sum(acc_b, axis=1)


@triton.jit
def norm_qkv_rope_kernel(
    x_ptr,  # (H,) residual stream
    ln_ptr,  # (H,) input_layernorm weight
    w_ptr,  # (NQ + 2 * NKV) * D rows x H, q/k/v weights stacked
    b_ptr,  # q/k/v biases stacked
    pos_ptr,  # (1,) int64 position of the token
    inv_freq_ptr,  # (D / 2,) float32 rotary frequencies
    q_ptr,  # (NQ * D,) out: rotated queries
    k_ptr,  # (NKV, capacity, D) this layer's key cache
    v_ptr,  # (NKV, capacity, D) this layer's value cache
    capacity,
    eps,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
    N_Q_HEADS: tl.constexpr,
    N_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HALF_BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # Program p computes HALF_BLOCK output columns of one head's first half and the matching
    # columns of its second half: rotate_half pairs column i with i + D/2.
    half: tl.constexpr = HEAD_DIM // 2
    per_head: tl.constexpr = half // HALF_BLOCK
    pid = tl.program_id(0)
    head = pid // per_head
    c0 = (pid % per_head) * HALF_BLOCK
    cols = c0 + tl.arange(0, HALF_BLOCK)
    rows_lo = head * HEAD_DIM + cols
    rows_hi = rows_lo + half

    sum_lo, sum_hi = _normed_gemv_pair(
        x_ptr, ln_ptr, w_ptr, rows_lo, rows_hi, cols < half, eps, H, BLOCK_H, HALF_BLOCK, BLOCK_K
    )
    dt = q_ptr.dtype.element_ty
    lo = (sum_lo + tl.load(b_ptr + rows_lo).to(tl.float32)).to(dt).to(tl.float32)
    hi = (sum_hi + tl.load(b_ptr + rows_hi).to(tl.float32)).to(dt).to(tl.float32)

    pos = tl.load(pos_ptr)
    if head < N_Q_HEADS + N_KV_HEADS:  # queries and keys are rotated, values are not
        angle = pos.to(tl.float32) * tl.load(inv_freq_ptr + cols)
        cos = tl.cos(angle).to(dt).to(tl.float32)
        sin = tl.sin(angle).to(dt).to(tl.float32)
        lo, hi = lo * cos - hi * sin, hi * cos + lo * sin
    if head < N_Q_HEADS:
        tl.store(q_ptr + rows_lo, lo.to(dt))
        tl.store(q_ptr + rows_hi, hi.to(dt))
    else:
        kv_head = (head - N_Q_HEADS) % N_KV_HEADS
        at = kv_head * capacity * HEAD_DIM + pos * HEAD_DIM + cols
        if head < N_Q_HEADS + N_KV_HEADS:
            tl.store(k_ptr + at, lo.to(dt))
            tl.store(k_ptr + at + half, hi.to(dt))
        else:
            tl.store(v_ptr + at, lo.to(dt))
            tl.store(v_ptr + at + half, hi.to(dt))


@triton.jit
def decode_attention_kernel(
    q_ptr,  # (NQ * D,) rotated queries
    k_ptr,  # (NKV, capacity, D)
    v_ptr,  # (NKV, capacity, D)
    out_ptr,  # (NQ * D,) out when SPLITS == 1
    part_acc_ptr,  # (NQ, SPLITS, D) float32 out when SPLITS > 1: unnormalised partial outputs
    part_ml_ptr,  # (NQ, SPLITS, 2) float32 out when SPLITS > 1: partial max and denominator
    pos_ptr,  # (1,) int64: keys 0..pos are visible
    capacity,
    scale,
    GROUP: tl.constexpr,  # query heads per key/value head
    HEAD_DIM: tl.constexpr,
    BLOCK_L: tl.constexpr,
    SPLITS: tl.constexpr,
):
    """Program (head, split): online softmax (float32) over the split's share of the visible keys.

    With SPLITS > 1 (more programs in flight for long contexts) the partial results are merged
    by :func:`attention_combine_kernel`.
    """
    head = tl.program_id(0)
    split = tl.program_id(1)
    kv_head = head // GROUP
    n = tl.load(pos_ptr) + 1
    chunk = tl.cdiv(tl.cdiv(n, SPLITS), BLOCK_L) * BLOCK_L
    begin = split * chunk
    end = tl.minimum(begin + chunk, n)
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + head * HEAD_DIM + d).to(tl.float32) * scale
    base = kv_head * capacity * HEAD_DIM
    m_i = tl.zeros([1], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([1], dtype=tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    for start in range(begin, end, BLOCK_L):
        keys = start + tl.arange(0, BLOCK_L)
        valid = keys < end
        at = base + keys[:, None] * HEAD_DIM + d[None, :]
        k = tl.load(k_ptr + at, mask=valid[:, None], other=0.0).to(tl.float32)
        s = tl.where(valid, tl.sum(k * q[None, :], axis=1), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=0))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new)
        v = tl.load(v_ptr + at, mask=valid[:, None], other=0.0).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m_i = m_new
    if SPLITS == 1:
        tl.store(out_ptr + head * HEAD_DIM + d, (acc / l_i).to(out_ptr.dtype.element_ty))
    else:
        at = head * SPLITS + split
        tl.store(part_acc_ptr + at * HEAD_DIM + d, acc)
        tl.store(part_ml_ptr + at * 2 + tl.arange(0, 1), m_i)
        tl.store(part_ml_ptr + at * 2 + 1 + tl.arange(0, 1), l_i)


@triton.jit
def attention_combine_kernel(
    part_acc_ptr,  # (NQ, SPLITS, D) float32
    part_ml_ptr,  # (NQ, SPLITS, 2) float32; a split without keys has max -inf and denominator 0
    out_ptr,  # (NQ * D,)
    HEAD_DIM: tl.constexpr,
    SPLITS: tl.constexpr,
):
    """One program per head: merge the splits' partial softmax results."""
    head = tl.program_id(0)
    sp = tl.arange(0, SPLITS)
    d = tl.arange(0, HEAD_DIM)
    m = tl.load(part_ml_ptr + (head * SPLITS + sp) * 2)
    den = tl.load(part_ml_ptr + (head * SPLITS + sp) * 2 + 1)
    acc = tl.load(part_acc_ptr + (head * SPLITS + sp)[:, None] * HEAD_DIM + d[None, :])
    w = tl.exp(m - tl.max(m, axis=0))  # 0 for empty splits (the first split is never empty)
    out = tl.sum(w[:, None] * acc, axis=0) / tl.sum(w * den, axis=0)
    tl.store(out_ptr + head * HEAD_DIM + d, out.to(out_ptr.dtype.element_ty))


@triton.jit
def gemv_kernel(
    v_ptr,  # (K,) input vector
    w_ptr,  # (N, K) weight, row-major (nn.Linear layout)
    b_ptr,  # (N,) bias (read when HAS_BIAS)
    res_ptr,  # (N,) residual (read when HAS_RESIDUAL; may alias out_ptr)
    out_ptr,  # (N,) out: round(residual + round(W v + b)) in out's dtype
    N,
    K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs = k0 + tl.arange(0, BLOCK_K)
        kmask = offs < K
        v = tl.load(v_ptr + offs, mask=kmask, other=0.0).to(tl.float32)
        w = tl.load(
            w_ptr + rows[:, None] * K + offs[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0
        )
        acc += w.to(tl.float32) * v[None, :]
    dt = w_ptr.dtype.element_ty
    y = tl.sum(acc, axis=1)
    if HAS_BIAS:
        y += tl.load(b_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    y = y.to(dt).to(tl.float32)
    if HAS_RESIDUAL:
        y = (tl.load(res_ptr + rows, mask=rmask, other=0.0).to(tl.float32) + y).to(dt).to(tl.float32)
    tl.store(out_ptr + rows, y.to(out_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def norm_gate_up_silu_kernel(
    x_ptr,  # (H,) residual stream
    ln_ptr,  # (H,) post_attention_layernorm weight
    w_ptr,  # (2 * I, H): gate rows then up rows
    out_ptr,  # (I,) out: silu(gate) * up
    eps,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
    INTERMEDIATE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < INTERMEDIATE
    sum_g, sum_u = _normed_gemv_pair(
        x_ptr, ln_ptr, w_ptr, rows, rows + INTERMEDIATE, rmask, eps, H, BLOCK_H, BLOCK_N, BLOCK_K
    )
    dt = out_ptr.dtype.element_ty
    g = sum_g.to(dt).to(tl.float32)
    u = sum_u.to(dt).to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
    tl.store(out_ptr + rows, (silu * u).to(dt), mask=rmask)


@triton.jit
def final_norm_advance_kernel(
    x_ptr,  # (H,) residual stream after the last layer
    ln_ptr,  # (H,) final norm weight
    out_ptr,  # (H,) out: the normalised hidden state
    pos_ptr,  # (1,) int64, incremented
    step_ptr,  # (1,) int64, incremented
    eps,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """Final RMSNorm; also advances the position and step counters (one program, so no race)."""
    r = _rms_scale(x_ptr, eps, H, BLOCK_H)
    offs = tl.arange(0, BLOCK_H)
    mask = offs < H
    h = _normed_chunk(x_ptr, ln_ptr, offs, mask, r)
    tl.store(out_ptr + offs, h.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(pos_ptr, tl.load(pos_ptr) + 1)
    tl.store(step_ptr, tl.load(step_ptr) + 1)
