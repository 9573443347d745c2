"""MOS intervals and non-inferiority lower bounds from two-way cluster moments, for R data sets.

The analytic methods of eval.statistics.stats, for many data sets at once (R = 1 in a report, thousands in
eval/statistics/simulate_verdict.py and the planner), so that the simulation measures the report's code.
The moments are eval/statistics/cluster_t.py's (plain CGM) or eval/statistics/working_model.py's (small-sample form).

One-sided skewness correction (the default ``method="cluster-t"``)
    Near the top of the 1..5 scale the listener means of D = score_v - k * score_base are
    skewed to the left (a listener who hears v better is stopped by the ceiling, one who hears it
    worse is not; a degradation that only some listeners hear gives a long left tail). For a
    studentised mean whose estimate has skewness g, P(T <= x) = Phi(x) + g (2 x^2 + 1) phi(x) / 6
    + O(1/n) (Hall 1992, The Bootstrap and Edgeworth Expansion, sec. 2.6), so with g < 0 a
    symmetric t bound passes too often, by about |g| (2 z^2 + 1) phi(z) / 6: an error of order
    1 / sqrt(listeners) that more listeners shrink only slowly (measured with plain CGM: 6.0% at
    nominal 5% with 12 listeners at MOS 4.3). g = K3 / V^1.5 with K3 the two-way third cumulant
    of eval/statistics/cluster_t.py, and the bound uses Hall's (1992, J. R. Statist. Soc. B 54(1)) monotone
    transformation f(T) = T + g T^2 / 3 + g^2 T^3 / 27 + g / 6: the critical value is
    T_crit = (3 / g) (cbrt(1 + g (q - g / 6)) - 1), q the t quantile. NOTE: the correction is
    applied only when it makes the test stricter (g < 0): g from a handful of listeners is noisy,
    and a positive estimate must not buy a pass. MOS intervals stay symmetric (two-sided coverage
    has no first-order skewness error).

Why not the alternatives
    A linear mixed model (e.g. statsmodels MixedLM with crossed variance components) estimates
    the same components, but statsmodels offers no small-sample (Satterthwaite/Kenward-Roger) df
    and, being normal-theory, is as blind to the ceiling skew as the symmetric t. A wild cluster
    bootstrap with symmetric weights (Rademacher/Webb; MacKinnon, Nielsen & Webb 2021) yields a
    symmetric reference distribution too, and with L listeners has only 2^L (Rademacher)
    distinct draws. Measured properties of every method: docs/verdict-validation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from eval.statistics.cluster_t import MIN_SKEW_CLUSTERS, LinearEstimator, TwoWayMoments, cgm_moments
from eval.statistics.working_model import WorkingTraces, small_sample_moments


@dataclass(frozen=True)
class BoundRule:
    """How an analytic method turns data into bounds (eval.statistics.stats maps method names to rules)."""

    small_sample: bool  # jackknife parts, leak-free V_cell, working-model df (else plain CGM)
    skew_correction: bool  # Hall's one-sided correction of the non-inferiority bound


RULE_CLUSTER_T = BoundRule(small_sample=True, skew_correction=True)
RULE_CGM = BoundRule(small_sample=False, skew_correction=False)


def moments(
    z: np.ndarray, est: LinearEstimator, rule: BoundRule, traces: WorkingTraces | None = None
) -> TwoWayMoments:
    """The two-way moments of est's estimate for each row of z (R, N) under ``rule``."""
    z = np.atleast_2d(np.asarray(z, dtype=float))
    if rule.small_sample:
        return small_sample_moments(z, est, traces)
    return cgm_moments(est.influence(z), est.design)


def t_quantile(level: float, df: np.ndarray) -> np.ndarray:
    """The ``level`` quantile of Student t with (possibly fractional) df; NaN where df <= 0."""
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(df > 0, sps.t.ppf(level, np.where(df > 0, df, 1.0)), np.nan)


def hall_critical_value(q: np.ndarray, skewness: np.ndarray) -> np.ndarray:
    """T_crit with f(T_crit) = q for Hall's f(T) = T + g T^2/3 + g^2 T^3/27 + g/6 (module docstring).

    q: t quantiles (R,); skewness: g (R,), used only where negative (elsewhere T_crit = q).
    """
    q = np.asarray(q, dtype=float)
    g = np.minimum(np.nan_to_num(np.asarray(skewness, dtype=float)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = 3.0 / g * (np.cbrt(1.0 + g * (q - g / 6.0)) - 1.0)
    return np.where(g < 0.0, crit, q)


def lower_bounds(estimate: np.ndarray, m: TwoWayMoments, confidence: float, rule: BoundRule) -> np.ndarray:
    """One-sided ``confidence`` lower bounds (R,): estimate - T_crit * se."""
    q = t_quantile(confidence, m.df)
    crit = hall_critical_value(q, m.skewness) if rule.skew_correction else q
    return np.asarray(estimate, dtype=float) - crit * m.se


def mean_intervals(
    y: np.ndarray,
    est: LinearEstimator,
    confidence: float,
    rule: BoundRule,
    traces: WorkingTraces | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high), each (R,), of the rows of y (R, N): mean +- t_{df,(1+c)/2} * sqrt(V).

    ``est`` must be ``LinearEstimator.mean`` of y's design.
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    mean = y @ est.weights
    m = moments(y, est, rule, traces)
    half = t_quantile(0.5 + confidence / 2.0, m.df) * m.se
    return mean, mean - half, mean + half


@dataclass(frozen=True, eq=False)
class RatioBounds:
    """Non-inferiority bounds of R data sets (each array (R,)); see :func:`ratio_lower_bounds`."""

    ratio: np.ndarray  # mean_v / mean_base
    ratio_lower: np.ndarray  # keep + d_lower / mean_base
    d_mean: np.ndarray  # mean_v - keep * mean_base
    d_lower: np.ndarray

    @property
    def passed(self) -> np.ndarray:
        """bool (R,): ratio_lower > keep, i.e. d_lower > 0."""
        return self.d_lower > 0.0


def ratio_lower_bounds(
    y_v: np.ndarray,
    y_base: np.ndarray,
    est: LinearEstimator,
    *,
    keep: float,
    confidence: float,
    rule: BoundRule,
    traces: WorkingTraces | None = None,
) -> RatioBounds:
    """Lower bounds of d = mean_v - keep * mean_base and of the ratio, for R data sets.

    y_v (R, Nv), y_base (R, Nb); ``est`` is ``LinearEstimator.contrast(design, Nv, keep)`` over
    the Nv + Nb observations, v's first (for paired data ``ClusterDesign.paired``: each
    judgement's two scores share a listener, a text and a cell). ``ratio_lower`` is d's bound
    carried to the ratio scale, keep + d_lower / mean_base: first order in the ratio, exact at
    the margin, so ratio_lower > keep exactly when d_lower > 0.
    """
    y_v, y_b = np.atleast_2d(np.asarray(y_v, dtype=float)), np.atleast_2d(np.asarray(y_base, dtype=float))
    z = np.concatenate([y_v, y_b], axis=1)
    mean_v, mean_b = y_v.mean(axis=1), y_b.mean(axis=1)
    d_mean = z @ est.weights
    d_lower = lower_bounds(d_mean, moments(z, est, rule, traces), confidence, rule)
    return RatioBounds(mean_v / mean_b, keep + d_lower / mean_b, d_mean, d_lower)


def min_clusters_for_bound(confidence: float) -> int:
    """Fewest listeners (or texts) for a one-sided bound at ``confidence``: 5 at 95%.

    With G clusters a test that assumes no shape of the cluster distribution (the sign-change
    randomisation test: Canay, Romano & Shaikh 2017, Econometrica 85(3)) has only 2^G equally
    likely outcomes, so it can reject at level 1 - confidence only when 2^-G <= 1 - confidence;
    below that any bound rests on a distributional assumption that the few clusters cannot
    check (and the skewness correction needs MIN_SKEW_CLUSTERS).
    """
    return max(MIN_SKEW_CLUSTERS, math.ceil(math.log2(1.0 / (1.0 - confidence)) - 1e-12))
