"""The small-sample two-way moments of the default method: jackknife parts, leak-free V_cell, df.

Eval/cluster_t.py's module docstring says what the three corrections are and why. This module
holds their arithmetic. The working model is crossed random effects on the observations,
Omega = s_l Z_l Z_l' + s_t Z_t Z_t' + s_e I (Z: one-hot listener / text membership), used only
to estimate how much each part of V fluctuates and how much listener and text spread leaks into
V_cell; V itself stays a cluster-robust estimator.

Each part is a quadratic form V_p = f_p ||W_p z||^2 with W_p = E_p' diag(r_p a) (I - P) (E_p the
part's membership, r_p the jackknife scale, a the estimator's weights, P the per-side mean), so
under the working model E[V_p] = f_p sum_c s_c ||W_p Z_c||^2 and, for normal z,
Var[V_p] = 2 f_p^2 sum_{c,d} s_c s_d tr(Q_pc Q_pd) with Q_pc = (W_p Z_c)(W_p Z_c)'. These traces
depend on the design only (:func:`working_traces`, computed once per design); each data set then
needs its three variance components, which the three observed parts give by moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from eval.statistics.cluster_t import (
    MIN_VARIANCE_CLUSTERS,
    LinearEstimator,
    TwoWayMoments,
    combine_parts,
    nan_moments,
    one_way_moments,
)

COMPONENTS = ("listener", "text", "residual")
SMOOTH_PARTS = ("listener", "text")  # parts whose fluctuation is taken from the working model


@dataclass(frozen=True, eq=False)
class WorkingTraces:
    """Design traces of the working model (rows: parts listener/text/cell; columns: COMPONENTS)."""

    coef: np.ndarray  # (3, 3): E[V_part] / f_part = coef[part] @ s
    quad: dict[str, np.ndarray]  # listener/text -> (3, 3): Var[V_part] = 2 f^2 s' quad s
    factors: np.ndarray  # (3,) f_part: (L-1)/L, (T-1)/T (jackknife), C/(C-1)


def _weighted_operator(est: LinearEstimator, part: str) -> np.ndarray:
    """W_p = E_p' diag(r_p a) (I - P) as a dense (G_p, N) matrix."""
    scale = est.jackknife_scale[part] * est.weights
    w = (est.design.indicators[part].T @ sparse.diags(scale)).toarray()
    for s, size in enumerate(est.side_sizes):
        cols = est.side == s
        w[:, cols] -= w[:, cols].sum(axis=1, keepdims=True) / size
    return w


def working_traces(est: LinearEstimator) -> WorkingTraces:
    """The traces of :class:`WorkingTraces` for one estimator (dense (G, N) work per part)."""
    design = est.design
    memberships = [design.indicators["listener"], design.indicators["text"]]
    coef = np.zeros((3, 3))
    quad = {}
    for row, part in enumerate(SMOOTH_PARTS):
        w = _weighted_operator(est, part)
        blocks = [np.asarray(z.T @ w.T).T for z in memberships] + [w]  # W_p Z_c, (G_p, n_c)
        grams = [b @ b.T for b in blocks]
        coef[row] = [np.trace(g) for g in grams]
        quad[part] = np.array([[np.sum(g * h) for h in grams] for g in grams])
    # The cell part: C is about N, so only its traces (no (C, C) matrices) are formed.
    scale = est.jackknife_scale["cell"] * est.weights
    cell = design.indicators["cell"]
    for col, z in enumerate(memberships):
        coef[2, col] = float(np.sum(np.asarray(cell.T @ (scale[:, None] * est.centre(z.toarray()))) ** 2))
    per_side = [np.asarray(cell.T @ np.where(est.side == s, scale, 0.0)) for s in range(est.side_sizes.size)]
    coef[2, 2] = float(np.sum(scale**2) - sum(np.sum(v**2) / n for v, n in zip(per_side, est.side_sizes)))
    n_l, n_t, n_c = design.n_listeners, design.n_texts, design.n_cells
    factors = np.array([(n_l - 1) / n_l, (n_t - 1) / n_t, n_c / (n_c - 1)])
    return WorkingTraces(coef, quad, factors)


def small_sample_moments(
    z: np.ndarray, est: LinearEstimator, traces: WorkingTraces | None = None
) -> TwoWayMoments:
    """Moments of R estimates theta = est.weights @ z_r for z (R, N), with the three corrections.

    ``traces``: :func:`working_traces` of ``est`` (computed here when not given; pass it when
    calling many times with one design).
    """
    z = np.atleast_2d(np.asarray(z, dtype=float))
    design = est.design
    n_l, n_t, n_c = design.n_listeners, design.n_texts, design.n_cells
    if min(n_l, n_t) < MIN_VARIANCE_CLUSTERS:
        return nan_moments(z.shape[0])
    traces = traces if traces is not None else working_traces(est)
    psi = est.influence(z)
    (v_l, k_l), (v_t, k_t) = (
        one_way_moments(design.sums(psi * est.jackknife_scale[p], p), design.codes(p)[1], jackknife=True)
        for p in SMOOTH_PARTS
    )
    v_c, k_c = one_way_moments(design.sums(psi, "cell"), n_c)
    f = traces.factors
    observed = np.stack([v_l, v_t, v_c], axis=1) / f  # (R, 3)
    comps = np.clip(observed @ np.linalg.pinv(traces.coef).T, 0.0, None)  # (R, 3) s_l, s_t, s_e
    leak = f[2] * (comps[:, 0] * traces.coef[2, 0] + comps[:, 1] * traces.coef[2, 1])
    v_c_clean = np.maximum(v_c - leak, 0.0)
    variance, fallback = combine_parts(v_l, v_t, v_c_clean)
    expected = f[0] * comps @ traces.coef[0] + f[1] * comps @ traces.coef[1]
    expected -= f[2] * comps[:, 2] * traces.coef[2, 2]
    fluctuation = sum(
        2.0 * f[i] ** 2 * np.einsum("ra,ab,rb->r", comps, traces.quad[p], comps)
        for i, p in enumerate(SMOOTH_PARTS)
    )
    fluctuation = fluctuation + 2.0 * v_c_clean**2 / (n_c - 1)
    high = float(min(n_l, n_t) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 * expected**2 / fluctuation
    df = np.clip(np.where(np.isfinite(df) & (expected > 0), df, high), 1.0, high)
    return TwoWayMoments(variance, v_l, v_t, v_c_clean, df, fallback, k_l + k_t - k_c)
