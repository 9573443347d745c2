"""Dropping a failed configuration from a plan: gone from every trial, assignment rebuilt, refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from eval.serving.assignment import assign_trials
from eval.serving.plan_drop import check_not_started, drop_condition, ratings_of_plan
from eval.serving.trials import DroppedCondition, plan_from_dict

LISTENERS = [f"listener-{k}" for k in range(40)]


def plan_doc(**changes) -> dict:
    doc = {
        "name": "drop",
        "texts": ["en_01", "en_02", "en_03"],
        "prompts": ["en_flite_slt", "en_us_espeak_m"],
        "configs": ["float32-n10", "float32-n5", "bfloat16-n5", "float16-n8"],
        "baseline": "float32-n10",
        "trials_per_listener": 9,
    }
    return doc | changes


def test_a_dropped_configuration_is_in_no_trial_and_the_rest_stay_balanced(texts, prompts) -> None:
    plan = plan_from_dict(plan_doc(reference_rate=0.2, anchor="lowpass", anchor_rate=0.2))
    dropped = drop_condition(plan, "bfloat16-n5", "screen: 6 of 6 clips flagged (silent 6)")
    assert [c.label for c in dropped.configs] == ["float32-n10", "float32-n5", "float16-n8"]
    assert dropped.dropped == (DroppedCondition("bfloat16-n5", "screen: 6 of 6 clips flagged (silent 6)"),)
    for listener in LISTENERS:
        trials = assign_trials(dropped, listener, texts, prompts)
        assert all("bfloat16-n5" not in (t.config_a.label, t.config_b.label) for t in trials)
        tests = [t for t in trials if t.kind == "test"]
        per_pair = Counter(t.config_b.label for t in tests)
        # 9 test trials over the 2 remaining pairs: 5 and 4 (balanced to +-1), none of the old pair.
        assert sorted(per_pair.values()) == [4, 5] and set(per_pair) == {"float32-n5", "float16-n8"}
        assert len(trials) == 9 + 2 + 2  # the hidden controls are still mixed in
    before = {t.trial_id for t in assign_trials(plan, "listener-0", texts, prompts)}
    after = {t.trial_id for t in assign_trials(dropped, "listener-0", texts, prompts)}
    assert not before & after  # a changed plan gets new trial ids


def test_the_drop_survives_a_save_and_reload(texts, prompts) -> None:
    import json

    dropped = drop_condition(plan_from_dict(plan_doc()), "float16-n8", "screen: non-finite samples")
    reloaded = plan_from_dict(json.loads(dropped.to_json()))
    assert reloaded == dropped and reloaded.digest() == dropped.digest()
    assert assign_trials(reloaded, "x", texts, prompts) == assign_trials(dropped, "x", texts, prompts)
    # A plan that never dropped anything keeps the digest (and trial ids) it had before drops existed.
    assert plan_from_dict(plan_doc() | {"dropped": []}).digest() == plan_from_dict(plan_doc()).digest()


def test_two_drops_in_a_row_are_both_recorded() -> None:
    plan = plan_from_dict(plan_doc())
    twice = drop_condition(drop_condition(plan, "float16-n8", "a"), "bfloat16-n5", "b")
    assert [d.label for d in twice.dropped] == ["float16-n8", "bfloat16-n5"]
    assert [c.label for c in twice.conditions] == ["float32-n10", "float32-n5"]
    with pytest.raises(ValueError, match="at least 2 configurations"):
        drop_condition(twice, "float32-n5", "c")


@pytest.mark.parametrize(
    "label, message",
    [
        ("float32-n10", "is the baseline"),
        ("float32-n2", "not a configuration of the active plan"),
        ("float32-n10-lp3500", "hidden anchor"),
    ],
)
def test_refusals_say_why(label: str, message: str) -> None:
    plan = plan_from_dict(plan_doc(anchor="lowpass"))
    with pytest.raises(ValueError, match=message):
        drop_condition(plan, label, "flagged")


def test_a_drop_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="reason"):
        drop_condition(plan_from_dict(plan_doc()), "float32-n5", "  ")


def test_a_plan_file_cannot_keep_a_dropped_configuration() -> None:
    with pytest.raises(ValueError, match="dropped configuration"):
        plan_from_dict(plan_doc(dropped=[{"label": "float32-n5", "reason": "x"}]))


def test_an_external_configuration_can_be_dropped() -> None:
    from dataclasses import replace

    plan = replace(plan_from_dict(plan_doc()), external_dir="/clips", external_configs=("server-a", "server-b"))
    dropped = drop_condition(plan, "server-a", "screen: silent")
    assert dropped.external_configs == ("server-b",) and len(dropped.configs) == 4
    assert "server-a" not in [c.label for c in dropped.conditions]


def test_no_drop_once_listeners_have_rated_the_plan(texts, prompts) -> None:
    plan = plan_from_dict(plan_doc())
    mine = [t.trial_id for t in assign_trials(plan, "early", texts, prompts)[:2]]
    other = [t.trial_id for t in assign_trials(drop_condition(plan, "float32-n5", "x"), "y", texts, prompts)]
    assert ratings_of_plan(plan, mine + other + ["pg-0123"]) == 2
    check_not_started(plan, other + ["pg-0123"])  # ratings of other plans and the playground: fine
    with pytest.raises(ValueError, match="already rated 2 trial"):
        check_not_started(plan, mine)
