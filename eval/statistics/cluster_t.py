"""Two-way cluster-robust variance, df and third cumulant of means, for many data sets at once.

Every function takes (R, N) arrays, R data sets that share one design (observation i belongs to
listener ``listener[i]`` and text ``text[i]``): R = 1 for a report, R = thousands of simulated
tests for eval/statistics/simulate_verdict.py, which therefore measures exactly the code the report runs.
The bounds built on these moments are in eval/statistics/verdict_bounds.py.

The estimators are weighted means theta = sum_i a_i z_i (a MOS: a_i = 1/N; the non-inferiority
contrast d = mean_v - k * mean_base: a_i = 1/N_v on v's ratings, -k/N_b on the baseline's), with
influence contributions psi_i = a_i (z_i - mean of z_i's side).

Plain CGM (:func:`cgm_moments`, ``method="cgm"``)
    V = V_listener + V_text - V_cell, each part G / (G - 1) * sum over clusters of (cluster sum of
    psi)^2 (Cameron, Gelbach & Miller 2011); max(V_listener, V_text) when V is not positive; the
    clamped Satterthwaite df of eval/statistics/cgm.py.

Small-sample form (:func:`small_sample_moments`, the default ``method="cluster-t"``)
    Three corrections, each exact in a case where the plain form is not:

    * jackknife (CV3) cluster sums: each listener's (text's) sum of psi is divided by
      1 - h, h its share of its side's observations, with the factor (G - 1) / G. This is the
      leave-one-cluster-out jackknife of a weighted mean, equal to the plain part in a balanced
      design; with unequal clusters (one listener rates 40 texts, others 8) the plain part is
      biased low (heavy listeners pull the mean towards themselves) and CV3 is the recommended
      fix (MacKinnon, Nielsen & Webb 2023, J. Econometrics 232(2)).
    * V_cell without the listener and text spread: the cell sums of psi also carry the listener
      and text offsets (about (var_listener + var_text) / N), which makes V biased low by about
      1 / texts; that leak, estimated under the working model below, is subtracted. In a balanced
      design V is then the unbiased ANOVA estimator (MS_listener + MS_text - MS_error) / N.
    * df from a working model (Bell & McCaffrey 2002; Imbens & Kolesar 2016, Rev. Econ. Stat.
      98(4)): with crossed random effects z = listener + text + residual, variances s_l, s_t, s_e
      estimated from the three parts by moments, each part is a quadratic form in z whose mean
      and variance follow from traces of the design: df = 2 E[V]^2 / Var[V] (listener and text
      parts exact, the cell part as a chi^2 with C - 1 df), clamped to [1, min(L, T) - 1]. It is
      L - 1 when listeners dominate a balanced test and falls with unequal listeners, where the
      plain G - 1 promises far too much.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

MIN_VARIANCE_CLUSTERS = 2  # a one-way variance needs two clusters (G / (G - 1))
MIN_SKEW_CLUSTERS = 3  # a third cumulant needs three (G^2 / ((G - 1)(G - 2)))
PARTS = ("listener", "text", "cell")


def _indicator(codes: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    """(N, G) one-hot membership matrix of integer codes 0..G-1."""
    n = codes.size
    return sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, n_groups))


@dataclass(frozen=True, eq=False)
class ClusterDesign:
    """Listener, text and listener x text cell of each of N observations (dense codes from 0)."""

    listener: np.ndarray  # (N,) int64
    text: np.ndarray  # (N,) int64
    cell: np.ndarray  # (N,) int64
    n_listeners: int
    n_texts: int
    n_cells: int

    @classmethod
    def from_codes(cls, listener: np.ndarray, text: np.ndarray) -> ClusterDesign:
        """From any ids (N,) each; codes are assigned in sorted order of the ids as strings."""
        listener, text = np.asarray(listener), np.asarray(text)
        if listener.shape != text.shape or listener.ndim != 1:
            raise ValueError(
                f"listener and text must be (N,) of one length, got {listener.shape}, {text.shape}"
            )
        l_codes, l_uniques = pd.factorize(pd.Series(listener).astype(str), sort=True)
        t_codes, t_uniques = pd.factorize(pd.Series(text).astype(str), sort=True)
        cell, c_uniques = pd.factorize(l_codes.astype(np.int64) * max(1, len(t_uniques)) + t_codes)
        return cls(
            l_codes.astype(np.int64),
            t_codes.astype(np.int64),
            cell.astype(np.int64),
            len(l_uniques),
            len(t_uniques),
            len(c_uniques),
        )

    @classmethod
    def paired(cls, listener: np.ndarray, text: np.ndarray) -> ClusterDesign:
        """The design of N paired judgements seen as 2N ratings, v's first."""
        return cls.from_codes(np.concatenate([listener, listener]), np.concatenate([text, text]))

    @property
    def n_observations(self) -> int:
        return int(self.listener.size)

    def codes(self, part: str) -> tuple[np.ndarray, int]:
        """(codes (N,), number of clusters) of "listener", "text" or "cell"."""
        return {
            "listener": (self.listener, self.n_listeners),
            "text": (self.text, self.n_texts),
            "cell": (self.cell, self.n_cells),
        }[part]

    @cached_property
    def indicators(self) -> dict[str, sparse.csr_matrix]:
        """(N, G) one-hot membership of each part."""
        return {part: _indicator(*self.codes(part)) for part in PARTS}

    def sums(self, psi: np.ndarray, part: str) -> np.ndarray:
        """Cluster sums (R, G) of psi (R, N) over one part."""
        return np.asarray(self.indicators[part].T @ psi.T).T


@dataclass(frozen=True, eq=False)
class TwoWayMoments:
    """Two-way cluster-robust variance, df and third cumulant of R estimates (each array (R,))."""

    variance: np.ndarray  # V_listener + V_text - V_cell, or max(V_listener, V_text) (fallback)
    v_listener: np.ndarray
    v_text: np.ndarray
    v_cell: np.ndarray
    df: np.ndarray  # degrees of freedom of the t quantile (0 when there are too few clusters)
    fallback: np.ndarray  # bool: the two-way combination was not positive
    third: np.ndarray  # K_listener + K_text - K_cell; NaN with fewer than MIN_SKEW_CLUSTERS

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.variance)

    @property
    def skewness(self) -> np.ndarray:
        """g = K3 / V^1.5, the estimated skewness of the estimate (0 where V is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.variance > 0, self.third / self.variance**1.5, 0.0)


def nan_moments(r: int) -> TwoWayMoments:
    nan = np.full(r, np.nan)
    return TwoWayMoments(nan, nan, nan, nan, np.zeros(r), np.zeros(r, dtype=bool), nan)


def one_way_moments(
    sums: np.ndarray, n_groups: int, *, jackknife: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Second and third moment parts of one clustering from its cluster sums (R, G).

    Plain: G / (G-1) sum s^2 and G^2 / ((G-1)(G-2)) sum s^3 (the unbiased k-statistic of a sum
    of G independent cluster totals). ``jackknife``: sums already divided by 1 - h; the factors
    (G-1)/G and (G-1)^2 / (G (G-2)) make both equal to the plain ones in a balanced design.
    NaN with fewer than MIN_VARIANCE_CLUSTERS / MIN_SKEW_CLUSTERS clusters.
    """
    g, r = n_groups, sums.shape[0]
    second, third = np.full(r, np.nan), np.full(r, np.nan)
    if g >= MIN_VARIANCE_CLUSTERS:
        second = ((g - 1) / g if jackknife else g / (g - 1)) * np.einsum("rg,rg->r", sums, sums)
    if g >= MIN_SKEW_CLUSTERS:
        factor = (g - 1) ** 2 / (g * (g - 2)) if jackknife else g * g / ((g - 1) * (g - 2))
        third = factor * (sums**3).sum(axis=1)
    return second, third


def satterthwaite_df(variance: np.ndarray, spread: np.ndarray, n_listeners: int, n_texts: int) -> np.ndarray:
    """variance^2 / spread clamped to [1 / (1/(L-1) + 1/(T-1)), min(L, T) - 1] (eval/statistics/cgm.py).

    spread: sum over the three one-way parts of part^2 / (its clusters - 1). With no spread at all
    (every psi 0) the upper end is returned: the interval has zero width whatever the df.
    """
    low = 1.0 / (1.0 / (n_listeners - 1) + 1.0 / (n_texts - 1))
    high = float(min(n_listeners, n_texts) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(spread > 0, variance**2 / spread, high)
    return np.clip(raw, low, high)


def combine_parts(v_l: np.ndarray, v_t: np.ndarray, v_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, fallback): V_l + V_t - V_c, or max(V_l, V_t) where that is not positive."""
    combined = v_l + v_t - v_c
    fallback = ~(combined > 0.0)
    return np.where(fallback, np.maximum(v_l, v_t), combined), fallback


def cgm_moments(psi: np.ndarray, design: ClusterDesign) -> TwoWayMoments:
    """Plain CGM moments of the R estimates whose influence contributions are psi (R, N)."""
    psi = np.atleast_2d(np.asarray(psi, dtype=float))
    if psi.shape[1] != design.n_observations:
        raise ValueError(f"psi has {psi.shape[1]} columns, the design {design.n_observations} observations")
    n_l, n_t, n_c = design.n_listeners, design.n_texts, design.n_cells
    if min(n_l, n_t) < MIN_VARIANCE_CLUSTERS:
        return nan_moments(psi.shape[0])
    (v_l, k_l), (v_t, k_t), (v_c, k_c) = (
        one_way_moments(design.sums(psi, part), design.codes(part)[1]) for part in PARTS
    )
    variance, fallback = combine_parts(v_l, v_t, v_c)
    # C >= max(L, T) >= 2 non-empty cells, so no denominator is zero.
    spread = v_l**2 / (n_l - 1) + v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1)
    df = satterthwaite_df(variance, spread, n_l, n_t)
    return TwoWayMoments(variance, v_l, v_t, v_c, df, fallback, k_l + k_t - k_c)


@dataclass(frozen=True, eq=False)
class LinearEstimator:
    """theta = sum_i weights_i z_i over the N observations of ``design``; ``side`` says which mean
    an observation belongs to (psi is centred per side): all 0 for a MOS, 0 = v / 1 = baseline
    for the non-inferiority contrast."""

    design: ClusterDesign
    weights: np.ndarray  # (N,) a_i
    side: np.ndarray  # (N,) int64 codes from 0

    @classmethod
    def mean(cls, design: ClusterDesign) -> LinearEstimator:
        n = design.n_observations
        return cls(design, np.full(n, 1.0 / n), np.zeros(n, dtype=np.int64))

    @classmethod
    def contrast(cls, design: ClusterDesign, n_v: int, keep: float) -> LinearEstimator:
        """mean of the first n_v observations minus keep * mean of the others."""
        n_b = design.n_observations - n_v
        weights = np.concatenate([np.full(n_v, 1.0 / n_v), np.full(n_b, -keep / n_b)])
        return cls(design, weights, np.repeat(np.array([0, 1], dtype=np.int64), [n_v, n_b]))

    @cached_property
    def side_sizes(self) -> np.ndarray:
        return np.bincount(self.side)

    def influence(self, z: np.ndarray) -> np.ndarray:
        """psi (R, N) of z (R, N): a_i (z_i - mean of z_i's side)."""
        means = np.stack([z[:, self.side == s].mean(axis=1) for s in range(self.side_sizes.size)], axis=1)
        return self.weights * (z - means[:, self.side])

    def centre(self, m: np.ndarray) -> np.ndarray:
        """(I - P) m for m (N, k): each column minus its side means (P averages within a side)."""
        out = np.array(m, dtype=float)
        for s in range(self.side_sizes.size):
            rows = self.side == s
            out[rows] -= out[rows].mean(axis=0)
        return out

    @cached_property
    def jackknife_scale(self) -> dict[str, np.ndarray]:
        """Per part, 1 / (1 - h) (N,): h the share of its side's observations in its cluster."""
        out = {}
        for part in ("listener", "text"):
            codes, n_groups = self.design.codes(part)
            counts = np.zeros((n_groups, self.side_sizes.size))
            np.add.at(counts, (codes, self.side), 1.0)
            share = counts[codes, self.side] / self.side_sizes[self.side]
            out[part] = 1.0 / (1.0 - np.minimum(share, 1.0 - 1e-12))
        out["cell"] = np.ones(self.design.n_observations)
        return out
