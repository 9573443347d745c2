"""The listening-test analysis: a ratings log -> :class:`~eval.statistics.summary.ReportSummary`.

Pure computation (no printing, no files written): the report command (eval/statistics/report.py),
the Results tab and the screen agreement all call :func:`summarize` with one
:class:`~eval.statistics.options.StatsOptions`. What each number means is in the report module's
docstring; how each method computes its bounds in eval/statistics/stats.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from eval.statistics import controls, screening, stats
from eval.statistics.options import StatsOptions
from eval.statistics.ratings_io import (
    config_notes,
    configs_present,
    counted_label,
    drop_duplicate_trials,
    drop_repeated_rows,
    read_ratings,
)
from eval.statistics.summary import VERDICT_BASELINE, ConfigSummary, ReportSummary

MAX_ROWS_LISTED = 5  # row numbers quoted in a warning
# Near the top of the scale the level holds only with more listeners (docs/verdict-validation.md:
# 6.1% at nominal 5% for the default method at MOS 4.5 with 6 listeners, 5.1% with 12).
CEILING_MOS = 4.4
CEILING_MIN_LISTENERS = 12
DEFAULT_OPTIONS = StatsOptions()


def _load(ratings: pd.DataFrame | str | Path | Sequence[Mapping[str, object]]) -> pd.DataFrame:
    if isinstance(ratings, (str, Path, pd.DataFrame)):
        return read_ratings(ratings)
    return read_ratings(pd.DataFrame(list(ratings)))


def _config_row(
    table: pd.DataFrame,
    scores: pd.DataFrame,
    label: str,
    baseline: str,
    mos_base: float,
    options: StatsOptions,
) -> ConfigSummary:
    mine = scores.loc[scores["config"] == label]
    y = mine["score"].to_numpy()
    rng = stats.derived_rng(options.seed, "ci", label)
    ci = stats.cluster_mean(y, mine["listener_id"].to_numpy(), mine["text_id"].to_numpy(), options, rng)
    naive = stats.naive_t_interval(y, options.confidence)
    nan = float("nan")
    if label == baseline:
        test = None
    else:
        test = stats.compare_to_baseline(
            table, label, baseline, options, stats.derived_rng(options.seed, "ni", label)
        )
    return ConfigSummary(
        config=label,
        n_ratings=int(y.size),
        n_listeners=int(mine["listener_id"].nunique()),
        n_texts=int(mine["text_id"].nunique()),
        mos=ci.estimate,
        ci_low=ci.low,
        ci_high=ci.high,
        naive_ci_low=naive.low,
        naive_ci_high=naive.high,
        rel_change=test.ratio - 1.0 if test else 0.0,
        comparison=test.comparison if test else None,
        n_compared=test.n_judgements if test else 0,
        ratio=test.ratio if test else nan,
        noninferiority_lower_bound=test.ratio_lower if test else nan,
        d_mean=test.d_mean if test else nan,
        d_lower_bound=test.d_lower if test else nan,
        verdict=test.verdict if test else VERDICT_BASELINE,
        reason=test.reason if test else "",
    )


def _exclusion_warnings(n_duplicates: int, repeated_rows: list[int]) -> list[str]:
    """What the report did not count: repeated trial ids, rows repeated without a trial id."""
    warnings = [f"{n_duplicates} repeated trial_id row(s) ignored (first kept)"] if n_duplicates else []
    if repeated_rows:
        shown = ", ".join(map(str, repeated_rows[:MAX_ROWS_LISTED]))
        extra = len(repeated_rows) - MAX_ROWS_LISTED
        warnings.append(
            f"{len(repeated_rows)} row(s) without trial_id repeat an earlier row field for field "
            f"(timestamp aside) and are counted once: data row(s) {shown}"
            + (f" and {extra} more" if extra > 0 else "")
        )
    return warnings


def _ceiling_warning(mos_base: float, rows: Sequence[ConfigSummary], margin: float) -> list[str]:
    """A warning when the baseline is near the top of the scale and a verdict rests on few listeners."""
    tested = [r for r in rows if r.verdict in (stats.VERDICT_PASS, stats.VERDICT_FAIL)]
    if mos_base >= CEILING_MOS and any(r.n_listeners < CEILING_MIN_LISTENERS for r in tested):
        return [
            f"baseline MOS {mos_base:.2f} is near the top of the scale: with fewer than "
            f"{CEILING_MIN_LISTENERS} listeners a configuration that truly loses {margin:.0%} passes somewhat "
            "more often than the nominal 5% (6.1% measured at MOS 4.5 with 6 listeners)"
        ]
    return []


def summarize(
    ratings: pd.DataFrame | str | Path | Sequence[Mapping[str, object]],
    baseline: str,
    options: StatsOptions = DEFAULT_OPTIONS,
    *,
    anchor: str | None = None,
    modes: Sequence[str] | None = None,
    exclude_flagged: bool = False,
) -> ReportSummary:
    """The full report of a ratings log (path, DataFrame, or the store's list of row dicts).

    ``options``: margin, confidence, method ("cluster-t", "cgm", "bootstrap"), bootstrap size and
    seed, validated when the options were made. Raises
    :class:`~eval.statistics.ratings_io.RatingsFormatError` for an invalid log and ValueError for an unknown
    baseline/anchor (listing the configurations present) or bad parameters. Hidden control trials
    (anchor, reference) screen listeners only; ``exclude_flagged`` leaves out the listeners they
    flag (eval/statistics/controls.py states the rule).
    """
    table, repeated_rows = drop_repeated_rows(_load(ratings))
    table, n_duplicates = drop_duplicate_trials(table)
    warnings = _exclusion_warnings(n_duplicates, repeated_rows)
    warnings += config_notes(table)
    # --baseline/--anchor name configurations the way the log's labels are counted
    # (``fp16-n10`` or ``float16-n10-tensorrt`` -> ``float16-n10``).
    baseline = counted_label(baseline, "")[0]
    anchor = None if anchor is None else counted_label(anchor, "")[0]
    if modes:
        table = table.loc[table["mode"].isin(list(modes))].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"no judgements in mode(s) {list(modes)}")
    elif (table["mode"] == "playground").any():
        n_play = int((table["mode"] == "playground").sum())
        warnings.append(
            f"{n_play} judgement(s) from playground mode (not blind) are included; see --mode blind"
        )
    if anchor is not None and anchor == baseline:
        raise ValueError(f"the anchor must differ from the baseline (both {baseline!r})")
    present = configs_present(table)
    for role, label in (("baseline", baseline), ("anchor", anchor)):
        if label is not None and label not in present:
            raise ValueError(
                f"{role} {label!r} is not in the ratings log; configurations present: {', '.join(present)}"
            )
    listeners = tuple(screening.screen_listeners(table, baseline, anchor))  # on every trial, controls too
    kept = controls.statistics_table(table, listeners, exclude_flagged)
    table, present = kept.table, configs_present(kept.table)
    warnings += kept.notes
    if baseline not in present:
        raise ValueError(f"baseline {baseline!r} has no test judgements left; configurations: {', '.join(present)}")
    others = sorted(c for c in present if c not in (baseline, anchor))
    order = [baseline, *others, *([anchor] if anchor in present else [])]
    scores = stats.long_scores(table)
    mos_base = float(scores.loc[scores["config"] == baseline, "score"].mean())
    rows = tuple(
        _config_row(table, scores, label, baseline, mos_base, options)
        for label in order
    )
    for row in rows:
        if row.n_listeners < stats.MIN_LISTENERS or row.n_texts < stats.MIN_TEXTS:
            warnings.append(
                f"{row.config}: {row.n_listeners} listener(s), {row.n_texts} text(s): at least "
                f"{stats.MIN_LISTENERS} of each needed for a MOS interval"
            )
    warnings += _ceiling_warning(mos_base, rows, options.margin)
    return ReportSummary(
        baseline=baseline,
        options=options,
        anchor=anchor,
        modes=tuple(modes) if modes else None,
        n_judgements=len(table),
        n_listeners=int(table["listener_id"].nunique()),
        n_texts=int(table["text_id"].nunique()),
        configs=rows,
        preferences=tuple(screening.preference_shares(table, order, options.confidence)),
        listeners=listeners,
        warnings=tuple(warnings),
        excluded_listeners=kept.excluded_listeners,
        n_repeated_trial_ids=n_duplicates,
        n_repeated_rows=len(repeated_rows),
    )
