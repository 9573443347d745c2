"""Repetition-aware sampling (RAS), the official CosyVoice2 sampler, written without host syncs.

Official behaviour (cosyvoice/utils/common.py ``ras_sampling``): take the most probable tokens,
in descending order, while the probability mass taken so far is below ``top_p`` and fewer than
``top_k`` were taken; draw one of them in proportion to its probability. If the drawn token
occurs at least ``win_size * tau_r`` times among the last ``win_size`` generated tokens, forbid it
and draw from the full distribution instead.

Here both draws are always made and the result is chosen with ``torch.where``, so the step has
no data-dependent Python branch (it can run inside a CUDA graph). Draws come from an explicit
``torch.Generator``: same seed, same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    top_p: float  # nucleus probability mass
    top_k: int  # nucleus size cap
    win_size: int  # repetition window (tokens)
    tau_r: float  # repetition ratio threshold

    @property
    def repeat_threshold(self) -> float:
        return self.win_size * self.tau_r


def ras_sample(
    logp: Tensor, history: Tensor, params: SamplingParams, generator: torch.Generator | None
) -> Tensor:
    """Draw one token.

    logp:    (V,) float32 log-probabilities, forbidden tokens already at -inf
    history: (win_size,) int64, the last generated tokens, -1 where fewer were generated
    returns: (1,) int64 token id on logp's device
    """
    probs = logp.softmax(dim=-1)
    sorted_p, order = probs.sort(descending=True, stable=True)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    rank = torch.arange(sorted_p.shape[-1], device=probs.device)
    keep = (mass_before < params.top_p) & (rank < params.top_k)
    nucleus = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
    choice = order[torch.multinomial(nucleus, 1, replacement=True, generator=generator)]

    repeats = (history == choice).sum()
    fallback_p = probs.scatter(0, choice, torch.zeros_like(choice, dtype=probs.dtype))
    # A one-hot distribution leaves nothing to fall back to; keep the choice then.
    fallback_p = torch.where(fallback_p.sum() > 0, fallback_p, probs)
    fallback = torch.multinomial(fallback_p, 1, replacement=True, generator=generator)
    return torch.where(repeats >= params.repeat_threshold, fallback, choice)
