"""Preference shares and listener screening of an A/B listening test.

* :func:`preference_shares`: per pair of configurations, how often each was preferred (ties
  included), with Wilson score intervals and the exact sign test;
* :func:`screen_listeners`: per listener a summary and flags; eval/statistics/controls.py can exclude the
  listeners whose hidden controls (anchor, reference) say they did not listen.

Like eval/statistics/stats.py these are pure functions of a validated ratings table (eval/statistics/ratings_io.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from eval.statistics.stats import CONFIDENCE, Interval, long_scores


@dataclass(frozen=True)
class PreferenceShare:
    """Preference votes between two configurations, in configuration (not screen) terms.

    Shares are of all n judgements of the pair, ties ("none") included, each with a Wilson score
    interval. NOTE: the binomial intervals treat votes as independent (no listener clustering).
    ``p_value`` is the two-sided exact sign test of x against y among decisive votes (scipy).
    """

    config_x: str
    config_y: str
    n: int
    n_x: int
    n_y: int
    n_none: int
    share_x: Interval
    share_y: Interval
    share_none: Interval
    p_value: float


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Share k/n with the Wilson score interval (no continuity correction); NaN when n == 0."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # max/min guard rounding at k = 0 or k = n, where the exact bound is 0 or 1.
    return Interval(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def preference_shares(
    ratings: pd.DataFrame, order: list[str], confidence: float = CONFIDENCE
) -> list[PreferenceShare]:
    """Preference counts per unordered pair of different configurations.

    ``order`` ranks the configurations (e.g. baseline first): in each pair, x is the one ranked
    earlier; pairs are listed in that order too. Rows rating a configuration against itself are
    skipped.
    """
    rank = {c: i for i, c in enumerate(order)}
    unranked = sorted((set(ratings["a_config"]) | set(ratings["b_config"])) - set(rank))
    if unranked:
        raise ValueError(f"configurations missing from order: {unranked}")
    a, b, pref = ratings["a_config"], ratings["b_config"], ratings["preference"]
    a_first = a.map(rank) <= b.map(rank)
    table = pd.DataFrame(
        {
            "x": np.where(a_first, a, b),
            "y": np.where(a_first, b, a),
            # The preferred configuration, or "" for no preference.
            "winner": np.where(pref == "A", a, np.where(pref == "B", b, "")),
        }
    )
    table = table.loc[table["x"] != table["y"]]
    out = []
    for (x, y), group in sorted(table.groupby(["x", "y"]), key=lambda kv: (rank[kv[0][0]], rank[kv[0][1]])):
        n, n_x, n_y = len(group), int((group["winner"] == x).sum()), int((group["winner"] == y).sum())
        n_none = n - n_x - n_y
        p_value = sps.binomtest(n_x, n_x + n_y, 0.5).pvalue if n_x + n_y else float("nan")
        out.append(
            PreferenceShare(
                x,
                y,
                n,
                n_x,
                n_y,
                n_none,
                wilson_interval(n_x, n, confidence),
                wilson_interval(n_y, n, confidence),
                wilson_interval(n_none, n, confidence),
                float(p_value),
            )
        )
    return out


# ---------------------------------------------------------------- listener screening

MIN_LISTENER_JUDGEMENTS = 5  # fewer judgements than this: flag "too_few_judgements"
FLAG_ANCHOR_ABOVE_BASELINE = "anchor_above_baseline"  # mean(anchor) > mean(baseline) for this listener
FLAG_CONSTANT_SCORES = "constant_scores"  # one score for everything (zero variance, >= 2 scores)
FLAG_TOO_FEW_JUDGEMENTS = "too_few_judgements"
FLAG_INCONSISTENT_REFERENCE = "inconsistent_reference"  # identical clips scored far apart too often
REFERENCE_MISMATCH_POINTS = 2  # a hidden-reference trial whose two scores differ by this much is a miss
REFERENCE_MAX_MISS_SHARE = 0.25  # more than this share of a listener's reference trials missed: flag


@dataclass(frozen=True)
class ListenerScreen:
    """One listener's summary and screening flags (flags are informative; nobody is excluded)."""

    listener_id: str
    n_judgements: int
    n_texts: int
    mean_score: float  # over both scores of every judgement
    sd_score: float  # sample sd (ddof=1) of those scores; NaN with one score
    mean_baseline: float  # NaN when the listener never rated the baseline
    mean_anchor: float  # NaN when no anchor was given or rated
    flags: tuple[str, ...]
    n_reference: int = 0  # hidden-reference trials (the baseline against itself)
    reference_misses: int = 0  # of those, scored REFERENCE_MISMATCH_POINTS or more apart


def screen_listeners(
    ratings: pd.DataFrame,
    baseline: str,
    anchor: str | None = None,
    min_judgements: int = MIN_LISTENER_JUDGEMENTS,
) -> list[ListenerScreen]:
    """Per-listener flags, sorted by listener id.

    - ``anchor_above_baseline``: the listener's mean score of the hidden low anchor is strictly
      above their mean score of the baseline (both over every rating they gave those configs);
    - ``constant_scores``: all of the listener's scores are equal (needs at least two);
    - ``too_few_judgements``: fewer than ``min_judgements`` judgements;
    - ``inconsistent_reference``: in more than ``REFERENCE_MAX_MISS_SHARE`` of the listener's hidden-
      reference trials (``trial_kind`` "reference": the baseline on both sides) the two scores
      differ by ``REFERENCE_MISMATCH_POINTS`` or more.
    """
    scores = long_scores(ratings)
    reference = ratings["trial_kind"] == "reference"
    misses = reference & ((ratings["score_a"] - ratings["score_b"]).abs() >= REFERENCE_MISMATCH_POINTS)
    n_reference = reference.groupby(ratings["listener_id"]).sum()
    n_misses = misses.groupby(ratings["listener_id"]).sum()
    out = []
    for listener, group in scores.groupby("listener_id", sort=True):
        n_judgements = int(group["row"].nunique())
        y = group["score"].to_numpy()
        on_base = y[(group["config"] == baseline).to_numpy()]
        on_anchor = y[(group["config"] == anchor).to_numpy()] if anchor else np.empty(0)
        mean_base = float(on_base.mean()) if on_base.size else float("nan")
        mean_anchor = float(on_anchor.mean()) if on_anchor.size else float("nan")
        flags = []
        if on_base.size and on_anchor.size and mean_anchor > mean_base:
            flags.append(FLAG_ANCHOR_ABOVE_BASELINE)
        if y.size >= 2 and np.all(y == y[0]):
            flags.append(FLAG_CONSTANT_SCORES)
        if n_judgements < min_judgements:
            flags.append(FLAG_TOO_FEW_JUDGEMENTS)
        n_ref, n_miss = int(n_reference.get(listener, 0)), int(n_misses.get(listener, 0))
        if n_ref and n_miss > REFERENCE_MAX_MISS_SHARE * n_ref:
            flags.append(FLAG_INCONSISTENT_REFERENCE)
        out.append(
            ListenerScreen(
                str(listener),
                n_judgements,
                int(group["text_id"].nunique()),
                float(y.mean()),
                float(y.std(ddof=1)) if y.size >= 2 else float("nan"),
                mean_base,
                mean_anchor,
                tuple(flags),
                n_ref,
                n_miss,
            )
        )
    return out
