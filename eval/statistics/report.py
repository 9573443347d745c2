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

The computation is :func:`eval.statistics.analysis.summarize` (this module prints and writes what
it returns); the app's Results tab calls it and :func:`plot_summary` directly (default options).

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
from collections.abc import Sequence
from pathlib import Path

from eval.statistics.analysis import summarize
from eval.statistics.options import (
    CI_METHODS,
    CONFIDENCE,
    DEFAULT_MARGIN,
    DEFAULT_METHOD,
    DEFAULT_N_BOOT,
    METHOD_CGM,
    METHOD_CLUSTER_T,
    StatsOptions,
)
from eval.statistics.ratings_io import (
    RatingsFormatError,
    read_ratings,
)
from eval.statistics.summary import (
    METHOD_PROPERTIES,
    ReportSummary,
    format_number,
)

EXIT_BAD_INPUT = 2


def plot_summary(summary: ReportSummary):
    """A matplotlib Figure of the report (MOS with intervals, non-inferiority bounds, preferences)."""
    from eval.statistics.plots import plot_summary as _plot  # matplotlib only when a figure is wanted

    return _plot(summary)


def format_table(summary: ReportSummary) -> str:
    """The printed report: configurations, preferences, flagged listeners, warnings."""
    keep = 1.0 - summary.options.margin
    level = f"{summary.options.confidence:.0%}"
    how = {
        METHOD_CLUSTER_T: "small-sample two-way cluster-robust t, skewness-corrected bounds",
        METHOD_CGM: "analytic two-way cluster-robust (CGM) variance, t bounds",
    }.get(summary.options.method, f"{summary.options.n_boot} bootstrap replicates, seed {summary.options.seed}")
    lines = [
        f"baseline {summary.baseline}; margin {summary.options.margin:.1%} (pass iff lower bound of "
        f"MOS_v/MOS_base > {keep:.3f}); {summary.n_judgements} judgements, {summary.n_listeners} "
        f"listeners, {summary.n_texts} texts; {how}",
        "",
        f"{'config':<24} {'n':>5} {'lis':>4} {'txt':>4} {'MOS':>5} {level + ' CI (clustered)':>20} "
        f"{'naive CI':>13} {'change':>7} {'test':>9} {'ratio LB':>8} {'verdict':>12}",
    ]
    for c in summary.configs:
        lines.append(
            f"{c.config:<24} {c.n_ratings:>5} {c.n_listeners:>4} {c.n_texts:>4} {format_number(c.mos):>5} "
            f"{'[' + format_number(c.ci_low) + ', ' + format_number(c.ci_high) + ']':>20} "
            f"{'[' + format_number(c.naive_ci_low) + ', ' + format_number(c.naive_ci_high) + ']':>13} "
            f"{format_number(100 * c.rel_change, '+.1f') + '%':>7} {c.comparison or '-':>9} "
            f"{format_number(c.noninferiority_lower_bound, '.3f'):>8} {c.verdict:>12}"
            + (f"  ({c.reason})" if c.reason else "")
        )
    if summary.preferences:
        lines += ["", f"preferences (share of judgements, Wilson {level} interval):"]
        for p in summary.preferences:
            lines.append(
                f"  {p.config_x} vs {p.config_y}: n={p.n}  {p.config_x} {p.share_x.estimate:.0%} "
                f"[{p.share_x.low:.0%}, {p.share_x.high:.0%}]  {p.config_y} {p.share_y.estimate:.0%} "
                f"[{p.share_y.low:.0%}, {p.share_y.high:.0%}]  none {p.share_none.estimate:.0%}  "
                f"sign test p={format_number(p.p_value, '.3g')}"
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
        choices=CI_METHODS,
        default=DEFAULT_METHOD,
        help="clustered intervals and bound (measured by python -m eval.statistics.simulate_verdict, "
        "docs/verdict-validation.md): " + "; ".join(f"{k}: {v}" for k, v in METHOD_PROPERTIES.items()),
    )
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_N_BOOT, help="bootstrap replicates")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, help="confidence level (0.95)")
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
        options = StatsOptions(
            margin=args.margin,
            confidence=args.confidence,
            method=args.method,
            n_boot=args.bootstrap,
            seed=args.seed,
        )
        summary = summarize(
            args.ratings, args.baseline, options, anchor=args.anchor, modes=args.mode, exclude_flagged=args.exclude_flagged
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
