"""Matplotlib figure of a listening-test report (no pyplot: safe in threads and in the Gradio app).

Panels: (1) MOS per configuration with the clustered interval (thick) and the naive t-interval
(thin), and the line (1 - margin) * MOS_baseline; (2) the ratio MOS_v / MOS_base with its
one-sided lower bound against 1 - margin, coloured by verdict; (3) preference shares per pair.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from eval.statistics.summary import ReportSummary

VERDICT_COLOURS = {"pass": "tab:green", "fail": "tab:red", "insufficient": "tab:gray", "baseline": "tab:blue"}
FIGURE_WIDTH = 12.0  # inches
PANEL_HEIGHT = 0.45  # inches per configuration / pair row
MIN_HEIGHT = 3.0


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _mos_panel(ax, summary: ReportSummary) -> None:
    rows = summary.configs
    for i, c in enumerate(rows):
        colour = VERDICT_COLOURS.get(c.verdict, "black")
        if _finite(c.naive_ci_low):
            ax.plot([c.naive_ci_low, c.naive_ci_high], [i + 0.15] * 2, color=colour, lw=1, alpha=0.6)
        if _finite(c.ci_low):
            ax.plot([c.ci_low, c.ci_high], [i, i], color=colour, lw=4, solid_capstyle="butt")
        ax.plot([c.mos], [i], "o", color="black", ms=5)
    base = summary.config(summary.baseline).mos
    ax.axvline(
        (1 - summary.options.margin) * base,
        color="tab:red",
        ls="--",
        lw=1,
        label=f"{1 - summary.options.margin:.2f} x baseline",
    )
    ax.set_yticks(range(len(rows)), [f"{c.config} (n={c.n_ratings})" for c in rows])
    ax.invert_yaxis()
    ax.set_xlim(1, 5)
    ax.set_xlabel(f"MOS, {summary.options.confidence:.0%} interval: clustered (thick), naive (thin)")
    ax.legend(loc="lower left", fontsize=8)


def _ratio_panel(ax, summary: ReportSummary) -> None:
    rows = [c for c in summary.configs if c.config != summary.baseline]
    keep = 1 - summary.options.margin
    for i, c in enumerate(rows):
        colour = VERDICT_COLOURS.get(c.verdict, "black")
        if _finite(c.noninferiority_lower_bound):
            ax.plot([c.noninferiority_lower_bound, max(c.ratio, 1.1)], [i, i], color=colour, lw=4, alpha=0.35)
            ax.plot([c.noninferiority_lower_bound], [i], "|", color=colour, ms=14, mew=3)
        if _finite(c.ratio):
            ax.plot([c.ratio], [i], "o", color="black", ms=5)
        ax.text(
            1.0,
            i,
            f"  {c.verdict}",
            va="center",
            ha="left",
            color=colour,
            fontsize=9,
            transform=ax.get_yaxis_transform(),
        )
    ax.axvline(keep, color="tab:red", ls="--", lw=1)
    ax.axvline(1.0, color="gray", lw=0.8)
    ax.set_yticks(range(len(rows)), [c.config for c in rows])
    ax.invert_yaxis()
    ax.set_xlabel(
        f"MOS_v / MOS_base; bar from one-sided {summary.options.confidence:.0%} lower bound; pass iff > {keep:.2f}"
    )


def _preference_panel(ax, summary: ReportSummary) -> None:
    prefs = summary.preferences
    for i, p in enumerate(prefs):
        x, none, y = p.share_x.estimate, p.share_none.estimate, p.share_y.estimate
        ax.barh(i, x, color="tab:blue")
        ax.barh(i, none, left=x, color="lightgray")
        ax.barh(i, y, left=x + none, color="tab:orange")
        ax.text(0.01, i, p.config_x, va="center", fontsize=8, color="white")
        ax.text(0.99, i, p.config_y, va="center", ha="right", fontsize=8, color="black")
    ax.set_yticks(range(len(prefs)), [f"n={p.n}" for p in prefs])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("preference share: left config | none | right config")


def plot_summary(summary: ReportSummary) -> Figure:
    """Figure with the three panels; save with ``fig.savefig(path)`` or hand to ``gr.Plot``."""
    n_rows = max(len(summary.configs), len(summary.preferences), 1)
    height = max(MIN_HEIGHT, PANEL_HEIGHT * n_rows + 1.5)
    n_panels = 3 if summary.preferences else 2
    fig = Figure(figsize=(FIGURE_WIDTH, height * n_panels / 2), layout="constrained")
    axes = fig.subplots(n_panels, 1)
    _mos_panel(axes[0], summary)
    _ratio_panel(axes[1], summary)
    if summary.preferences:
        _preference_panel(axes[2], summary)
    fig.suptitle(f"Listening test against {summary.baseline} (margin {summary.options.margin:.0%})")
    return fig
