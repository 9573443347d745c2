"""Repetition-aware sampling against hand-computed distributions (chi-square goodness of fit)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import chisquare

from tts_core.llm.sampling import SamplingParams, draw_uniforms, ras_sample

PARAMS = SamplingParams(top_p=0.8, top_k=25, win_size=10, tau_r=0.1)
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
N = 4000


def draw(history: list[int], params: SamplingParams = PARAMS, seed: int = 0) -> np.ndarray:
    u = draw_uniforms(N, torch.Generator().manual_seed(seed), torch.device("cpu"))
    hist = torch.tensor(history + [-1] * (params.win_size - len(history)))
    logp = PROBS.log()
    return np.array([int(ras_sample(logp, hist, params, u[i])) for i in range(N)])


def test_nucleus_takes_tokens_while_mass_below_top_p():
    # Official rule: take 0.5 (mass 0 < 0.8), 0.3 (mass 0.5 < 0.8), stop at 0.15 (mass 0.8).
    counts = np.bincount(draw([]), minlength=4)
    assert counts[2] == counts[3] == 0
    assert chisquare(counts[:2], N * np.array([0.625, 0.375])).pvalue > 1e-3


def test_top_k_caps_the_nucleus():
    counts = np.bincount(draw([], SamplingParams(0.99, 1, 10, 0.1)), minlength=4)
    assert counts[0] == N


def test_repeated_token_falls_back_to_full_distribution_without_it():
    # Every nucleus draw is 0 or 1; both are in the history, so the fallback draws from the full
    # softmax without the drawn token: after 0 -> {1: .6, 2: .3, 3: .1}; after 1 -> {0: 5/7, ...}.
    samples = draw([0, 1])
    counts = np.bincount(samples, minlength=4)
    expected = 0.625 * np.array([0, 0.6, 0.3, 0.1]) + 0.375 * np.array([0.5, 0, 0.15, 0.05]) / 0.7
    assert chisquare(counts, N * expected).pvalue > 1e-3


def test_forbidden_tokens_are_never_drawn():
    logp = PROBS.log().clone()
    logp[0] = float("-inf")
    u = draw_uniforms(500, torch.Generator().manual_seed(1), torch.device("cpu"))
    hist = torch.full((10,), -1)
    assert all(int(ras_sample(logp, hist, PARAMS, u[i])) != 0 for i in range(500))


def test_same_seed_same_tokens():
    assert (draw([], seed=3)[:200] == draw([], seed=3)[:200]).all()
    assert (draw([], seed=3)[:200] != draw([], seed=4)[:200]).any()
