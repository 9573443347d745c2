"""The listening-test report: per-configuration MOS, the non-inferiority verdict, preferences, flags.

Command line::

    python -m eval.statistics.report RATINGS.csv --baseline float16-n10 --margin 0.05 [--anchor float32-n1]
        [--json OUT.json] [--xlsx OUT.xlsx] [--csv OUT.csv] [--plot OUT.png] [--seed N]
        [--method cluster-t|cgm|bootstrap] [--bootstrap N] [--confidence 0.95] [--mode blind] [--exclude-flagged]
        [--screen results/screen/<plan>/clips.csv]

prints a table and writes the requested files. A file that is not a valid ratings log, or an
unknown --baseline/--anchor, gives a one-line error and exit code 2 (no traceback).

``--screen CLIPS.csv`` (written by ``python -m eval.screen.plan``) adds the automatic screen's
per-configuration means beside the MOS, with their Spearman rank correlations across configurations
and clips (eval/screen/agreement.py; JSON key ``screen_agreement``).

The app's Results tab calls :func:`summarize` and :func:`plot_summary` directly (default method).

``--method`` picks how the clustered intervals and the non-inferiority bound are computed (the JSON
records it as ``method``, with a description of each statistic under ``methods``):
``cluster-t`` (default) is the two-way cluster-robust variance in its small-sample form with a
one-sided skewness correction of the bound (eval/statistics/cluster_t.py, eval/statistics/verdict_bounds.py); ``cgm`` the
plain analytic two-way cluster-robust variance of Cameron, Gelbach & Miller (2011), eval/statistics/cgm.py;
``bootstrap`` the two-way cluster (pigeonhole) bootstrap of eval/statistics/stats.py. Their measured level and
coverage are in ``--help`` and docs/verdict-validation.md. ``n_boot`` is null unless ``bootstrap``.

JSON fields per configuration (``configs`` list, baseline first):
``config, n_ratings, n_listeners, n_texts, mos`` (mean of all its scores), ``ci_low, ci_high``
(two-way clustered, two-sided), ``naive_ci_low, naive_ci_high`` (t-interval, ratings
independent), ``rel_change`` (ratio - 1: the relative change the test is about, on the judgements
it compares; 0 for the baseline), ``comparison`` ("paired" | "unpaired": which judgements the test
and rel_change use), ``n_compared``, ``ratio`` (mean_v / mean_base on the compared judgements), ``noninferiority_lower_bound`` (one-sided lower bound of that ratio; pass iff
> 1 - margin), ``d_mean, d_lower_bound`` (the same test as D = score_v - (1 - margin) * score_base;
pass iff d_lower_bound > 0), ``verdict`` ("pass" | "fail" | "insufficient", and "baseline" for the
baseline itself, whose test fields are null) and ``reason`` (why "insufficient", e.g. "4 listeners:
at least 5 needed for a clustered bound"). Numbers that cannot be computed are null. Top-level
``excluded_rows`` counts the judgements not counted: ``repeated_trial_id`` (a trial rated twice: first
kept) and ``repeated_without_trial_id`` (a row without trial_id that repeats an earlier row field for
field, timestamp aside).

What ``noninferiority_lower_bound`` is: with ``bootstrap``, the percentile lower confidence bound
of the ratio over the replicates; with ``cgm``, D's t bound carried to the ratio scale,
(1 - margin) + d_lower_bound / MOS_base (first order in the ratio, exact at the margin). Under
both, bound > 1 - margin exactly when d_lower_bound > 0 (eval.statistics.stats.noninferiority_test).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from eval.statistics import controls, screening, stats
from eval.statistics.ratings_io import (
    RatingsFormatError,
    config_notes,
    configs_present,
    counted_label,
    drop_duplicate_trials,
    drop_repeated_rows,
    read_ratings,
)
from eval.statistics.summary import (
    METHOD_PROPERTIES,
    VERDICT_BASELINE,
    ConfigSummary,
    ReportSummary,
    format_number,
)

DEFAULT_MARGIN = stats.DEFAULT_MARGIN
EXIT_BAD_INPUT = 2
MAX_ROWS_LISTED = 5  # row numbers quoted in a warning
# Near the top of the scale the level holds only with more listeners (docs/verdict-validation.md:
# 6.1% at nominal 5% for the default method at MOS 4.5 with 6 listeners, 5.1% with 12).
CEILING_MOS = 4.4
CEILING_MIN_LISTENERS = 12
def _load(ratings: pd.DataFrame | str | Path | Sequence[Mapping[str, object]]) -> pd.DataFrame:
    if isinstance(ratings, (str, Path, pd.DataFrame)):
        return read_ratings(ratings)
    return read_ratings(pd.DataFrame(list(ratings)))


def _config_row(
    table: pd.DataFrame,
    scores: pd.DataFrame,
    label: str,
    baseline: str,
    *,
    mos_base: float,
    margin: float,
    seed: int,
    n_boot: int,
    confidence: float,
    method: str,
) -> ConfigSummary:
    mine = scores.loc[scores["config"] == label]
    y = mine["score"].to_numpy()
    rng = stats.derived_rng(seed, "ci", label)
    ci = stats.cluster_mean(
        y,
        mine["listener_id"].to_numpy(),
        mine["text_id"].to_numpy(),
        method=method,
        rng=rng,
        confidence=confidence,
        n_boot=n_boot,
    )
    naive = stats.naive_t_interval(y, confidence)
    nan = float("nan")
    if label == baseline:
        test = None
    else:
        test = stats.compare_to_baseline(
            table,
            label,
            baseline,
            margin=margin,
            rng=stats.derived_rng(seed, "ni", label),
            confidence=confidence,
            n_boot=n_boot,
            method=method,
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
    margin: float = DEFAULT_MARGIN,
    anchor: str | None = None,
    seed: int = 0,
    n_boot: int = stats.DEFAULT_N_BOOT,
    confidence: float = stats.CONFIDENCE,
    modes: Sequence[str] | None = None,
    method: str = stats.DEFAULT_METHOD,
    exclude_flagged: bool = False,
) -> ReportSummary:
    """The full report of a ratings log (path, DataFrame, or the store's list of row dicts).

    ``method``: "cluster-t" (default), "cgm" or "bootstrap" (see the module docstring). Raises
    :class:`~eval.statistics.ratings_io.RatingsFormatError` for an invalid log and ValueError for an unknown
    baseline/anchor (listing the configurations present) or bad parameters. Hidden control trials
    (anchor, reference) screen listeners only; ``exclude_flagged`` leaves out the listeners they
    flag (eval/statistics/controls.py states the rule).
    """
    if not 0.0 < margin < 1.0:
        raise ValueError(f"margin must be in (0, 1), e.g. 0.05 for 5%, got {margin}")
    stats.check_bootstrap_args(confidence, n_boot)
    stats.check_method(method)
    stats.derived_rng(seed)  # validates the seed before any work
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
        _config_row(
            table,
            scores,
            label,
            baseline,
            mos_base=mos_base,
            margin=margin,
            seed=seed,
            n_boot=n_boot,
            confidence=confidence,
            method=method,
        )
        for label in order
    )
    for row in rows:
        if row.n_listeners < stats.MIN_LISTENERS or row.n_texts < stats.MIN_TEXTS:
            warnings.append(
                f"{row.config}: {row.n_listeners} listener(s), {row.n_texts} text(s): at least "
                f"{stats.MIN_LISTENERS} of each needed for a MOS interval"
            )
    warnings += _ceiling_warning(mos_base, rows, margin)
    return ReportSummary(
        baseline=baseline,
        margin=float(margin),
        anchor=anchor,
        confidence=float(confidence),
        seed=int(seed),
        n_boot=int(n_boot),
        modes=tuple(modes) if modes else None,
        n_judgements=len(table),
        n_listeners=int(table["listener_id"].nunique()),
        n_texts=int(table["text_id"].nunique()),
        configs=rows,
        preferences=tuple(screening.preference_shares(table, order, confidence)),
        listeners=listeners,
        warnings=tuple(warnings),
        method=method,
        excluded_listeners=kept.excluded_listeners,
        n_repeated_trial_ids=n_duplicates,
        n_repeated_rows=len(repeated_rows),
    )


def plot_summary(summary: ReportSummary):
    """A matplotlib Figure of the report (MOS with intervals, non-inferiority bounds, preferences)."""
    from eval.statistics.plots import plot_summary as _plot  # matplotlib only when a figure is wanted

    return _plot(summary)


_num = format_number


def format_table(summary: ReportSummary) -> str:
    """The printed report: configurations, preferences, flagged listeners, warnings."""
    keep = 1.0 - summary.margin
    level = f"{summary.confidence:.0%}"
    how = {
        stats.METHOD_CLUSTER_T: "small-sample two-way cluster-robust t, skewness-corrected bounds",
        stats.METHOD_CGM: "analytic two-way cluster-robust (CGM) variance, t bounds",
    }.get(summary.method, f"{summary.n_boot} bootstrap replicates, seed {summary.seed}")
    lines = [
        f"baseline {summary.baseline}; margin {summary.margin:.1%} (pass iff lower bound of "
        f"MOS_v/MOS_base > {keep:.3f}); {summary.n_judgements} judgements, {summary.n_listeners} "
        f"listeners, {summary.n_texts} texts; {how}",
        "",
        f"{'config':<24} {'n':>5} {'lis':>4} {'txt':>4} {'MOS':>5} {level + ' CI (clustered)':>20} "
        f"{'naive CI':>13} {'change':>7} {'test':>9} {'ratio LB':>8} {'verdict':>12}",
    ]
    for c in summary.configs:
        lines.append(
            f"{c.config:<24} {c.n_ratings:>5} {c.n_listeners:>4} {c.n_texts:>4} {_num(c.mos):>5} "
            f"{'[' + _num(c.ci_low) + ', ' + _num(c.ci_high) + ']':>20} "
            f"{'[' + _num(c.naive_ci_low) + ', ' + _num(c.naive_ci_high) + ']':>13} "
            f"{_num(100 * c.rel_change, '+.1f') + '%':>7} {c.comparison or '-':>9} "
            f"{_num(c.noninferiority_lower_bound, '.3f'):>8} {c.verdict:>12}"
            + (f"  ({c.reason})" if c.reason else "")
        )
    if summary.preferences:
        lines += ["", f"preferences (share of judgements, Wilson {level} interval):"]
        for p in summary.preferences:
            lines.append(
                f"  {p.config_x} vs {p.config_y}: n={p.n}  {p.config_x} {p.share_x.estimate:.0%} "
                f"[{p.share_x.low:.0%}, {p.share_x.high:.0%}]  {p.config_y} {p.share_y.estimate:.0%} "
                f"[{p.share_y.low:.0%}, {p.share_y.high:.0%}]  none {p.share_none.estimate:.0%}  "
                f"sign test p={_num(p.p_value, '.3g')}"
            )
    flagged = [s for s in summary.listeners if s.flags]
    if flagged:
        lines += ["", "flagged listeners:"]
        lines += [f"  {s.listener_id}: {', '.join(s.flags)} ({s.n_judgements} judgements)" for s in flagged]
    lines += ["", "change: MOS_v / MOS_base - 1 on the judgements the test compares (column test)"]
    if summary.warnings:
        lines += ["", *(f"warning: {w}" for w in summary.warnings)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.statistics.report",
        description="MOS per configuration with clustered 95%% intervals and the non-inferiority verdict.",
    )
    parser.add_argument("ratings", type=Path, help="ratings log CSV written by the app")
    parser.add_argument(
        "--baseline", required=True, help="configuration label of the baseline, e.g. float16-n10"
    )
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="relative margin (default 0.05)")
    parser.add_argument(
        "--anchor", default=None, help="hidden low anchor configuration, for listener screening"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--xlsx", type=Path, default=None, help="write the rating sheet workbook")
    parser.add_argument("--csv", type=Path, default=None, help="write the summary table as CSV")
    parser.add_argument("--plot", type=Path, default=None, help="write the report figure (PNG/PDF/SVG)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--method",
        choices=stats.CI_METHODS,
        default=stats.DEFAULT_METHOD,
        help="clustered intervals and bound (measured by python -m eval.statistics.simulate_verdict, "
        "docs/verdict-validation.md): " + "; ".join(f"{k}: {v}" for k, v in METHOD_PROPERTIES.items()),
    )
    parser.add_argument("--bootstrap", type=int, default=stats.DEFAULT_N_BOOT, help="bootstrap replicates")
    parser.add_argument("--confidence", type=float, default=stats.CONFIDENCE, help="confidence level (0.95)")
    parser.add_argument(
        "--exclude-flagged",
        dest="exclude_flagged",
        action="store_true",
        help="leave out listeners flagged by the hidden anchor or reference trials (rule in eval/statistics/controls.py)",
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=("blind", "playground"),
        default=None,
        help="keep only judgements of this mode (repeatable; default: all)",
    )
    parser.add_argument(
        "--screen",
        type=Path,
        default=None,
        help="clips.csv of python -m eval.screen.plan: its means beside the MOS, with rank correlations",
    )
    return parser


def _write_outputs(
    args: argparse.Namespace, summary: ReportSummary, screen: dict | None = None
) -> list[Path]:
    written = []
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = summary.to_json_dict() | ({"screen_agreement": screen} if screen else {})
        args.json.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        written.append(args.json)
    if args.xlsx or args.csv:
        from eval.statistics import sheets

        if args.xlsx:
            written.append(sheets.write_xlsx(summary, read_ratings(args.ratings), args.xlsx))
        if args.csv:
            written.append(sheets.write_rating_sheet_csv(sheets.summary_table(summary), args.csv))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_summary(summary).savefig(args.plot, dpi=150)
        written.append(args.plot)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = summarize(
            args.ratings,
            args.baseline,
            args.margin,
            anchor=args.anchor,
            seed=args.seed,
            n_boot=args.bootstrap,
            confidence=args.confidence,
            modes=args.mode,
            method=args.method,
            exclude_flagged=args.exclude_flagged,
        )
        print(format_table(summary))
        screen = None
        if args.screen:
            from eval.screen.agreement import agreement_from_files, format_agreement

            agreement = agreement_from_files(args.ratings, args.screen, args.mode)
            print(format_agreement(agreement))
            screen = agreement.to_json_dict()
        for path in _write_outputs(args, summary, screen):
            print(f"wrote {path}")
    except (RatingsFormatError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
