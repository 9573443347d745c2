"""The flow's token encoder: an upsampling Conformer (CosyVoice2 ``UpsampleConformerEncoder``).

Token embeddings (B, L, D) -> linear embed + scaled relative positions -> look-ahead conv ->
``num_blocks`` Conformer layers -> nearest x2 upsampling + causal conv -> linear embed ->
4 more Conformer layers -> LayerNorm -> (B, 2L, D).

Parameter names follow the official state dict (``encoder.*`` of flow.pt). Only the configuration
CosyVoice2 ships is built: ``linear`` input layer, ``rel_pos_espnet`` positions, ``rel_selfattn``
attention, pre-norm layers without macaron feed-forward or convolution module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_core.model.yaml_config import YamlObject

ENCODER_CLASS = "UpsampleConformerEncoder"
UP_LAYERS = 4  # Conformer layers after upsampling: hard-coded in the official class, not in the yaml
UPSAMPLE_STRIDE = 2  # frames per token after the up layer (= token_mel_ratio of CosyVoice2)
PRE_LOOKAHEAD_LEN = 3  # future tokens the look-ahead conv sees: hard-coded in the official class
LAYER_NORM_EPS = 1e-12  # NOTE: Conformer layer norms use 1e-12, unlike the embed/after norms (1e-5)
EMBED_NORM_EPS = 1e-5
POSITION_BASE = 10000.0  # wavelength base of the sinusoidal relative-position table
LEAKY_SLOPE = 0.01  # torch's default negative slope, used by the look-ahead layer

# yaml key -> (the only value built here, the official constructor's default when the yaml omits it)
_SUPPORTED_CHOICES = {
    "input_layer": ("linear", "conv2d"),
    "pos_enc_layer_type": ("rel_pos_espnet", "rel_pos"),
    "selfattention_layer_type": ("rel_selfattn", "rel_selfattn"),
    "normalize_before": (True, True),
    "macaron_style": (False, True),
    "use_cnn_module": (False, True),
    "activation_type": ("swish", "swish"),
    "key_bias": (True, True),
}


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the flow encoder, read from the yaml's ``flow.encoder`` node."""

    input_size: int  # width of the token embeddings fed in (512)
    output_size: int  # model width (512); must equal input_size (the up_embed reuses it)
    attention_heads: int  # heads of the relative-position self-attention (8 full, 2 tiny)
    linear_units: int  # hidden width of the SiLU feed-forward (2048 full, 256 tiny)
    num_blocks: int  # Conformer layers before upsampling (6 full, 1 tiny)
    static_chunk_size: int  # tokens per attention chunk when streaming (25)

    @classmethod
    def from_yaml(cls, node: YamlObject) -> EncoderConfig:
        if node.class_name != ENCODER_CLASS:
            raise ValueError(f"flow encoder must be {ENCODER_CLASS}, the yaml has {node.target}")
        for key, (supported, default) in _SUPPORTED_CHOICES.items():
            got = node.get(key, default)
            if got != supported:
                raise ValueError(f"flow encoder {key}={got!r} is not supported (only {supported!r})")
        cfg = cls(
            input_size=int(node["input_size"]),
            output_size=int(node["output_size"]),
            attention_heads=int(node["attention_heads"]),
            linear_units=int(node["linear_units"]),
            num_blocks=int(node["num_blocks"]),
            static_chunk_size=int(node.get("static_chunk_size", 0)),
        )
        if cfg.input_size != cfg.output_size:
            raise ValueError("flow encoder input_size must equal output_size (both embeds share it)")
        if cfg.output_size % cfg.attention_heads:
            raise ValueError("flow encoder output_size must be a multiple of attention_heads")
        return cfg


def chunk_attention_mask(length: int, chunk: int, device: torch.device) -> Tensor:
    """(length, length) bool: query i may see key j iff j lies in i's chunk or an earlier one."""
    pos = torch.arange(length, device=device)
    chunk_end = (pos // chunk + 1) * chunk
    return pos[None, :] < chunk_end[:, None]


def relative_position_table(length: int, d_model: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """ESPnet relative sinusoids (1, 2*length-1, d_model); row k is distance length-1-k.

    Channels interleave sin (even) and cos (odd) of distance * 10000^(-2m/d). Computed in float32
    (as the official table is) and then cast.
    """
    distance = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device) * -(math.log(POSITION_BASE) / d_model)
    )
    angle = distance[:, None] * inv_freq[None, :]
    table = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(1, 2 * length - 1, d_model)
    return table.to(dtype)


def _shift_to_relative(scores: Tensor) -> Tensor:
    """(B, H, T, 2T-1) scores per distance row -> (B, H, T, T) with out[i, j] = in[i, T-1-i+j].

    A strided view: row i starts (T-1-i) columns into a row of width 2T-1, i.e. each next row
    starts 2T-2 elements further on in memory.
    """
    scores = scores.contiguous()
    b, h, t, width = scores.shape
    return scores.as_strided(
        (b, h, t, t),
        (h * t * width, t * width, width - 1, 1),
        storage_offset=scores.storage_offset() + t - 1,
    )


class RelPositionSelfAttention(nn.Module):
    """Transformer-XL style self-attention with learned biases u (content) and v (position)."""

    def __init__(self, n_feat: int, n_head: int) -> None:
        super().__init__()
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_head, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_head, self.d_k))

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, D), pos_emb (1, 2T-1, D), mask None or bool (T, T) (True = may attend) -> (B, T, D)."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        q_content = (q + self.pos_bias_u).transpose(1, 2)
        q_position = (q + self.pos_bias_v).transpose(1, 2)
        # The position term enters SDPA as an additive bias; SDPA adds the content term
        # (q+u)k^T / sqrt(d_k) itself, so both share the same 1/sqrt(d_k) scale as in the paper.
        bias = _shift_to_relative(torch.matmul(q_position, p.transpose(-2, -1))) / math.sqrt(self.d_k)
        if mask is not None:
            # NOTE: -inf (not -1e10) so fp16 cannot overflow; every row keeps its own chunk unmasked.
            bias = bias.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(q_content, k, v, attn_mask=bias)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, self.h * self.d_k))


class FeedForward(nn.Module):
    """Position-wise Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    """Pre-norm layer: x + attn(norm(x)), then x + ff(norm(x)) (no macaron FF, no conv module)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = RelPositionSelfAttention(dim, heads)
        self.feed_forward = FeedForward(dim, hidden)
        self.norm_mha = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm_ff = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.self_attn(self.norm_mha(x), pos_emb, mask)
        return x + self.feed_forward(self.norm_ff(x))


class LinearEmbed(nn.Module):
    """Linear + LayerNorm, scaled by sqrt(D), plus the relative-position table for the length."""

    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=EMBED_NORM_EPS))
        self.odim = odim
        self.xscale = math.sqrt(odim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, idim) -> (x (B, T, odim), pos_emb (1, 2T-1, odim))."""
        x = self.out(x) * self.xscale
        return x, relative_position_table(x.shape[1], self.odim, x.dtype, x.device)


class PreLookaheadLayer(nn.Module):
    """Residual conv pair that lets each token see ``lookahead`` future tokens.

    conv1 (kernel lookahead+1) reads tokens t..t+lookahead (zero right padding) -> leaky ReLU ->
    conv2 (kernel 3) reads t-2..t (zero left padding) -> + input.
    """

    def __init__(self, channels: int, lookahead: int) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=lookahead + 1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x (B, T, C) -> (B, T, C).

        ``context`` (B, lookahead, C): the embedded tokens that follow x (a streaming call's
        look-ahead); conv1 reads them instead of the zero padding.
        """
        h = x.transpose(1, 2)
        if context is None:
            h = F.pad(h, (0, self.lookahead))
        elif context.shape[1] != self.lookahead:
            raise ValueError(f"look-ahead context must hold {self.lookahead} tokens, got {context.shape[1]}")
        else:
            h = torch.cat([h, context.transpose(1, 2)], dim=2)
        h = F.leaky_relu(self.conv1(h), LEAKY_SLOPE)
        h = self.conv2(F.pad(h, (self.conv2.kernel_size[0] - 1, 0)))
        return h.transpose(1, 2) + x


class Upsample1D(nn.Module):
    """Nearest-neighbour x stride, then a causal conv (kernel 2*stride+1, left zero padding)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, kernel_size=2 * stride + 1)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, T) -> (B, C, stride*T)."""
        x = torch.repeat_interleave(x, self.stride, dim=2)
        return self.conv(F.pad(x, (2 * self.stride, 0)))


class UpsampleConformerEncoder(nn.Module):
    """Token embeddings (B, L, D) -> frame features (B, 2L, D)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        dim = cfg.output_size
        self.static_chunk_size = cfg.static_chunk_size
        self.embed = LinearEmbed(cfg.input_size, dim)
        self.pre_lookahead_layer = PreLookaheadLayer(dim, PRE_LOOKAHEAD_LEN)
        self.encoders = nn.ModuleList(
            [ConformerLayer(dim, cfg.attention_heads, cfg.linear_units) for _ in range(cfg.num_blocks)]
        )
        self.up_layer = Upsample1D(dim, UPSAMPLE_STRIDE)
        self.up_embed = LinearEmbed(cfg.input_size, dim)
        self.up_encoders = nn.ModuleList(
            [ConformerLayer(dim, cfg.attention_heads, cfg.linear_units) for _ in range(UP_LAYERS)]
        )
        self.after_norm = nn.LayerNorm(dim, eps=EMBED_NORM_EPS)

    def _mask(self, length: int, chunk: int, streaming: bool, device: torch.device) -> Tensor | None:
        # NOTE: no padding mask: inference encodes one utterance, so every key is valid and only
        # streaming restricts attention (to the own chunk and all earlier chunks).
        if not streaming or chunk <= 0:
            return None
        return chunk_attention_mask(length, chunk, device)

    def forward(self, xs: Tensor, streaming: bool = False, context: Tensor | None = None) -> Tensor:
        """xs (B, L, D) token embeddings -> (B, 2L, D); ``streaming`` applies chunk attention masks.

        ``context`` (B, PRE_LOOKAHEAD_LEN, D): embeddings of the look-ahead tokens after xs (the
        official finalize=False call); they only feed the look-ahead conv and get no frames.
        """
        xs, pos_emb = self.embed(xs)
        mask = self._mask(xs.shape[1], self.static_chunk_size, streaming, xs.device)
        # The embed is per position (Linear + LayerNorm + scale), so the context can go through it alone.
        xs = self.pre_lookahead_layer(xs, None if context is None else self.embed(context)[0])
        for layer in self.encoders:
            xs = layer(xs, pos_emb, mask)
        xs = self.up_layer(xs.transpose(1, 2)).transpose(1, 2)
        xs, pos_emb = self.up_embed(xs)
        mask = self._mask(xs.shape[1], self.static_chunk_size * UPSAMPLE_STRIDE, streaming, xs.device)
        for layer in self.up_encoders:
            xs = layer(xs, pos_emb, mask)
        return self.after_norm(xs)
