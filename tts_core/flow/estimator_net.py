"""The flow-matching velocity estimator (CosyVoice2 ``CausalConditionalDecoder``).

A one-level 1-D U-Net over mel frames: the input stacks x, mu, the speaker vector and the prompt
condition (4 x 80 channels); a sinusoidal embedding of t drives every resnet block. Layout
(``channels`` = [C], as every CosyVoice2 yaml has it):

    down:  causal resnet(320 -> C) + transformer blocks + causal conv      (kept as skip)
    mid:   num_mid_blocks x [causal resnet(C -> C) + transformer blocks]
    up:    concat(skip) -> causal resnet(2C -> C) + transformer blocks + causal conv
    final: causal block(C) -> 1x1 conv to 80 channels, times the mask

Parameter names follow flow.pt (``decoder.estimator.*``). The transformer blocks follow the
semantics of diffusers' ``BasicTransformerBlock`` as Matcha configures it: pre-LayerNorm
self-attention with bias-free q/k/v, an output projection with bias, and a GELU (erf) feed-forward
of width 4 x dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_core.flow.conformer import chunk_attention_mask
from tts_core.model.yaml_config import YamlObject

ESTIMATOR_CLASS = "CausalConditionalDecoder"
TIME_SCALE = 1000.0  # t in [0, 1] is stretched by this before the sinusoids
TIME_BASE = 10000.0  # wavelength base of the time sinusoids
TIME_EMBED_MULT = 4  # time-MLP width = 4 x channels
FF_MULT = 4  # transformer feed-forward width = 4 x channels
CONV_KERNEL = 3  # kernel of every causal conv in the U-Net


@dataclass(frozen=True)
class EstimatorConfig:
    """Sizes of the estimator, read from the yaml's ``flow.decoder.estimator`` node."""

    in_channels: int  # stacked input channels: x, mu, spks, cond (4 x 80 = 320)
    out_channels: int  # velocity channels (80 mel bins)
    channels: int  # U-Net width (the yaml's one-element ``channels`` list: 256 full, 64 tiny)
    attention_head_dim: int  # per-head width (64 full, 16 tiny); heads x dim may differ from channels
    num_heads: int  # attention heads (8 full, 2 tiny)
    n_blocks: int  # transformer blocks per U-Net stage (4 full, 1 tiny)
    num_mid_blocks: int  # middle stages (12 full, 2 tiny)
    static_chunk_size: int  # frames per attention chunk when streaming (50)

    @classmethod
    def from_yaml(cls, node: YamlObject) -> EstimatorConfig:
        if node.class_name != ESTIMATOR_CLASS:
            raise ValueError(f"flow estimator must be {ESTIMATOR_CLASS}, the yaml has {node.target}")
        channels = list(node["channels"])
        if len(channels) != 1:
            # NOTE: more levels would need the Matcha down/upsampling convs; no CosyVoice2 yaml has them.
            raise ValueError(f"flow estimator channels must have one entry, got {channels}")
        act_fn = node.get("act_fn", "snake")
        if act_fn != "gelu":
            raise ValueError(f"flow estimator act_fn={act_fn!r} is not supported (only 'gelu')")
        return cls(
            in_channels=int(node["in_channels"]),
            out_channels=int(node["out_channels"]),
            channels=int(channels[0]),
            attention_head_dim=int(node["attention_head_dim"]),
            num_heads=int(node["num_heads"]),
            n_blocks=int(node["n_blocks"]),
            num_mid_blocks=int(node["num_mid_blocks"]),
            static_chunk_size=int(node.get("static_chunk_size", 0)),
        )


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """t (B,) -> (B, dim): [sin, cos] of 1000 t at geometric frequencies 1 .. 1/10000.

    NOTE: 1000 t is formed in t's dtype before meeting the float32 frequencies (as the official
    code does), so a bf16 run rounds it there; the result is cast back to t's dtype.
    """
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(TIME_BASE) / (half - 1)))
    angle = (TIME_SCALE * t)[:, None] * freq[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1).to(t.dtype)


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on the time sinusoids."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class CausalConv1d(nn.Conv1d):
    """Conv1d (stride 1) that pads kernel-1 zeros on the left: frame t sees only frames <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class _ChannelsLast(nn.Module):
    """(B, C, T) <-> (B, T, C); lets a LayerNorm over channels sit inside a Sequential."""

    def forward(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)


class CausalBlock1D(nn.Module):
    """Masked causal conv -> LayerNorm over channels -> Mish, masked again."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        # indices 0 and 2 hold the weights, as in flow.pt
        self.block = nn.Sequential(
            CausalConv1d(dim, dim_out, CONV_KERNEL),
            _ChannelsLast(),
            nn.LayerNorm(dim_out),
            _ChannelsLast(),
            nn.Mish(),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.block(x * mask) * mask


class CausalResnetBlock1D(nn.Module):
    """block2(block1(x) + time projection) + 1x1 residual conv."""

    def __init__(self, dim: int, dim_out: int, time_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, dim_out))
        self.block1 = CausalBlock1D(dim, dim_out)
        self.block2 = CausalBlock1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: Tensor, mask: Tensor, time_emb: Tensor) -> Tensor:
        """x (B, dim, T), mask (B, 1, T), time_emb (B, time_dim) -> (B, dim_out, T)."""
        h = self.block1(x, mask) + self.mlp(time_emb)[:, :, None]
        return self.block2(h, mask) + self.res_conv(x * mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention, q/k/v without bias, inner width heads x head_dim."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, dim), mask None or bool broadcastable to (B, heads, T, T) (True = may attend)."""
        b, t, _ = x.shape
        q, k, v = (
            proj(x).view(b, t, self.heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v)
        )
        # NOTE: a boolean mask, not the official additive -1e10 bias, which overflows to -inf in fp16.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out[0](out.transpose(1, 2).reshape(b, t, -1))


class GeluProjection(nn.Module):
    """Linear followed by exact (erf) GELU."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """GELU projection to mult x dim, then back to dim."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.net = nn.ModuleList(
            [GeluProjection(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)]
        )

    def forward(self, x: Tensor) -> Tensor:
        for module in self.net:
            x = module(x)
        return x


class TransformerBlock(nn.Module):
    """Pre-norm self-attention and feed-forward, each with a residual connection."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, FF_MULT)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.attn1(self.norm1(x), mask) + x
        return self.ff(self.norm3(x)) + x


class CausalConditionalDecoder(nn.Module):
    """Velocity field v(x, t | mu, spks, cond) of the conditional flow matching."""

    def __init__(self, cfg: EstimatorConfig) -> None:
        super().__init__()
        c = cfg.channels
        time_dim = c * TIME_EMBED_MULT
        self.in_channels = cfg.in_channels
        self.static_chunk_size = cfg.static_chunk_size
        self.time_mlp = TimestepMLP(cfg.in_channels, time_dim)

        def transformers() -> nn.ModuleList:
            return nn.ModuleList(
                [TransformerBlock(c, cfg.num_heads, cfg.attention_head_dim) for _ in range(cfg.n_blocks)]
            )

        # [resnet, transformer blocks, (causal conv)] per stage, as nested lists to keep flow.pt's names
        self.down_blocks = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        CausalResnetBlock1D(cfg.in_channels, c, time_dim),
                        transformers(),
                        CausalConv1d(c, c, CONV_KERNEL),
                    ]
                )
            ]
        )
        self.mid_blocks = nn.ModuleList(
            [
                nn.ModuleList([CausalResnetBlock1D(c, c, time_dim), transformers()])
                for _ in range(cfg.num_mid_blocks)
            ]
        )
        self.up_blocks = nn.ModuleList(
            [
                nn.ModuleList(
                    [CausalResnetBlock1D(2 * c, c, time_dim), transformers(), CausalConv1d(c, c, CONV_KERNEL)]
                )
            ]
        )
        self.final_block = CausalBlock1D(c, c)
        self.final_proj = nn.Conv1d(c, cfg.out_channels, 1)

    @staticmethod
    def _attend(blocks: nn.ModuleList, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x.transpose(1, 2)
        for block in blocks:
            x = block(x, mask)
        return x.transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        mu: Tensor,
        t: Tensor,
        spks: Tensor,
        cond: Tensor,
        streaming: bool = False,
        key_padding: bool = False,
    ) -> Tensor:
        """x, mu, cond (B, 80, T); mask (B, 1, T); t (B,); spks (B, 80) -> velocity (B, 80, T).

        ``mask`` always zeroes the conv inputs. By default attention has no padding mask:
        inference runs one utterance (the CFG batch holds it twice), so the official key mask is
        all ones and skipping it keeps the fastest attention kernel. ``key_padding`` also hides
        frames where mask == 0 from attention, as the official code always does: needed for
        right-padded inputs (CUDA-graph buckets) and in the ONNX export (the TensorRT graph).
        The convs are causal, so right padding reaches real frames only through attention.
        ``streaming`` restricts attention to the own and earlier chunks of ``static_chunk_size``.
        """
        time_emb = self.time_mlp(time_embedding(t, self.in_channels))
        frames = x.shape[-1]
        h = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, frames), cond], dim=1)
        attn_mask = None
        if streaming and self.static_chunk_size > 0:
            attn_mask = chunk_attention_mask(frames, self.static_chunk_size, x.device)
        if key_padding:
            keys = mask.bool()[:, None, :, :]  # (B, 1, 1, T): broadcast over heads and queries
            attn_mask = keys if attn_mask is None else attn_mask & keys

        resnet, blocks, conv = self.down_blocks[0]
        h = self._attend(blocks, resnet(h, mask, time_emb), attn_mask)
        skip = h
        h = conv(h * mask)
        for resnet, blocks in self.mid_blocks:
            h = self._attend(blocks, resnet(h, mask, time_emb), attn_mask)
        resnet, blocks, conv = self.up_blocks[0]
        h = torch.cat([h[:, :, : skip.shape[-1]], skip], dim=1)
        h = self._attend(blocks, resnet(h, mask, time_emb), attn_mask)
        h = conv(h * mask)
        h = self.final_block(h, mask)
        return self.final_proj(h * mask) * mask
