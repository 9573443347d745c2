"""What the blind tab's "Screen the bank" and "Drop" do, without gradio's layout (abapp/blind.py).

Before the test is opened, the experimenter screens every generated clip of the active plan
(abapp/bank_screen.py), reads the per-configuration table and the plot, and may drop a
configuration with flagged clips from the plan (rules in eval/serving/plan_drop.py: not the
baseline, not below two configurations, not once anyone has rated the plan). Each handler takes
small typed values and returns a :class:`ScreenView`; refusals are ValueError / RuntimeError with a
message for the experimenter (``abapp.context.user_errors`` shows it as one message).
"""

from __future__ import annotations

from dataclasses import dataclass

from abapp.bank_screen import BankScreen
from abapp.context import AppContext
from abapp.screen_view import bank_screen_markdown
from eval.serving.plan_drop import check_droppable, check_not_started

LOCKED = ""  # nothing about the plan is shown before the password is given
NO_PLAN = "No test plan is active yet: define one (or load a plan file), then pre-generate and screen its clips."


@dataclass(frozen=True)
class ScreenView:
    """The screen section of the experimenter panel."""

    summary: str  # Markdown: what was screened, the table, the flagged clips, what may be dropped
    figure: object | None  # matplotlib Figure of the measures (None: nothing screened)
    drop_choices: tuple[str, ...]  # configurations offered for dropping (flagged, not the baseline)
    plan_status: str | None = None  # the plan's status after a drop (None: unchanged)


def _view(ctx: AppContext, screen: BankScreen | None, plan_status: str | None = None) -> ScreenView:
    plan = ctx.blind.plan
    if plan is None:
        return ScreenView(NO_PLAN, None, (), plan_status)
    figure = screen.figure() if screen is not None and screen.rows else None
    choices = screen.droppable if screen is not None else ()
    return ScreenView(bank_screen_markdown(screen, plan), figure, choices, plan_status)


def screen_on_load(ctx: AppContext, request) -> ScreenView:
    """After a page load: the saved screen of the active plan for the experimenter, nothing for others."""
    if not ctx.check_admin(None, request):
        return ScreenView(LOCKED, None, ())
    return _view(ctx, ctx.bank_screen.saved(ctx.blind))


def screen_status(ctx: AppContext, password: str | None, request) -> ScreenView:
    """The saved screen of the active plan (after Refresh status, a new plan, new clips)."""
    ctx.require_admin(password, request)
    return _view(ctx, ctx.bank_screen.saved(ctx.blind))


def screen_bank(ctx: AppContext, password: str | None, request, progress) -> ScreenView:
    """Screen every generated clip of the active plan; ``progress(done, total, message)``."""
    ctx.require_admin(password, request)
    return _view(ctx, ctx.bank_screen.run(ctx.blind, progress))


def drop_configuration(ctx: AppContext, password: str | None, request, label: str | None) -> ScreenView:
    """Drop ``label`` (a configuration the screen flagged) from the active plan, before anyone rates it."""
    ctx.require_admin(password, request)
    plan = ctx.blind.plan
    if plan is None:
        raise ValueError("no test plan is active")
    if not label:
        raise ValueError("choose the configuration to drop (only configurations with flagged clips are offered)")
    check_droppable(plan, label)  # the refusals that need no screen: baseline, last two, unknown
    screen = ctx.bank_screen.saved(ctx.blind)
    if screen is None:
        raise ValueError("screen the bank first: a configuration is dropped for what the screen found")
    reason = screen.drop_reason(label)
    check_not_started(plan, ctx.store.rated_trial_ids())
    ctx.blind.drop(label, reason)
    return _view(ctx, ctx.bank_screen.saved(ctx.blind), ctx.blind.summary_markdown())
