"""The generative model of a paired A/B listening test, for the planner and the verdict simulation.

One paired judgement (listener l, text t) of configuration v against the baseline, on a latent
scale that is then rounded and clipped to the 1..5 buttons (``discrete=True``)::

    score_base = mu_base + a_l + b_t + e1
    score_v    = mu_v    + a_l + s_l + b_t + c_t + e2
    a_l ~ N(0, listener_sd^2)       a listener is strict or lenient on everything
    b_t ~ N(0, text_sd^2)           a sentence is hard or easy for every configuration
    s_l ~ N(0, listener_drop_sd^2)  listeners differ in how much they hear the degradation
    c_t ~ N(0, text_drop_sd^2)      sentences differ in how much the degradation shows
    e1, e2 ~ N(0, residual_sd^2), all independent

``mu_base``/``mu_v`` are chosen so that the EXPECTED observed MOS is ``base_mos`` and
``(1 - true_drop) * base_mos`` (rounding and clipping included), so a true drop equal to the
non-inferiority margin is exactly the boundary of the null hypothesis. NOTE: near the top of the
scale the clipping makes listener means of score_v - k * score_base skewed to the left (a
listener who hears v better cannot go above 5, one who hears it worse can drop freely): that is
what makes a symmetric t bound pass too often (eval/statistics/cluster_t.py).

A :class:`PairedDesign` says which listener judged which text; :func:`simulate_tests` draws R
independent tests of one design at once as (R, N) arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

from eval.statistics.ratings_io import SCORE_MAX, SCORE_MIN


@dataclass(frozen=True)
class VarianceComponents:
    """Spread of scores, in score points (standard deviations)."""

    listener_sd: float  # a listener's offset on every configuration (strict vs lenient)
    text_sd: float  # a text's offset on every configuration (hard vs easy sentence)
    residual_sd: float  # one rating around listener + text + configuration
    listener_drop_sd: float = 0.0  # listeners differ in how much they hear the tested degradation
    text_drop_sd: float = 0.0  # texts differ in how much the tested degradation shows

    def __post_init__(self) -> None:
        for name in ("listener_sd", "text_sd", "residual_sd", "listener_drop_sd", "text_drop_sd"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.residual_sd == 0:
            raise ValueError("residual_sd must be > 0 (real ratings always vary)")

    @property
    def base_sd(self) -> float:
        """Latent sd of one baseline score (all components that the baseline shares)."""
        return math.sqrt(self.listener_sd**2 + self.text_sd**2 + self.residual_sd**2)

    @property
    def tested_sd(self) -> float:
        """Latent sd of one score of the tested configuration (adds the two drop spreads)."""
        return math.sqrt(self.base_sd**2 + self.listener_drop_sd**2 + self.text_drop_sd**2)


def expected_discrete_mos(latent_mean: float, sd: float) -> float:
    """E[clip(round(X), 1, 5)] for X ~ N(latent_mean, sd^2), from the normal CDF."""
    edges = np.arange(SCORE_MIN, SCORE_MAX) + 0.5  # 1.5, 2.5, 3.5, 4.5
    cdf = sps.norm.cdf((edges - latent_mean) / sd)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return float(np.dot(np.arange(SCORE_MIN, SCORE_MAX + 1), probs))


def latent_mean_for(mos: float, sd: float) -> float:
    """The latent mean whose rounded, clipped scores have expected value ``mos``."""
    if not SCORE_MIN < mos < SCORE_MAX:
        raise ValueError(f"a MOS must be strictly between {SCORE_MIN} and {SCORE_MAX}, got {mos}")
    span = 10.0 * sd + SCORE_MAX
    return float(optimize.brentq(lambda m: expected_discrete_mos(m, sd) - mos, -span, span, xtol=1e-10))


@dataclass(frozen=True, eq=False)
class PairedDesign:
    """Which listener judged which text: judgement i is (listener[i], text[i]), codes from 0."""

    listener: np.ndarray  # (N,) int64
    text: np.ndarray  # (N,) int64
    n_listeners: int
    n_texts: int

    def __post_init__(self) -> None:
        if self.listener.shape != self.text.shape or self.listener.ndim != 1 or not self.listener.size:
            raise ValueError("a design needs (N,) listener and text codes of one length, N >= 1")

    @property
    def n_judgements(self) -> int:
        return int(self.listener.size)

    @classmethod
    def balanced(cls, n_listeners: int, n_texts: int) -> PairedDesign:
        """Every listener judges every text once."""
        if n_listeners < 1 or n_texts < 1:
            raise ValueError(f"need at least one listener and text, got {n_listeners} x {n_texts}")
        listener = np.repeat(np.arange(n_listeners, dtype=np.int64), n_texts)
        text = np.tile(np.arange(n_texts, dtype=np.int64), n_listeners)
        return cls(listener, text, n_listeners, n_texts)

    @classmethod
    def with_dropout(
        cls, n_listeners: int, n_texts: int, min_share: float, rng: np.random.Generator
    ) -> PairedDesign:
        """Listener l judges the first n_l texts of their own shuffled list (a listener who stops
        early), n_l uniform in [min_share * T, T]; a text nobody judged is dropped."""
        if not 0.0 < min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {min_share}")
        low = max(1, math.ceil(min_share * n_texts))
        parts_l, parts_t = [], []
        for listener in range(n_listeners):
            count = int(rng.integers(low, n_texts + 1))
            parts_t.append(rng.permutation(n_texts)[:count])
            parts_l.append(np.full(count, listener))
        text = np.concatenate(parts_t)
        used, text = np.unique(text, return_inverse=True)
        return cls(np.concatenate(parts_l).astype(np.int64), text.astype(np.int64), n_listeners, used.size)

    @classmethod
    def heavy_and_light(cls, n_heavy: int, n_light: int, n_texts: int, light_texts: int) -> PairedDesign:
        """n_heavy listeners judge all n_texts; n_light listeners judge only the first light_texts."""
        if not 1 <= light_texts <= n_texts:
            raise ValueError(f"light_texts must be in [1, {n_texts}], got {light_texts}")
        counts = [n_texts] * n_heavy + [light_texts] * n_light
        listener = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        text = np.concatenate([np.arange(c, dtype=np.int64) for c in counts])
        return cls(listener, text, len(counts), n_texts)


def simulate_tests(
    components: VarianceComponents,
    design: PairedDesign,
    *,
    base_mos: float,
    true_drop: float,
    n_tests: int,
    rng: np.random.Generator,
    discrete: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """R = n_tests independent tests of ``design``: ``(score_v, score_base)``, each (R, N)."""
    c = components
    mu_b, mu_v = base_mos, base_mos * (1.0 - true_drop)
    if discrete:
        mu_b = latent_mean_for(mu_b, c.base_sd)
        mu_v = latent_mean_for(mu_v, c.tested_sd)
    r, n = n_tests, design.n_judgements
    a = rng.normal(0.0, c.listener_sd, (r, design.n_listeners))[:, design.listener]
    s = rng.normal(0.0, c.listener_drop_sd, (r, design.n_listeners))[:, design.listener]
    b = rng.normal(0.0, c.text_sd, (r, design.n_texts))[:, design.text]
    t = rng.normal(0.0, c.text_drop_sd, (r, design.n_texts))[:, design.text]
    y_b = mu_b + a + b + rng.normal(0.0, c.residual_sd, (r, n))
    y_v = mu_v + a + s + b + t + rng.normal(0.0, c.residual_sd, (r, n))
    if discrete:
        y_b = np.clip(np.rint(y_b), SCORE_MIN, SCORE_MAX)
        y_v = np.clip(np.rint(y_v), SCORE_MIN, SCORE_MAX)
    return y_v, y_b
