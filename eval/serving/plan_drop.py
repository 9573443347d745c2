"""Taking a failed condition out of a test plan before its test is opened.

When the automatic screen (eval/screen/) finds broken clips of a configuration (silence, NaN, a
token loop), the experimenter can drop that configuration instead of asking listeners to rate it.
:func:`drop_condition` returns the plan without it, with the drop recorded in ``plan.dropped``; the
rest follows from the plan being a value:

* the pairs, and therefore every listener's balanced assignment (eval/serving/assignment.py
  :func:`~eval.serving.assignment.assign_trials`), are rebuilt over the remaining conditions, and no
  trial can name the dropped one;
* the plan's digest changes, so its trial ids are new. That is why a drop is refused once anyone
  has rated a trial of the plan (:func:`check_not_started`): those listeners would find a different
  list on their next visit, and their ratings would mix two designs.

Refused with a message for the experimenter: the baseline (every pair compares against it), a
drop that leaves fewer than :data:`MIN_CONDITIONS` conditions, a label that is not under test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from eval.serving.trials import DroppedCondition, TestPlan, plan_tag

MIN_CONDITIONS = 2  # a test compares at least two conditions


def check_droppable(plan: TestPlan, label: str) -> None:
    """ValueError (saying why and what to do instead) when ``label`` cannot be dropped from ``plan``."""
    labels = [c.label for c in plan.conditions]
    if label not in labels:
        anchor = plan.anchor_condition
        if anchor is not None and anchor.label == label:
            raise ValueError(f"`{label}` is the hidden anchor, not a configuration under test; it cannot be dropped")
        raise ValueError(f"`{label}` is not a configuration of the active plan (it has {', '.join(labels)})")
    if label == plan.baseline:
        raise ValueError(
            f"`{label}` is the baseline: every pair compares against it, so it cannot be dropped. "
            "Define a new plan with another baseline instead."
        )
    if len(labels) - 1 < MIN_CONDITIONS:
        raise ValueError(
            f"dropping `{label}` would leave only `{plan.baseline}`: a test needs at least "
            f"{MIN_CONDITIONS} configurations"
        )


def drop_condition(plan: TestPlan, label: str, reason: str) -> TestPlan:
    """``plan`` without the condition ``label`` (ours or an external one), the drop recorded with ``reason``.

    ValueError when the drop is not allowed (:func:`check_droppable`) or has no reason.
    """
    check_droppable(plan, label)
    if not reason.strip():
        raise ValueError("a drop needs its reason (what the screen found)")
    return replace(
        plan,
        configs=tuple(c for c in plan.configs if c.label != label),
        external_configs=tuple(c for c in plan.external_configs if c != label),
        dropped=(*plan.dropped, DroppedCondition(label, reason.strip())),
    )


def ratings_of_plan(plan: TestPlan, trial_ids: Iterable[str]) -> int:
    """How many of ``trial_ids`` (the ratings log's) are trials of ``plan``."""
    prefix = plan_tag(plan) + "-"
    return sum(str(t).startswith(prefix) for t in trial_ids)


def check_not_started(plan: TestPlan, trial_ids: Iterable[str]) -> None:
    """ValueError when listeners have already rated trials of ``plan`` (a drop would change their lists)."""
    n = ratings_of_plan(plan, trial_ids)
    if n:
        raise ValueError(
            f"listeners have already rated {n} trial(s) of this plan: dropping a configuration now would "
            "change their trial lists mid-test. Define a new plan (new trial ids) instead."
        )
