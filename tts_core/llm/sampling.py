"""Repetition-aware sampling (RAS), the official CosyVoice2 sampler, written without host syncs.

Official behaviour (cosyvoice/utils/common.py ``ras_sampling``): take the most probable tokens,
in descending order, while the probability mass taken so far is below ``top_p`` and fewer than
``top_k`` were taken; draw one of them in proportion to its probability. If the drawn token
occurs at least ``win_size * tau_r`` times among the last ``win_size`` generated tokens, forbid it
and draw from the full distribution instead.

Here both draws are always made and the result is chosen with ``torch.where``, so a step has no
data-dependent Python branch and can run inside a CUDA graph. Draws are inverse-CDF lookups of
uniform numbers drawn up front from a seeded generator (:func:`draw_uniforms`), so the eager and
the graph-captured decoders consume identical randomness: same seed, same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

UNIFORMS_PER_STEP = 2  # one for the nucleus draw, one for the repetition fallback


@dataclass(frozen=True)
class SamplingParams:
    top_p: float  # nucleus probability mass
    top_k: int  # nucleus size cap (a Python int: it sets a tensor shape)
    win_size: int  # repetition window (tokens)
    tau_r: float  # repetition ratio threshold

    @property
    def repeat_threshold(self) -> float:
        return self.win_size * self.tau_r


def draw_uniforms(n_steps: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(n_steps, 2) float32 uniforms in [0, 1): all the randomness one decode needs."""
    return torch.rand(n_steps, UNIFORMS_PER_STEP, generator=generator, device=device)


def _pick(weights: Tensor, u: Tensor) -> Tensor:
    """Index drawn with probability proportional to ``weights`` (V,) >= 0, given u (1,) in [0, 1)."""
    cdf = weights.cumsum(dim=-1)
    target = u * cdf[-1:]
    return torch.searchsorted(cdf, target, right=True).clamp_(max=weights.shape[-1] - 1)


def ras_sample(scores: Tensor, history: Tensor, params: SamplingParams, uniforms: Tensor) -> Tensor:
    """Draw one token.

    scores:   (V,) float32 logits or log-probabilities (same softmax), forbidden tokens at -inf
    history:  (win_size,) int64, the last generated tokens, -1 where fewer were generated
    uniforms: (2,) float32 in [0, 1), from :func:`draw_uniforms`
    returns:  (1,) int64 token id on scores' device
    """
    probs = scores.softmax(dim=-1)
    # The nucleus never holds more than top_k tokens, so the top_k largest (in descending order)
    # are all the sort the official rule needs.
    sorted_p, order = probs.topk(min(params.top_k, probs.shape[-1]))
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    nucleus = torch.where(mass_before < params.top_p, sorted_p, torch.zeros_like(sorted_p))
    choice = order[_pick(nucleus, uniforms[0:1])]

    repeats = (history == choice).sum()
    fallback_p = probs.scatter(0, choice, torch.zeros_like(choice, dtype=probs.dtype))
    # A one-hot distribution leaves nothing to fall back to; keep the choice then.
    fallback_p = torch.where(fallback_p.sum() > 0, fallback_p, probs)
    fallback = _pick(fallback_p, uniforms[1:2])
    return torch.where(repeats >= params.repeat_threshold, fallback, choice)
