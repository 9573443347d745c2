"""The Results tab's screen section: the automatic screen beside the listeners' scores.

For the active plan, the saved screen of its clip bank (abapp/bank_screen.py, written by the blind
tab's "Screen the bank") is joined to the ratings log by clip id (eval/screen/agreement.py, the
same computation as ``python -m eval.statistics.report --screen``): per configuration the human MOS
of its screened clips beside the screen's means, and Spearman's rank correlation of each measure
with the human score across configurations and across clips. Without a saved screen it says so in
one line, and how to make one.
"""

from __future__ import annotations

import pandas as pd

from abapp.context import AppContext
from eval.screen.agreement import LEVEL_CLIPS, LEVEL_CONFIGS, SHOWN, ScreenAgreement, compare_with_listeners
from eval.serving.ratings_schema import COLUMNS
from eval.statistics.ratings_io import drop_duplicate_trials, read_ratings
from eval.statistics.summary import format_number

NO_PLAN = "Automatic screen: no blind-test plan is active, so there is no clip bank to compare with."


def table_number(value: float | None, fmt: str = ".2f") -> str:
    """A number in the Results tab's tables ('–' when missing)."""
    return format_number(value, fmt, missing="–")


def no_screen_line(plan_name: str) -> str:
    return (
        f"Automatic screen: the clips of the plan “{plan_name}” have not been screened yet. Press "
        "**Screen the bank** in the Blind test tab's experimenter panel (or run "
        "`python -m eval.screen.plan PLAN --model_dir DIR` and `python -m eval.statistics.report ... --screen clips.csv`)."
    )


def screen_beside_mos(ctx: AppContext, rows: list[dict[str, str]]) -> str:
    """Markdown: the screen's means beside the human MOS and their rank correlations over ``rows``
    (the ratings the table above counts: the store's rows, blind only when it shows blind only)."""
    plan = ctx.blind.plan
    if plan is None:
        return NO_PLAN
    screen = ctx.bank_screen.saved(ctx.blind)
    if screen is None:
        return no_screen_line(plan.name)
    table, _ = drop_duplicate_trials(read_ratings(pd.DataFrame(rows, columns=COLUMNS)))
    return agreement_markdown(compare_with_listeners(table, screen.rows), plan.name)


def agreement_markdown(agreement: ScreenAgreement, plan_name: str) -> str:
    """The per-configuration table (human MOS and screen means) and the rank correlations."""
    head = "| configuration | rated / screened clips | human MOS | " + " | ".join(n for _, n in SHOWN) + " |"
    lines = [
        f"**Automatic screen beside the listeners** (plan “{plan_name}”; the human MOS here is over the "
        "screened clips that were rated):",
        "",
        head,
        "|" + "---|" * (len(SHOWN) + 3),
    ]
    for c in agreement.configs:
        means = [table_number(c.screen_mean(m), ".3f") for m, _ in SHOWN]
        lines.append(f"| `{c.config}` | {c.n_rated_clips} / {c.n_clips} | {table_number(c.human_mos)} | " + " | ".join(means) + " |")
    lines += [
        "",
        "Spearman rank correlation with the human score (WER/CER should be negative, the others positive):",
        "",
        "| measure | across configurations: ρ (n) | across clips: ρ (n, p) |",
        "|---|---|---|",
    ]
    for m, name in SHOWN:
        by_config, by_clip = agreement.correlation(m, LEVEL_CONFIGS), agreement.correlation(m, LEVEL_CLIPS)
        config_cell = f"{table_number(by_config.rho)} ({by_config.n}{', ' + by_config.note if by_config.note else ''})"
        clip_cell = f"{table_number(by_clip.rho)} ({by_clip.n}, p {table_number(by_clip.p_value, '.3f')}{', ' + by_clip.note if by_clip.note else ''})"
        lines.append(f"| {name} | {config_cell} | {clip_cell} |")
    lines += [
        "",
        f"{agreement.n_scores_matched} scores matched to screened clips, {agreement.n_scores_unmatched} not "
        "(playground clips and clips of other plans are not in the bank's screen).",
    ]
    return "\n".join(lines)
