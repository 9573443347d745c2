"""The flow: speech tokens -> mel, by conditional flow matching (CosyVoice2 ``CausalMaskedDiffWithXvec``).

tokens (prompt ++ new) -> embedding -> upsampling Conformer -> Linear = mu (80 x 2 frames per token);
speaker x-vector -> L2 normalise -> Linear(192 -> 80) = spks; prompt mel in the first frames = cond.
A fixed-step Euler solver integrates dx/dt = v(x, t | mu, spks, cond) from fixed noise at t=0 to
the mel at t=1 on a cosine time grid, with classifier-free guidance; the prompt frames are dropped.

Parameter names are those of flow.pt (``load_state_dict(strict=True)``). The step count is an
argument of :meth:`FlowModel.inference`, never a constant of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts_core.flow.backends import EstimatorBackend, TorchEstimator
from tts_core.flow.conformer import (
    PRE_LOOKAHEAD_LEN,
    UPSAMPLE_STRIDE,
    EncoderConfig,
    UpsampleConformerEncoder,
)
from tts_core.flow.estimator_net import CausalConditionalDecoder, EstimatorConfig
from tts_core.model.yaml_config import YamlObject

FLOW_CLASS = "CausalMaskedDiffWithXvec"
CFM_CLASS = "CausalConditionalCFM"
NOISE_SEED = 0  # the official solver seeds the global RNG with 0 before drawing its noise
NOISE_FRAMES = 15_000  # 50 frames/s x 300 s: longest input (prompt + new frames) the noise covers
CFG_BATCH = 2  # conditional + unconditional rows of classifier-free guidance
T_SCHEDULERS = ("cosine", "linear")


@dataclass(frozen=True)
class FlowConfig:
    """Sizes and solver settings of the flow, read from the yaml's ``flow`` node."""

    input_size: int  # token embedding width (512)
    output_size: int  # mel bins (80)
    spk_embed_dim: int  # speaker x-vector size (192)
    vocab_size: int  # speech tokens (6561)
    token_mel_ratio: int  # mel frames per token (2)
    inference_cfg_rate: float  # guidance weight w: v = (1 + w) v_cond - w v_uncond (0.7)
    t_scheduler: str  # "cosine": t = 1 - cos(pi/2 s) on a uniform s grid; "linear": t = s
    encoder: EncoderConfig
    estimator: EstimatorConfig

    @classmethod
    def from_yaml(cls, node: YamlObject) -> FlowConfig:
        """``node`` = ``read_yaml(path)['flow']``; ValueError for anything this module cannot build."""
        if node.class_name != FLOW_CLASS:
            raise ValueError(f"flow must be {FLOW_CLASS}, the yaml has {node.target}")
        decoder = node["decoder"]
        if decoder.class_name != CFM_CLASS:
            raise ValueError(f"flow decoder must be {CFM_CLASS}, the yaml has {decoder.target}")
        params = _cfm_params(decoder["cfm_params"])
        cfg = cls(
            input_size=int(node["input_size"]),
            output_size=int(node["output_size"]),
            spk_embed_dim=int(node["spk_embed_dim"]),
            vocab_size=int(node["vocab_size"]),
            token_mel_ratio=int(node["token_mel_ratio"]),
            inference_cfg_rate=float(params["inference_cfg_rate"]),
            t_scheduler=str(params.get("t_scheduler", "cosine")),
            encoder=EncoderConfig.from_yaml(node["encoder"]),
            estimator=EstimatorConfig.from_yaml(decoder["estimator"]),
        )
        if params.get("solver", "euler") != "euler":
            raise ValueError(f"flow solver {params['solver']!r} is not supported (only 'euler')")
        if cfg.t_scheduler not in T_SCHEDULERS:
            raise ValueError(f"flow t_scheduler must be one of {T_SCHEDULERS}, got {cfg.t_scheduler!r}")
        if int(node.get("pre_lookahead_len", PRE_LOOKAHEAD_LEN)) != PRE_LOOKAHEAD_LEN:
            raise ValueError(f"flow pre_lookahead_len must be {PRE_LOOKAHEAD_LEN} (fixed in the encoder)")
        if cfg.token_mel_ratio != UPSAMPLE_STRIDE:
            raise ValueError(f"flow token_mel_ratio must be {UPSAMPLE_STRIDE} (the encoder upsamples x2)")
        if int(decoder.get("spk_emb_dim", cfg.output_size)) != cfg.output_size:
            raise ValueError("flow decoder spk_emb_dim must equal output_size")
        if cfg.estimator.in_channels != 4 * cfg.output_size or cfg.estimator.out_channels != cfg.output_size:
            raise ValueError(
                "flow estimator must map 4 x output_size channels (x, mu, spks, cond) to output_size"
            )
        return cfg


def _cfm_params(node: Any) -> dict[str, Any]:
    # `!new:omegaconf.DictConfig {content: {...}}` in the yaml; a plain mapping is accepted too.
    if isinstance(node, YamlObject):
        return dict(node.kwargs.get("content", node.kwargs))
    return dict(node)


def time_grid(n_steps: int, scheduler: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_steps + 1,) times from 0 to 1, computed in ``dtype`` as the official solver does.

    cosine: t = 1 - cos(s * 0.5 * pi) with s = linspace(0, 1): small steps near the noise end.
    """
    s = torch.linspace(0, 1, n_steps + 1, device=device, dtype=dtype)
    if scheduler == "cosine":
        return 1 - torch.cos(s * 0.5 * math.pi)
    return s


class FlowMatchingSolver(nn.Module):
    """Holds the estimator and the fixed initial noise; integrates the ODE with Euler steps."""

    def __init__(self, estimator_cfg: EstimatorConfig, n_mels: int, cfg_rate: float, scheduler: str) -> None:
        super().__init__()
        self.estimator = CausalConditionalDecoder(estimator_cfg)
        self.cfg_rate = cfg_rate
        self.scheduler = scheduler
        # The official solver draws randn(1, 80, 15000) once after seeding the CPU RNG with 0 and
        # starts every call from its first T frames. A private generator gives the same numbers
        # without touching the global RNG. Non-persistent: not a flow.pt key, but follows .to().
        # NOTE: module.to(dtype) rounds this buffer too; cast a copy of the model, not the original.
        generator = torch.Generator(device="cpu").manual_seed(NOISE_SEED)
        # device="cpu" explicitly, so a surrounding `with torch.device(...)` cannot redirect the draw.
        noise = torch.randn(1, n_mels, NOISE_FRAMES, generator=generator, device="cpu")
        self.register_buffer("rand_noise", noise, persistent=False)

    def solve(
        self, mu: Tensor, mask: Tensor, spks: Tensor, cond: Tensor, n_steps: int, backend: EstimatorBackend
    ) -> Tensor:
        """mu, cond (1, 80, T); mask (1, 1, T); spks (1, 80) -> x at t=1 (1, 80, T), in mu's dtype.

        Calls ``backend`` exactly ``n_steps`` times. t is accumulated step by step (t += dt, next
        dt = grid[k+1] - t) like the official loop, which matters in bf16. No host sync in the loop.
        """
        frames = mu.shape[2]
        if frames > self.rand_noise.shape[2]:
            raise ValueError(
                f"flow input of {frames} frames exceeds the {self.rand_noise.shape[2]}-frame noise"
            )
        grid = time_grid(n_steps, self.scheduler, mu.dtype, mu.device)
        x = self.rand_noise[:, :, :frames].to(mu.dtype)
        # Row 0 conditional, row 1 unconditional: mu, spks, cond zeroed; these stay fixed over steps.
        mask_b = mask.repeat(CFG_BATCH, 1, 1)
        mu_b = torch.cat([mu, torch.zeros_like(mu)])
        spks_b = torch.cat([spks, torch.zeros_like(spks)])
        cond_b = torch.cat([cond, torch.zeros_like(cond)])
        t = grid[:1]
        dt = grid[1] - grid[0]
        for step in range(1, n_steps + 1):
            v = backend(x.repeat(CFG_BATCH, 1, 1), mask_b, mu_b, t.repeat(CFG_BATCH), spks_b, cond_b)
            v_cond, v_uncond = v[:1], v[1:]
            x = x + dt * ((1.0 + self.cfg_rate) * v_cond - self.cfg_rate * v_uncond)
            t = t + dt
            if step < n_steps:
                dt = grid[step + 1] - t
        return x


class FlowModel(nn.Module):
    """CosyVoice2 flow, inference only. Computes in the dtype of its parameters."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.output_size)
        self.encoder = UpsampleConformerEncoder(cfg.encoder)
        self.encoder_proj = nn.Linear(cfg.encoder.output_size, cfg.output_size)
        self.decoder = FlowMatchingSolver(
            cfg.estimator, cfg.output_size, cfg.inference_cfg_rate, cfg.t_scheduler
        )

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.encoder_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.encoder_proj.weight.device

    def max_frames(self) -> int:
        """Longest prompt + new mel (frames) one call can produce (the fixed noise's length)."""
        return self.decoder.rand_noise.shape[2]

    @torch.inference_mode()
    def encode(self, tokens: Tensor, streaming: bool = False) -> Tensor:
        """tokens (1, L) int64 (prompt ++ new) -> mu (1, 80, ratio*L) in the compute dtype."""
        _check_tokens("tokens", tokens, self.cfg.vocab_size)
        return self._encode(tokens.to(self.device), streaming)

    def _encode(self, tokens: Tensor, streaming: bool, lookahead: bool = False) -> Tensor:
        # NOTE: the official code clamps ids at 0 and multiplies by an all-ones pad mask (batch 1).
        h = self.input_embedding(tokens.clamp(min=0))
        context = None
        if lookahead:  # the official finalize=False: the last tokens are look-ahead context only
            h, context = h[:, :-PRE_LOOKAHEAD_LEN], h[:, -PRE_LOOKAHEAD_LEN:]
        h = self.encoder(h, streaming=streaming, context=context)
        return self.encoder_proj(h).transpose(1, 2).contiguous()

    def check_inputs(
        self, tokens: Tensor, prompt_tokens: Tensor, prompt_mel: Tensor, embedding: Tensor, n_steps: int
    ) -> int:
        """ValueError for anything :meth:`inference` cannot run; returns prompt + new mel frames.

        Shapes as in :meth:`inference`. One host sync (the token-id range check), so fast
        backends call this once per utterance, outside any captured region.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        _check_tokens("tokens", tokens, self.cfg.vocab_size)
        _check_tokens("prompt_tokens", prompt_tokens, self.cfg.vocab_size)
        if tokens.shape[1] == 0:
            raise ValueError("tokens must hold at least one new speech token")
        ratio, n_mels = self.cfg.token_mel_ratio, self.cfg.output_size
        prompt_frames = ratio * prompt_tokens.shape[1]
        if prompt_mel.shape != (1, prompt_frames, n_mels):
            raise ValueError(
                f"prompt_mel must be (1, {prompt_frames}, {n_mels}) for {prompt_tokens.shape[1]} prompt "
                f"tokens, got {tuple(prompt_mel.shape)}"
            )
        if embedding.shape != (1, self.cfg.spk_embed_dim):
            raise ValueError(f"embedding must be (1, {self.cfg.spk_embed_dim}), got {tuple(embedding.shape)}")
        total = ratio * (prompt_tokens.shape[1] + tokens.shape[1])
        if total > self.max_frames():
            raise ValueError(
                f"prompt + new tokens give {total} mel frames; the flow handles at most {self.max_frames()} "
                f"({self.max_frames() // ratio} tokens)"
            )
        return total

    @torch.inference_mode()
    def inference(
        self,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
        estimator: EstimatorBackend | None = None,
        streaming: bool = False,
        lookahead: bool = False,
    ) -> Tensor:
        """Mel of the new tokens, like the official non-streaming (finalize=True) call.

        tokens (1, L) int64 new tokens; prompt_tokens (1, Lp) int64; prompt_mel (1, ratio*Lp, 80);
        embedding (1, 192) speaker x-vector; n_steps Euler steps (>= 1); estimator: backend for the
        velocity field (default: this module's estimator in torch). ``streaming`` uses the chunk
        attention masks of one streaming call over all tokens (torch estimator only).
        ``lookahead`` (the official finalize=False): the last PRE_LOOKAHEAD_LEN tokens only feed
        the encoder's look-ahead conv and get no frames.
        Returns (1, 80, ratio*L) float32 (ratio*(L - PRE_LOOKAHEAD_LEN) with ``lookahead``); the
        prompt frames are dropped.
        """
        total = self.check_inputs(tokens, prompt_tokens, prompt_mel, embedding, n_steps)
        ratio = self.cfg.token_mel_ratio
        prompt_frames = ratio * prompt_tokens.shape[1]
        if streaming and estimator is not None:
            raise ValueError("streaming=True needs the torch estimator (other backends have no chunk masks)")
        if lookahead:
            if tokens.shape[1] <= PRE_LOOKAHEAD_LEN:
                raise ValueError(f"lookahead needs more than {PRE_LOOKAHEAD_LEN} new tokens")
            total -= ratio * PRE_LOOKAHEAD_LEN
        dtype, device = self.compute_dtype, self.device

        all_tokens = torch.cat([prompt_tokens.to(device), tokens.to(device)], dim=1)
        mu = self._encode(all_tokens, streaming, lookahead)
        spks = self.spk_embed_affine_layer(F.normalize(embedding.to(device, dtype), dim=1))
        cond = torch.zeros_like(mu)
        cond[:, :, :prompt_frames] = prompt_mel.to(device, dtype).transpose(1, 2)
        mask = torch.ones(1, 1, total, dtype=dtype, device=device)
        backend = estimator if estimator is not None else TorchEstimator(self.decoder.estimator, streaming)
        mel = self.decoder.solve(mu, mask, spks, cond, n_steps, backend)
        return mel[:, :, prompt_frames:].float()


def _check_tokens(name: str, tokens: Tensor, vocab_size: int) -> None:
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise ValueError(f"{name} must have shape (1, L), got {tuple(tokens.shape)}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got {tokens.dtype}")
    # One host sync per call, outside the ODE loop; a clear message beats a CUDA index assert.
    if tokens.numel() and int(tokens.max()) >= vocab_size:
        raise ValueError(f"{name} holds ids >= {vocab_size} (stop/eos tokens must be removed first)")
