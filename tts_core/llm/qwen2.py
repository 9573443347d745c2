"""A Qwen2 decoder backbone with a preallocated KV cache, sized from ``CosyVoice-BlankEN/config.json``.

Parameter names follow the official checkpoint (``llm.model.model.*``), so ``llm.pt`` loads strictly.
Only the hidden states are computed: CosyVoice2 never uses the 151,936-wide text head, so the tied
``lm_head`` exists for state-dict compatibility and is never evaluated.

The numerics follow the Qwen2 reference definition (RMSNorm in float32, rotary embedding with
``rotate_half`` and cos/sin computed in float32, grouped-query attention with biased q/k/v).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Qwen2Config:
    """The backbone sizes CosyVoice2 uses from a HF Qwen2 ``config.json``."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path: Path) -> Qwen2Config:
        """Read ``config.json``; ValueError naming the file if it is not a Qwen2 config."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable JSON config ({exc})") from exc
        if raw.get("model_type") != "qwen2":
            raise ValueError(
                f"{path}: expected a Qwen2 config (model_type 'qwen2'), got {raw.get('model_type')!r}"
            )
        if raw.get("hidden_act", "silu") != "silu" or raw.get("use_sliding_window", False):
            raise ValueError(f"{path}: unsupported Qwen2 variant (needs silu, no sliding window)")
        try:
            cfg = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                num_key_value_heads=int(raw.get("num_key_value_heads", raw["num_attention_heads"])),
                intermediate_size=int(raw["intermediate_size"]),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope_theta=float(raw.get("rope_theta", 10000.0)),
                max_position_embeddings=int(raw.get("max_position_embeddings", 32768)),
            )
        except KeyError as exc:
            raise ValueError(f"{path}: missing key {exc.args[0]!r}") from exc
        if cfg.hidden_size % cfg.num_attention_heads or cfg.num_attention_heads % cfg.num_key_value_heads:
            raise ValueError(f"{path}: hidden_size/heads/kv heads are not divisible")
        return cfg


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in float32 whatever the weight dtype, as the reference model does.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotary_cos_sin(
    positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """cos/sin tables for ``positions`` (T,) -> two (T, head_dim) tensors in ``dtype``."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim)
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, T, D), cos/sin (T, D)."""
    return x * cos + _rotate_half(x) * sin


class Qwen2Attention(nn.Module):
    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=True)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int, start: int) -> Tensor:
        """x (1, T, hidden) at positions start..start+T-1; keys/values are written into ``cache``."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys, values = cache.write(layer, start, k, v)
        # Prefill attends causally among its own tokens plus everything cached before it;
        # a single decode token attends to the whole cache, so no mask is needed.
        if t > 1:
            mask = torch.ones(t, keys.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=start)
        else:
            mask = None
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, enable_gqa=self.n_kv != self.n_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class Qwen2MLP(nn.Module):
    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2Layer(nn.Module):
    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.self_attn = Qwen2Attention(cfg)
        self.mlp = Qwen2MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, layer: int, start: int) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class KVCache:
    """Preallocated keys/values for batch 1: (layers, 1, kv_heads, capacity, head_dim) each."""

    def __init__(self, cfg: Qwen2Config, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (cfg.num_hidden_layers, 1, cfg.num_key_value_heads, capacity, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k/v (1, kv, T, D) at start..start+T-1; return the cache views up to start+T."""
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} positions > capacity {self.capacity}")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Qwen2Model(nn.Module):
    """The backbone (``llm.model.model`` in the checkpoint)."""

    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Qwen2Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, embeds: Tensor, cache: KVCache, start: int) -> Tensor:
        """embeds (1, T, hidden) at positions start.. -> final-normed hidden states (1, T, hidden)."""
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
        cos, sin = rotary_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, embeds.dtype)
        x = embeds
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, start)
        return self.norm(x)


class Qwen2ForCausalLM(nn.Module):
    """Checkpoint-compatible shell (``llm.model``): the backbone plus the tied, unused text head."""

    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.model = Qwen2Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied, as tie_word_embeddings=true


class Qwen2Encoder(nn.Module):
    """The official wrapper level (``llm`` in llm.pt), kept so the key names match."""

    def __init__(self, cfg: Qwen2Config) -> None:
        super().__init__()
        self.model = Qwen2ForCausalLM(cfg)
