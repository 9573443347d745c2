"""Pure statistics of an A/B listening test: clustered MOS intervals and the non-inferiority test.

Every function takes arrays or a validated ratings table (eval/statistics/ratings_io.py) and, for the
bootstrap, a seeded ``numpy.random.Generator``; nothing reads files or keeps state, so the same
log and seed always give the same numbers.

Ratings are not independent: one listener is strict or lenient on everything, one sentence is
hard for every configuration, and listeners differ in how much they hear a degradation. Treating
N ratings as N independent draws (the naive t-interval, offered for comparison) makes intervals
far too narrow. Listeners and texts are both samples from larger populations, so every method
clusters by both. Three methods (``method=``), with their measured one-sided level at the 5%
margin and MOS interval coverage in docs/verdict-validation.md (python -m eval.statistics.simulate_verdict):

``"cluster-t"`` (default)
    The two-way cluster-robust variance of Cameron, Gelbach & Miller (2011) in a small-sample
    form (eval/statistics/cluster_t.py: jackknife cluster sums for unequal listeners, V_cell without the
    listener and text spread, df from a crossed random-effects working model) with a Student t,
    and for the one-sided non-inferiority bound Hall's (1992) skewness correction, applied only
    when it makes the bound stricter (eval/statistics/verdict_bounds.py says why: the 1..5 ceiling skews
    listener means of the paired difference, and a symmetric t then passes too often). MOS
    intervals are the symmetric t intervals of the same moments.
``"cgm"``
    The plain CGM variance with the clamped Satterthwaite df of eval/statistics/cgm.py and symmetric t
    bounds: close to nominal at moderate MOS with balanced designs, liberal near the ceiling,
    when listeners rate very different numbers of texts and when only some hear the degradation.
``"bootstrap"``
    The two-way "pigeonhole" bootstrap (Owen 2007, Ann. Appl. Stat. 1(1); McCullagh 2000,
    Bernoulli 6(2)): each replicate resamples listeners AND texts with replacement, weighting
    every observation by (times its listener was drawn) x (times its text was drawn). It counts
    the residual about three times (conservative in large tests) but has no small-sample
    widening, so with few listeners it passes too often and its MOS intervals under-cover.
    Percentile bounds with ``numpy.quantile(method="inverted_cdf")`` (an order statistic), which
    makes the ratio bound and the difference bound give the same verdict exactly.

Whatever the method, a comparison with fewer than :func:`min_clusters_for_verdict` listeners or
texts (5 at 95%) gets the verdict "insufficient" with the reason: below that no method can hold
its level without assuming a shape for the listener distribution (eval/statistics/verdict_bounds.py). Preference
shares and listener screening are in eval/statistics/screening.py.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from eval.statistics import cluster_t, verdict_bounds
from eval.statistics.options import (
    CONFIDENCE,
    DEFAULT_METHOD,
    DEFAULT_N_BOOT,
    METHOD_CGM,
    METHOD_CLUSTER_T,
    StatsOptions,
    check_confidence,
    check_n_boot,
    check_seed,
)

QUANTILE_METHOD = "inverted_cdf"  # order statistic: the ratio and difference bounds agree exactly

# Below these a MOS gets no clustered interval. With 2 listeners (or texts) a t interval has one
# df (+-12.7 standard errors) and over-covers (docs/verdict-validation.md, "What the minimum
# prevents"): not shown.
MIN_LISTENERS = 3
MIN_TEXTS = 3
MIN_JUDGEMENTS = 10  # paired judgements (or ratings of each configuration when unpaired)

VERDICT_PASS = "pass"
VERDICT_FAIL = "fail"
VERDICT_INSUFFICIENT = "insufficient"
PAIRED = "paired"
UNPAIRED = "unpaired"

# How each analytic method computes its bounds (eval/statistics/verdict_bounds.py).
ANALYTIC_RULES: dict[str, verdict_bounds.BoundRule] = {
    METHOD_CLUSTER_T: verdict_bounds.RULE_CLUSTER_T,
    METHOD_CGM: verdict_bounds.RULE_CGM,
}


def derived_rng(seed: int, *tags: str) -> np.random.Generator:
    """A generator for one analysis: the same (seed, tags) always give the same stream.

    Seeding per analysis (e.g. ``("ci", "bfloat16-n5")``) keeps one configuration's interval
    unchanged when another configuration is added to the log.
    """
    check_seed(seed)
    return np.random.default_rng([int(seed), *(zlib.crc32(t.encode("utf-8")) for t in tags)])


def _check_rng(options: StatsOptions, rng: np.random.Generator | None) -> None:
    if options.uses_bootstrap and not isinstance(rng, np.random.Generator):
        raise ValueError(f"the bootstrap needs rng, a numpy.random.Generator, got {rng!r}")


@dataclass(frozen=True)
class Interval:
    """A point estimate with an interval; bounds are NaN when they cannot be computed."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class NonInferiority:
    """One configuration v against the baseline at relative margin m (see :func:`noninferiority_test`)."""

    comparison: str  # PAIRED (judgements with both) or UNPAIRED (all ratings of each)
    n_judgements: int  # paired judgements, or ratings of v when unpaired
    n_listeners: int  # listeners in the compared data
    n_texts: int  # texts in the compared data
    ratio: float  # mean_v / mean_base on the compared data
    ratio_lower: float  # lower bound of the ratio (NaN when insufficient); see noninferiority_test
    d_mean: float  # mean_v - (1 - m) * mean_base
    d_lower: float  # one-sided lower bound of d_mean (NaN when insufficient)
    verdict: str  # VERDICT_PASS iff ratio_lower > 1 - m (equivalently d_lower > 0)
    reason: str  # why "insufficient", else ""
    method: str = DEFAULT_METHOD  # how the bounds were computed (CI_METHODS)


def long_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per score: columns ``row, config, listener_id, text_id, score`` (score float).

    Each judgement rates two clips, so it contributes one score to ``a_config`` and one to
    ``b_config`` (two to the same configuration when both sides are equal).
    """
    parts = []
    for side in ("a", "b"):
        parts.append(
            pd.DataFrame(
                {
                    "row": np.arange(len(ratings)),
                    "config": ratings[f"{side}_config"].to_numpy(),
                    "listener_id": ratings["listener_id"].to_numpy(),
                    "text_id": ratings["text_id"].to_numpy(),
                    "score": ratings[f"score_{side}"].to_numpy(dtype=float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def naive_t_interval(scores: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean +- t_{n-1} * sd / sqrt(n), treating every rating as independent (for comparison only)."""
    x = np.asarray(scores, dtype=float)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"))
    half = sps.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return Interval(mean, float(mean - half), float(mean + half))


def bootstrap_weights(
    n_listeners: int, n_texts: int, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw counts of the two-way bootstrap: ``(w_listener (B, L), w_text (B, T))``.

    Row b says how often each listener / text was drawn in replicate b (multinomial, sums L / T).
    """
    w_l = rng.multinomial(n_listeners, np.full(n_listeners, 1.0 / n_listeners), size=n_boot)
    w_t = rng.multinomial(n_texts, np.full(n_texts, 1.0 / n_texts), size=n_boot)
    return w_l.astype(float), w_t.astype(float)


def _replicate_totals(
    values: np.ndarray, listener: np.ndarray, text: np.ndarray, w_l: np.ndarray, w_t: np.ndarray
) -> np.ndarray:
    """sum_i w_l[b, listener_i] * w_t[b, text_i] * values_i for every replicate b -> (B,).

    Observations are first summed per (listener, text) cell, so the cost is B x L x T, not B x N.
    """
    n_l, n_t = w_l.shape[1], w_t.shape[1]
    cells = np.bincount(listener * n_t + text, weights=values, minlength=n_l * n_t).reshape(n_l, n_t)
    return ((w_l @ cells) * w_t).sum(axis=1)


def _quantile(x: np.ndarray, q: float | list[float]) -> np.ndarray:
    return np.quantile(x, q, method=QUANTILE_METHOD)


def cluster_bootstrap_mean(
    scores: np.ndarray,
    listener_ids: np.ndarray,
    text_ids: np.ndarray,
    *,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
    n_boot: int = DEFAULT_N_BOOT,
) -> Interval:
    """Mean score with a two-way (listener x text) cluster bootstrap percentile interval.

    scores, listener_ids, text_ids: (N,) arrays, one entry per rating. Replicates in which no
    rating survives (possible in sparse designs) are discarded. The bounds are NaN with fewer than
    MIN_LISTENERS listeners or MIN_TEXTS texts (resampling two clusters shows almost no spread).
    """
    check_confidence(confidence)
    check_n_boot(n_boot)
    y = np.asarray(scores, dtype=float)
    design = cluster_t.ClusterDesign.from_codes(np.asarray(listener_ids), np.asarray(text_ids))
    listener, n_l, text, n_t = design.listener, design.n_listeners, design.text, design.n_texts
    mean = float(y.mean()) if y.size else float("nan")
    if n_l < MIN_LISTENERS or n_t < MIN_TEXTS:
        return Interval(mean, float("nan"), float("nan"))
    w_l, w_t = bootstrap_weights(n_l, n_t, n_boot, rng)
    totals = _replicate_totals(y, listener, text, w_l, w_t)
    counts = _replicate_totals(np.ones_like(y), listener, text, w_l, w_t)
    valid = counts > 0
    low, high = _quantile(totals[valid] / counts[valid], [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(mean, float(low), float(high))


def cgm_mean(
    scores: np.ndarray,
    listener_ids: np.ndarray,
    text_ids: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    method: str = METHOD_CGM,
) -> Interval:
    """Mean score with an analytic two-way cluster-robust t interval (eval/statistics/verdict_bounds.py).

    mean +- t_{df, (1 + confidence) / 2} * sqrt(V), V = V_listener + V_text - V_cell (CGM 2011):
    plain (``method="cgm"``: df the clamped Satterthwaite rule of eval/statistics/cgm.py) or in its
    small-sample form (``"cluster-t"``: eval/statistics/cluster_t.py). Bounds are NaN with fewer than
    MIN_LISTENERS listeners or MIN_TEXTS texts.
    """
    check_confidence(confidence)
    rule = ANALYTIC_RULES[method]
    y = np.asarray(scores, dtype=float)
    design = cluster_t.ClusterDesign.from_codes(np.asarray(listener_ids), np.asarray(text_ids))
    mean = float(y.mean()) if y.size else float("nan")
    if design.n_listeners < MIN_LISTENERS or design.n_texts < MIN_TEXTS:
        return Interval(mean, float("nan"), float("nan"))
    est = cluster_t.LinearEstimator.mean(design)
    _, low, high = verdict_bounds.mean_intervals(y[None, :], est, confidence, rule)
    return Interval(mean, float(low[0]), float(high[0]))


def cluster_mean(
    scores: np.ndarray,
    listener_ids: np.ndarray,
    text_ids: np.ndarray,
    options: StatsOptions,
    rng: np.random.Generator | None = None,
) -> Interval:
    """The MOS interval of ``options.method``: :func:`cluster_bootstrap_mean` (``"bootstrap"``, needs
    ``rng``) or :func:`cgm_mean` (``"cluster-t"``, ``"cgm"``; ``rng`` unused)."""
    _check_rng(options, rng)
    if options.method in ANALYTIC_RULES:
        return cgm_mean(scores, listener_ids, text_ids, confidence=options.confidence, method=options.method)
    return cluster_bootstrap_mean(
        scores, listener_ids, text_ids, rng=rng, confidence=options.confidence, n_boot=options.n_boot
    )


def min_clusters_for_verdict(confidence: float = CONFIDENCE) -> int:
    """Fewest listeners and texts for a verdict at ``confidence`` (5 at 95%; eval/statistics/verdict_bounds.py)."""
    return verdict_bounds.min_clusters_for_bound(confidence)


def insufficient_reason(
    n_judgements: int, n_listeners: int, n_texts: int, confidence: float = CONFIDENCE
) -> str:
    """'' when the data can carry a verdict, else each shortfall, e.g.
    '4 listeners: at least 5 needed for a clustered bound'."""
    need = min_clusters_for_verdict(confidence)
    short = []
    for count, noun in ((n_listeners, "listener"), (n_texts, "text")):
        if count < need:
            short.append(f"{count} {noun}{'' if count == 1 else 's'}: at least {need} needed for a clustered bound")
    if n_judgements < MIN_JUDGEMENTS:
        short.append(f"{n_judgements} judgements: at least {MIN_JUDGEMENTS} needed")
    return "; ".join(short)


def noninferiority_test(
    v: tuple[np.ndarray, np.ndarray, np.ndarray],
    base: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    paired: bool,
    options: StatsOptions,
    rng: np.random.Generator | None = None,
) -> NonInferiority:
    """One-sided non-inferiority test of configuration v against the baseline, relative margin
    m = ``options.margin``, at ``options.confidence`` by ``options.method``.

    v, base: ``(scores, listener_ids, text_ids)``, each (N,) arrays. When ``paired`` they are
    aligned: entry i of both comes from the same judgement (same listener and text).
    H0: MOS_v <= (1 - m) * MOS_base. With k = 1 - m, ``d = mean_v - k * mean_base`` (for paired
    data the mean of the per-judgement D = score_v - k * score_base).

    ``"bootstrap"`` (needs ``rng``): per replicate (listeners and texts resampled as in
    :func:`cluster_bootstrap_mean`, the SAME draw for both configurations, which keeps their
    correlation) we compute ``ratio = mean_v / mean_base`` and d. ``ratio_lower`` is the
    ``1 - confidence`` quantile of the ratio replicates: a percentile lower confidence bound of the
    ratio. Since mean_base > 0, ``d > 0`` exactly when ``ratio > k`` in every replicate, so with an
    order-statistic quantile ``d_lower > 0`` gives the same verdict.

    ``"cluster-t"`` / ``"cgm"`` (no ``rng``): ``d_lower = d - T_crit * sqrt(V_d)``, V_d the
    two-way cluster-robust variance of d (both configurations' ratings enter one cluster sum,
    which keeps their correlation), T_crit the t quantile of the clamped Satterthwaite df, raised
    by Hall's skewness correction for "cluster-t" when the estimated skewness is negative
    (eval/statistics/verdict_bounds.py); "cluster-t" also uses the small-sample moments (eval/statistics/cluster_t.py). The ratio bound is d's bound carried to the ratio scale,
    ``ratio_lower = k + d_lower / mean_base`` = ``(mean_v - T_crit * se(d)) / mean_base``: the ratio
    the data support when MOS_base is taken as known. It is a first-order (delta-method, evaluated
    at ratio k) bound of the ratio, accurate near the margin where the decision is made; it equals
    k exactly when d_lower = 0, so again ratio_lower > k iff d_lower > 0.

    The verdict is "pass" iff ``ratio_lower > k``. "insufficient" (bounds NaN, ``reason`` says
    why) with fewer than :func:`min_clusters_for_verdict` listeners or texts or MIN_JUDGEMENTS
    judgements (per configuration when unpaired), whatever the method.
    """
    _check_rng(options, rng)
    confidence, method = options.confidence, options.method
    y_v, y_b = np.asarray(v[0], dtype=float), np.asarray(base[0], dtype=float)
    if paired and y_v.shape != y_b.shape:
        raise ValueError(f"paired scores need equal lengths, got {y_v.shape} and {y_b.shape}")
    n_v = len(y_v)
    # One index space for both sides so that a replicate's draw (or a cluster sum) covers both.
    design = cluster_t.ClusterDesign.from_codes(
        np.concatenate([np.asarray(v[1]), np.asarray(base[1])]),
        np.concatenate([np.asarray(v[2]), np.asarray(base[2])]),
    )
    n_l, n_t = design.n_listeners, design.n_texts
    keep = options.keep
    ratio = float(y_v.mean() / y_b.mean()) if n_v and len(y_b) else float("nan")
    d_mean = float(y_v.mean() - keep * y_b.mean()) if n_v and len(y_b) else float("nan")
    comparison = PAIRED if paired else UNPAIRED

    if paired:
        reason = insufficient_reason(n_v, n_l, n_t, confidence)
    else:
        reason = ""
        for name, side in (("configuration", v), ("baseline", base)):
            sub = insufficient_reason(len(side[0]), len(set(side[1])), len(set(side[2])), confidence)
            reason = reason or (f"{name}: {sub}" if sub else "")
    if reason:
        nan = float("nan")
        return NonInferiority(
            comparison, n_v, n_l, n_t, ratio, nan, d_mean, nan, VERDICT_INSUFFICIENT, reason, method
        )
    if method in ANALYTIC_RULES:
        bounds = verdict_bounds.ratio_lower_bounds(
            y_v,
            y_b,
            cluster_t.LinearEstimator.contrast(design, n_v, keep),
            keep=keep,
            confidence=confidence,
            rule=ANALYTIC_RULES[method],
        )
        verdict = VERDICT_PASS if bounds.passed[0] else VERDICT_FAIL
        ratio_lower, d_lower = float(bounds.ratio_lower[0]), float(bounds.d_lower[0])
        return NonInferiority(
            comparison, n_v, n_l, n_t, ratio, ratio_lower, d_mean, d_lower, verdict, "", method
        )

    ratio_lower, d_lower = _bootstrap_lower_bounds(y_v, y_b, design, keep, options, rng)
    verdict = VERDICT_PASS if ratio_lower > keep else VERDICT_FAIL
    return NonInferiority(comparison, n_v, n_l, n_t, ratio, ratio_lower, d_mean, d_lower, verdict, "", method)


def _bootstrap_lower_bounds(
    y_v: np.ndarray,
    y_b: np.ndarray,
    design: cluster_t.ClusterDesign,
    keep: float,
    options: StatsOptions,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """(ratio_lower, d_lower) of :func:`noninferiority_test`'s bootstrap: one listener/text draw per
    replicate for both sides. ``design`` indexes v's N_v ratings first, then the baseline's."""
    n_v = len(y_v)
    listener, text = design.listener, design.text
    w_l, w_t = bootstrap_weights(design.n_listeners, design.n_texts, options.n_boot, rng)
    lv, tv = listener[:n_v], text[:n_v]
    lb, tb = listener[n_v:], text[n_v:]
    sum_v = _replicate_totals(y_v, lv, tv, w_l, w_t)
    cnt_v = _replicate_totals(np.ones_like(y_v), lv, tv, w_l, w_t)
    sum_b = _replicate_totals(y_b, lb, tb, w_l, w_t)
    cnt_b = _replicate_totals(np.ones_like(y_b), lb, tb, w_l, w_t)
    valid = (cnt_v > 0) & (cnt_b > 0)
    mean_v, mean_b = sum_v[valid] / cnt_v[valid], sum_b[valid] / cnt_b[valid]
    alpha = 1.0 - options.confidence
    return float(_quantile(mean_v / mean_b, alpha)), float(_quantile(mean_v - keep * mean_b, alpha))


def paired_scores(ratings: pd.DataFrame, config: str, baseline: str) -> pd.DataFrame:
    """Judgements that rated ``config`` against ``baseline`` (either side), in configuration terms.

    Returns columns ``listener_id, text_id, score_v, score_base`` (one row per judgement).
    """
    if config == baseline:
        raise ValueError("a configuration cannot be paired with itself")
    a_is_v = (ratings["a_config"] == config) & (ratings["b_config"] == baseline)
    b_is_v = (ratings["b_config"] == config) & (ratings["a_config"] == baseline)
    rows = ratings.loc[a_is_v | b_is_v]
    v_on_a = a_is_v[a_is_v | b_is_v].to_numpy()
    return pd.DataFrame(
        {
            "listener_id": rows["listener_id"].to_numpy(),
            "text_id": rows["text_id"].to_numpy(),
            "score_v": np.where(v_on_a, rows["score_a"], rows["score_b"]).astype(float),
            "score_base": np.where(v_on_a, rows["score_b"], rows["score_a"]).astype(float),
        }
    )


def compare_to_baseline(
    ratings: pd.DataFrame,
    config: str,
    baseline: str,
    options: StatsOptions,
    rng: np.random.Generator | None = None,
) -> NonInferiority:
    """Non-inferiority of ``config`` against ``baseline`` from a validated ratings table.

    Uses the paired judgements (rows holding both) when they meet the data thresholds; otherwise
    all ratings of each configuration, unpaired (still resampled with one shared listener/text
    draw, or clustered jointly by the analytic methods); when neither meets them the verdict is
    "insufficient" (paired if any pair exists). See :func:`noninferiority_test` for the methods.
    """
    pairs = paired_scores(ratings, config, baseline)
    paired_test = noninferiority_test(
        (pairs["score_v"], pairs["listener_id"], pairs["text_id"]),
        (pairs["score_base"], pairs["listener_id"], pairs["text_id"]),
        paired=True,
        options=options,
        rng=rng,
    )
    if paired_test.verdict != VERDICT_INSUFFICIENT:
        return paired_test
    scores = long_scores(ratings)
    v = scores.loc[scores["config"] == config]
    b = scores.loc[scores["config"] == baseline]
    unpaired_test = noninferiority_test(
        (v["score"], v["listener_id"], v["text_id"]),
        (b["score"], b["listener_id"], b["text_id"]),
        paired=False,
        options=options,
        rng=rng,
    )
    if unpaired_test.verdict == VERDICT_INSUFFICIENT and len(pairs):
        return paired_test
    return unpaired_test
