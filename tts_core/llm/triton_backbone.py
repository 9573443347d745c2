"""The Qwen2 backbone's decode step as fused Triton kernels (:mod:`tts_core.llm.decode_kernels`).

:class:`TritonBackbone` holds, per layer, the stacked q/k/v and gate/up weights (views shared with
the torch modules, see :func:`tts_core.llm.static_decoder.fuse_projections`) and the scratch vectors of a
step, and launches 5 kernels per layer plus a final norm. It is used by the CUDA-graph decoder
for float16 / bfloat16; float32 keeps the compiled torch step, whose tokens equal the eager
decoder's exactly.

``triton`` is imported only when this module is, so importing the core never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from tts_core.llm import decode_kernels as kernels
from tts_core.llm.qwen2 import KVCache, Qwen2Model


@dataclass(frozen=True)
class KernelTuning:
    """Launch shapes per kernel: output rows per program, reduction chunk, warps (picked on an H100)."""

    # Defaults: the fastest shapes of `python -m eval.performance.bench_kernels` on an H100 (bf16, released
    # sizes; BENCHMARKS.md): each kernel timed in CUDA graphs cycling through distinct weights so
    # that the L2 cache does not flatter it.
    qkv_half_block: int = 2  # columns of each head half per program
    qkv_block_k: int = 128
    qkv_warps: int = 8
    attention_block_l: int = 64  # keys per loop iteration
    attention_splits: int = 16  # programs per head over the keys (> 1 adds a merge kernel)
    attention_warps: int = 4
    o_block_n: int = 4
    o_block_k: int = 128
    o_warps: int = 8
    gate_up_block_n: int = 1
    gate_up_block_k: int = 512
    gate_up_warps: int = 2
    down_block_n: int = 1
    down_block_k: int = 512
    down_warps: int = 8
    head_block_n: int = 8
    head_block_k: int = 128
    head_warps: int = 8

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1 or value & (value - 1):
                raise ValueError(f"KernelTuning.{name} must be a power of two, got {value}")


def triton_supports(backbone: Qwen2Model) -> str | None:
    """None if the kernels can run this backbone, else the reason they cannot."""
    cfg = backbone.cfg
    d = cfg.head_dim
    if d & (d - 1) or d < 8:
        return f"head_dim {d} is not a power of two >= 8"
    return None


def _block(n: int) -> int:
    return triton.next_power_of_2(n)


class TritonBackbone:
    """Runs one token through the backbone: x (H,) at position ``pos`` -> normalised hidden (H,)."""

    def __init__(
        self,
        backbone: Qwen2Model,
        qkv_weights: list[Tensor],
        qkv_biases: list[Tensor],
        gate_up_weights: list[Tensor],
        tuning: KernelTuning | None = None,
    ) -> None:
        reason = triton_supports(backbone)
        if reason is not None:
            raise ValueError(f"the Triton decode kernels cannot run this model: {reason}")
        cfg = backbone.cfg
        self.cfg = cfg
        self.tuning = tuning or KernelTuning()
        self.backbone = backbone
        self.qkv_weights, self.qkv_biases, self.gate_up_weights = qkv_weights, qkv_biases, gate_up_weights
        w = backbone.norm.weight
        n_q = cfg.num_attention_heads * cfg.head_dim
        self.q = torch.empty(n_q, dtype=w.dtype, device=w.device)
        self.attn = torch.empty(n_q, dtype=w.dtype, device=w.device)
        self.mlp = torch.empty(cfg.intermediate_size, dtype=w.dtype, device=w.device)
        self.x = torch.empty(cfg.hidden_size, dtype=w.dtype, device=w.device)
        splits = self.tuning.attention_splits
        self.part_acc = torch.empty(cfg.num_attention_heads, splits, cfg.head_dim, device=w.device)
        self.part_ml = torch.empty(cfg.num_attention_heads, splits, 2, device=w.device)

    def step(
        self, x: Tensor, pos: Tensor, step: Tensor, cache: KVCache, inv_freq: Tensor, out: Tensor
    ) -> None:
        """x (H,) token embedding; pos/step (1,) int64 (both advanced by one); out (H,) hidden state.

        Keys/values of the token are written into ``cache`` at ``pos``.
        """
        cfg, t = self.cfg, self.tuning
        H, d = cfg.hidden_size, cfg.head_dim
        n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        block_h, eps = _block(H), cfg.rms_norm_eps
        scale = 1.0 / d**0.5
        half_block = min(t.qkv_half_block, d // 2)
        splits = t.attention_splits
        qkv_grid = ((n_heads + 2 * n_kv) * (d // 2) // half_block,)
        gate_up_grid = (triton.cdiv(cfg.intermediate_size, t.gate_up_block_n),)
        o_grid = (triton.cdiv(H, t.o_block_n),)
        down_grid = (triton.cdiv(H, t.down_block_n),)
        self.x.copy_(x)
        x_, q_, attn_, mlp_ = self.x, self.q, self.attn, self.mlp
        for i, layer in enumerate(self.backbone.layers):
            k_cache, v_cache = cache.k[i], cache.v[i]
            in_norm, post_norm = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
            kernels.norm_qkv_rope_kernel[qkv_grid](
                x_, in_norm, self.qkv_weights[i], self.qkv_biases[i], pos, inv_freq, q_, k_cache, v_cache,
                cache.capacity, eps, H=H, BLOCK_H=block_h, N_Q_HEADS=n_heads, N_KV_HEADS=n_kv, HEAD_DIM=d,
                HALF_BLOCK=half_block, BLOCK_K=t.qkv_block_k, num_warps=t.qkv_warps,
            )  # fmt: skip
            kernels.decode_attention_kernel[(n_heads, splits)](
                q_, k_cache, v_cache, attn_, self.part_acc, self.part_ml, pos, cache.capacity, scale,
                GROUP=n_heads // n_kv, HEAD_DIM=d, BLOCK_L=t.attention_block_l, SPLITS=splits,
                num_warps=t.attention_warps,
            )  # fmt: skip
            if splits > 1:
                kernels.attention_combine_kernel[(n_heads,)](
                    self.part_acc, self.part_ml, attn_, HEAD_DIM=d, SPLITS=splits, num_warps=1
                )
            # Residual adds write the stream in place: each program reads and writes only its rows.
            kernels.gemv_kernel[o_grid](
                attn_, layer.self_attn.o_proj.weight, x_, x_, x_, H, K=n_heads * d, HAS_BIAS=False,
                HAS_RESIDUAL=True, BLOCK_N=t.o_block_n, BLOCK_K=t.o_block_k, num_warps=t.o_warps,
            )  # fmt: skip
            kernels.norm_gate_up_silu_kernel[gate_up_grid](
                x_, post_norm, self.gate_up_weights[i], mlp_, eps, H=H, BLOCK_H=block_h,
                INTERMEDIATE=cfg.intermediate_size, BLOCK_N=t.gate_up_block_n, BLOCK_K=t.gate_up_block_k,
                num_warps=t.gate_up_warps,
            )  # fmt: skip
            kernels.gemv_kernel[down_grid](
                mlp_, layer.mlp.down_proj.weight, x_, x_, x_, H, K=cfg.intermediate_size, HAS_BIAS=False,
                HAS_RESIDUAL=True, BLOCK_N=t.down_block_n, BLOCK_K=t.down_block_k, num_warps=t.down_warps,
            )  # fmt: skip
        kernels.final_norm_advance_kernel[(1,)](
            self.x, self.backbone.norm.weight, out, pos, step, eps, H=H, BLOCK_H=block_h, num_warps=4
        )


def speech_logits(weight: Tensor, bias: Tensor, hidden: Tensor, out: Tensor, tuning: KernelTuning) -> None:
    """The speech head: out (V,) float32 = round_to_dtype(weight (V, H) @ hidden (H,) + bias)."""
    n, k = weight.shape
    kernels.gemv_kernel[(triton.cdiv(n, tuning.head_block_n),)](
        hidden, weight, bias, out, out, n, K=k, HAS_BIAS=True, HAS_RESIDUAL=False,
        BLOCK_N=tuning.head_block_n, BLOCK_K=tuning.head_block_k, num_warps=tuning.head_warps,
    )  # fmt: skip
