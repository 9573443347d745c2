"""Analytic two-way cluster-robust variance of a mean (Cameron, Gelbach & Miller 2011).

Ratings are clustered twice over: by listener and by text. For an estimator that is a weighted mean
of the ratings, theta = sum_i w_i y_i, write its influence contributions
``psi_i = w_i * (y_i - mean of y_i's group)`` (for a plain mean of N ratings, psi_i = (y_i - ybar) / N).
The one-way cluster-robust (sandwich) variance with clusters g is::

    V_g = G / (G - 1) * sum_g (sum_{i in g} psi_i)^2          (G = number of clusters)

and the two-way variance of Cameron, Gelbach & Miller (2011, J. Bus. Econ. Stat. 29(2)) is::

    V = V_listener + V_text - V_cell        (cell = listener x text intersection)

V_listener counts the listener spread and the residual once, V_text the text spread and the
residual once, V_cell the residual once, so V counts every component once (unlike the pigeonhole
bootstrap, which counts the residual about three times; see eval/stats.py). With balanced data and
only a residual term, each of the three is an exactly unbiased estimate of sigma^2 / N thanks to
the G / (G - 1) factor (CGM's small-sample factor; its (N - 1) / (N - K) part is 1 for a mean), so
V is too. With listener and text effects, V_cell also picks up about (var_listener + var_text) / N,
a small downward bias of order 1 / (texts) and 1 / (listeners) relative to the main terms.

NOTE: V can be zero or negative in small samples when both main effects are weak (V_cell > V_listener
+ V_text by chance). Then max(V_listener, V_text) is used instead: the one-way variance of the
clustering that shows more spread, which still counts the residual once. (Eigenvalue clipping,
CGM's matrix fix, would give 0 for a scalar, i.e. a zero-width interval.) ``fallback`` records it.

Intervals use Student t with df = min(listeners, texts) - 1: the variance is estimated from that
few independent clusters in the scarcer dimension (Cameron & Miller 2015 recommend G - 1).
NOTE: that df suits a MOS, where listener and text spread dominate (measured one-sided level 4.9%
at nominal 5%, 15 x 12 and 8 x 10 designs). When the residual dominates, as for a paired
difference, V is a difference of three noisy terms with about 1 / (1/(L-1) + 1/(T-1)) degrees of
freedom, fewer than min(L, T) - 1, and the bound is slightly liberal: measured one-sided level
5.8-6.0% at nominal 5% (12 x 10 and 24 x 20, residual only, 10 000 simulations each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MIN_CLUSTERS = 2  # a one-way variance needs at least two clusters (G / (G - 1))


@dataclass(frozen=True)
class TwoWayVariance:
    """The two-way cluster-robust variance of one estimate and its parts."""

    variance: float  # what intervals use: v_listener + v_text - v_cell, or the fallback
    v_listener: float  # one-way, clusters = listeners
    v_text: float  # one-way, clusters = texts
    v_cell: float  # one-way, clusters = listener x text cells
    df: int  # min(listeners, texts) - 1, the degrees of freedom of the t quantile
    fallback: bool  # True when v_listener + v_text - v_cell <= 0 and max(v_listener, v_text) is used

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))


def one_way_variance(psi: np.ndarray, groups: np.ndarray) -> float:
    """G / (G - 1) * sum_g (sum_{i in g} psi_i)^2 over the G non-empty groups.

    psi: (N,) influence contributions; groups: (N,) integer codes >= 0. NaN with fewer than
    MIN_CLUSTERS groups.
    """
    sums = np.bincount(groups, weights=psi)
    n_groups = int(np.count_nonzero(np.bincount(groups)))
    if n_groups < MIN_CLUSTERS:
        return float("nan")
    return float(n_groups / (n_groups - 1) * np.dot(sums, sums))


def two_way_variance(psi: np.ndarray, listener: np.ndarray, text: np.ndarray) -> TwoWayVariance:
    """Two-way variance of the estimate whose influence contributions are psi (N,).

    listener, text: (N,) integer codes >= 0 of each contribution's listener and text. All parts are
    NaN with fewer than MIN_CLUSTERS listeners or texts.
    """
    psi = np.asarray(psi, dtype=float)
    listener, text = np.asarray(listener, dtype=np.int64), np.asarray(text, dtype=np.int64)
    if not psi.shape == listener.shape == text.shape or psi.ndim != 1:
        raise ValueError(
            f"psi, listener and text must be (N,) arrays of one length, got {psi.shape}, "
            f"{listener.shape}, {text.shape}"
        )
    n_listeners = int(np.count_nonzero(np.bincount(listener))) if listener.size else 0
    n_texts = int(np.count_nonzero(np.bincount(text))) if text.size else 0
    if min(n_listeners, n_texts) < MIN_CLUSTERS:
        nan = float("nan")
        return TwoWayVariance(nan, nan, nan, nan, max(0, min(n_listeners, n_texts) - 1), False)
    cell = listener * (int(text.max()) + 1) + text
    v_l = one_way_variance(psi, listener)
    v_t = one_way_variance(psi, text)
    v_c = one_way_variance(psi, cell)
    combined = v_l + v_t - v_c
    fallback = not combined > 0.0
    variance = max(v_l, v_t) if fallback else combined
    return TwoWayVariance(float(variance), v_l, v_t, v_c, min(n_listeners, n_texts) - 1, fallback)


def mean_influence(y: np.ndarray) -> np.ndarray:
    """(y_i - ybar) / N: the influence contributions of a plain mean of y (N,)."""
    y = np.asarray(y, dtype=float)
    return (y - y.mean()) / y.size


def t_quantile(level: float, df: int) -> float:
    """The ``level`` quantile of Student t with ``df`` degrees of freedom (NaN when df < 1)."""
    return float(sps.t.ppf(level, df)) if df >= 1 else float("nan")
