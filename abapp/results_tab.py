"""Results tab: MOS per configuration with intervals, the 5% non-inferiority verdict, downloads.

The statistics are ``eval.statistics.analysis.summarize`` with the default options: 5% margin, 95%,
the small-sample two-way cluster-robust t of eval/statistics/cluster_t.py, clustered by listener and
text (measured level and coverage in docs/verdict-validation.md); a comparison too small for a verdict shows "insufficient" and why.
With an admin password set, nothing is computed or offered for download without it. Below the
MOS: the automatic screen of the active plan's bank beside it (abapp/results_screen.py).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr
import pandas as pd

from abapp.context import AppContext, fresh_temp_dir, run_with_buttons_disabled, user_errors
from abapp.results_screen import screen_beside_mos, table_number
from eval.statistics import analysis, report, sheets
from eval.statistics.options import StatsOptions
from eval.statistics.ratings_io import counted_label
from eval.statistics.summary import method_descriptions

log = logging.getLogger(__name__)

DOWNLOADS_DIRNAME = "cosyvoice2-ab-downloads"
STATS_OPTIONS = StatsOptions()  # the project's criterion: 5% margin, 95%, the default method
MODE_CHOICES = [("Blind trials only", "blind"), ("All (blind and playground)", "all")]
TABLE_COLUMNS = [
    "config",
    "ratings",
    "listeners",
    "texts",
    "MOS",
    "95% CI",
    "vs baseline",
    "test",
    "lower bound",
    "verdict",
]
VERDICT_ICONS = {
    "pass": "✅ pass",
    "fail": "❌ fail",
    "insufficient": "… insufficient",
    "baseline": "baseline",
}


def _configs_in(rows: list[dict[str, str]]) -> list[str]:
    """Configurations as the statistics count them (eval.statistics.ratings_io.counted_label), most rated first."""
    counts = Counter(counted_label(r[f"{k}_config"], r[f"{k}_dtype"])[0] for r in rows for k in ("a", "b"))
    return [c for c, _ in counts.most_common()]


def summary_frame(summary) -> pd.DataFrame:
    rows = []
    for c in summary.configs:
        rows.append(
            {
                "config": c.config,
                "ratings": c.n_ratings,
                "listeners": c.n_listeners,
                "texts": c.n_texts,
                "MOS": table_number(c.mos),
                "95% CI": f"{table_number(c.ci_low)} – {table_number(c.ci_high)}" if math.isfinite(c.ci_low) else "–",
                "vs baseline": "–" if c.verdict == "baseline" else f"{table_number(100 * c.rel_change, '+.1f')}%",
                "test": c.comparison or "–",  # which judgements "vs baseline" and the bound use
                "lower bound": table_number(c.noninferiority_lower_bound, ".3f"),
                "verdict": VERDICT_ICONS.get(c.verdict, c.verdict) + (f": {c.reason}" if c.reason else ""),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def preferences_markdown(summary) -> str:
    lines = [
        "| pair | n | prefer first | prefer second | no preference | sign test p |",
        "|---|---|---|---|---|---|",
    ]
    for p in summary.preferences:
        share = lambda s: f"{100 * s.estimate:.0f}% ({100 * s.low:.0f}–{100 * s.high:.0f})"  # noqa: E731
        lines.append(
            f"| `{p.config_x}` vs `{p.config_y}` | {p.n} | {share(p.share_x)} | {share(p.share_y)} | "
            f"{share(p.share_none)} | {table_number(p.p_value, '.3f')} |"
        )
    return "\n".join(lines) if summary.preferences else "No preference votes yet."


def _method_markdown(summary, methods: dict[str, str]) -> str:
    keep = 1 - summary.options.margin
    text = (
        f"**Criterion:** a configuration passes when the one-sided {summary.options.confidence:.0%} lower confidence bound "
        f"of MOS_config / MOS_baseline is above {keep:.2f} (at most {summary.options.margin:.0%} below `{summary.baseline}`).  \n"
        f"**Method ({summary.options.method}):** {methods['noninferiority']}. MOS intervals: {methods['mos_ci']}.  \n"
        f"**vs baseline:** MOS_config / MOS_baseline - 1 on the judgements of the test (column test). "
        f"**Insufficient:** {methods['insufficient']}.  \n"
        f"{summary.n_judgements} judgements · {summary.n_listeners} listeners · {summary.n_texts} texts"
    )
    if summary.warnings:
        text += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in summary.warnings)
    return text


def _snapshot(ctx: AppContext, folder: Path) -> Path:
    """A copy of the raw log for download (gradio serves files from its cache, not from /data)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = folder / f"ratings-{stamp}.csv"
    shutil.copyfile(ctx.store.path, out)
    return out


@dataclass(frozen=True)
class ResultsView:
    """What the Results tab shows after "Show results"."""

    table: pd.DataFrame  # one row per configuration (TABLE_COLUMNS)
    method: str  # Markdown: criterion, method, counts
    preferences: str  # Markdown table of preference shares
    figure: object | None  # the report's matplotlib Figure
    files: list[str]  # downloads: ratings snapshot, rating sheets
    baseline: gr.Dropdown  # the baseline choices present in the log
    screen: str  # Markdown: the automatic screen beside the MOS

    def updates(self) -> tuple:
        """In the order of :func:`build_results`' outputs."""
        return self.table, self.method, self.preferences, self.figure, self.files, self.baseline, self.screen


def compute_results(
    ctx: AppContext, baseline: str | None, mode: str, exclude_flagged: bool = False
) -> ResultsView:
    """The MOS table, method text, preferences, figure, downloads and screen of the ratings log.

    ``exclude_flagged``: leave out listeners flagged by the active plan's hidden controls
    (eval/statistics/controls.py states the rule; the method text repeats it).
    """
    rows = ctx.store.rows()
    if mode == "blind":
        rows = [r for r in rows if r["mode"] == "blind"]
    configs = _configs_in(rows)
    plan = ctx.blind.plan
    if baseline not in configs and plan is not None and plan.baseline in configs:
        baseline = plan.baseline  # the active test's reference is the natural default
    folder = fresh_temp_dir(DOWNLOADS_DIRNAME)
    files = [_snapshot(ctx, folder)]
    dropdown = gr.Dropdown(
        choices=configs, value=baseline if baseline in configs else (configs[0] if configs else None)
    )
    if not rows:
        return ResultsView(
            pd.DataFrame(columns=TABLE_COLUMNS),
            "No ratings yet.",
            "",
            None,
            [str(f) for f in files],
            dropdown,
            "",
        )
    baseline = baseline if baseline in configs else configs[0]
    anchor = plan.anchor_condition if plan is not None else None
    summary = analysis.summarize(
        rows,
        baseline,
        STATS_OPTIONS,
        anchor=anchor.label if anchor is not None and anchor.label in configs else None,
        exclude_flagged=exclude_flagged,
    )
    figure = report.plot_summary(summary)
    files.append(
        sheets.write_rating_sheet_csv(sheets.summary_table(summary), folder / "rating-sheet-summary.csv")
    )
    files.append(sheets.write_xlsx(summary, pd.DataFrame(rows), folder / "rating-sheet.xlsx"))
    return ResultsView(
        table=summary_frame(summary),
        method=_method_markdown(summary, method_descriptions(summary.options.method)),
        preferences=preferences_markdown(summary),
        figure=figure,
        files=[str(f) for f in files],
        baseline=dropdown,
        screen=screen_beside_mos(ctx, rows),
    )


def build_results(ctx: AppContext) -> None:
    """Lay out the results inside the current ``gr.Tab`` and wire its events."""
    if ctx.notice:
        gr.Markdown(ctx.notice, elem_classes=["random-weights-notice"])
    with gr.Row():
        password = gr.Textbox(
            label="Admin password" + (" (not needed from this machine)" if ctx.access.generated else ""),
            type="password",
            elem_id="results-password",
        )
        baseline = gr.Dropdown(
            [], label="Baseline configuration", allow_custom_value=True, elem_id="results-baseline"
        )
        mode = gr.Radio(MODE_CHOICES, value="blind", label="Judgements")
        exclude = gr.Checkbox(
            value=False,
            label="Exclude listeners flagged by the hidden anchor / reference",
            elem_id="results-exclude",
        )
        refresh = gr.Button("Show results", variant="primary", elem_id="results-refresh")
    table = gr.Dataframe(
        pd.DataFrame(columns=TABLE_COLUMNS),
        label="MOS per configuration",
        interactive=False,
        elem_id="results-table",
    )
    method = gr.Markdown(elem_id="results-method")
    prefs = gr.Markdown(elem_id="results-preferences")
    plot = gr.Plot(label="MOS, non-inferiority bounds and preferences")
    screen = gr.Markdown(elem_id="results-screen")
    downloads = gr.File(
        label="Downloads: raw ratings CSV, rating sheet CSV and XLSX",
        file_count="multiple",
        interactive=False,
        height=140,
        elem_id="results-files",
    )

    @user_errors
    def show(pw, base, which, drop_flagged, request: gr.Request):
        ctx.require_admin(pw, request, "the results")
        return compute_results(ctx, base, which, drop_flagged).updates()

    run_with_buttons_disabled(
        refresh.click,
        [refresh],
        show,
        [password, baseline, mode, exclude],
        [table, method, prefs, plot, downloads, baseline, screen],
        api_name="results",
    )
