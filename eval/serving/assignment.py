"""Balanced blind assignment: which trials of a test plan (eval/serving/trials.py) a listener rates.

:func:`assign_trials`: per listener a deterministic (seeded by plan and listener id), balanced and
shuffled list of trials, so a listener who reloads the page gets the same list back and resumes at
the first trial without a rating in the CSV (:func:`next_trial`).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from eval.serving.conditions import Condition
from eval.serving.trials import PromptAsset, TestPlan, TextItem, plan_tag


@dataclass(frozen=True)
class Trial:
    """One A/B judgement of a listener. Server-side only: it names the conditions."""

    trial_id: str
    index: int  # 0-based position in the listener's list
    text_id: str
    prompt_id: str
    config_a: Condition
    config_b: Condition
    shown_first: str  # "A" | "B": which condition plays as the first clip
    kind: str = "test"  # "test" | "anchor" (anchor vs baseline) | "reference" (baseline vs itself)


def listener_digest(listener_id: str) -> str:
    return hashlib.sha256(listener_id.encode("utf-8")).hexdigest()


def assign_trials(
    plan: TestPlan, listener_id: str, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]
) -> list[Trial]:
    """The listener's trials: deterministic in (plan, listener id), balanced, then shuffled.

    Balance within a listener: every pair is compared equally often (+-1); texts and prompts are
    spread as evenly as the pair schedule allows (least-used first); no (text, prompt, pair)
    repeats; within each pair and over the whole list, A is played first in half the trials (+-1).
    Across listeners the choice of ties and the order are randomised by the listener id. The
    plan's hidden anchor and reference trials are then mixed in at random places (a plan without
    them gives exactly the list it gave before they existed).
    """
    if not listener_id.strip():
        raise ValueError("listener id must not be empty")
    combos = plan.stimuli(texts, prompts)
    pairs = plan.pairs
    n = plan.trials_per_listener
    if n > len(combos) * len(pairs):
        raise ValueError(
            f"test plan {plan.name!r} asks {n} trials per listener but has only "
            f"{len(combos) * len(pairs)} distinct (text, prompt, pair) stimuli"
        )
    rng = random.Random(f"{plan.digest()}|{listener_id}")
    pair_order = _balanced_cycle(range(len(pairs)), n, rng)
    use = _Use(Counter(), Counter())
    used: set[tuple[str, str, int]] = set()
    chosen: list[tuple[str, str, int]] = []
    for pair_index in pair_order:
        options = [(t, p) for t, p in combos if (t, p, pair_index) not in used]
        t, p = use.least_used(options, rng)
        used.add((t, p, pair_index))
        chosen.append((t, p, pair_index))
    sides = _balanced_sides(Counter(i for _, _, i in chosen), rng)
    rng.shuffle(chosen)
    entries = [(t, p, *pairs[i], sides[i].pop(), "test") for t, p, i in chosen]
    controls = _control_entries(plan, combos, use, rng)
    if controls:
        entries += controls
        rng.shuffle(entries)
    tag, listener_tag = plan_tag(plan), listener_digest(listener_id)[:8]
    return [
        Trial(f"{tag}-{listener_tag}-{index:03d}", index, t, p, a, b, first, kind)
        for index, (t, p, a, b, first, kind) in enumerate(entries)
    ]


@dataclass(frozen=True)
class _Use:
    """How often each text and prompt is in the listener's list so far."""

    texts: Counter
    prompts: Counter

    def least_used(self, options: list[tuple[str, str]], rng: random.Random) -> tuple[str, str]:
        rng.shuffle(options)  # random tie-break among equally used texts/prompts
        t, p = min(options, key=lambda tp: (self.texts[tp[0]], self.prompts[tp[1]]))
        self.texts[t] += 1
        self.prompts[p] += 1
        return t, p


def _control_entries(
    plan: TestPlan, combos: list[tuple[str, str]], use: _Use, rng: random.Random
) -> list[tuple]:
    """Anchor trials (baseline vs anchor, sides balanced) and hidden-reference trials (baseline
    vs baseline), on the least-used stimuli."""
    n_anchor, n_reference = plan.controls_per_listener()
    base, anchor = plan.baseline_condition, plan.anchor_condition
    out = []
    if n_anchor:
        sides = _balanced_sides(Counter({0: n_anchor}), rng)[0]
        out += [(*use.least_used(list(combos), rng), base, anchor, sides.pop(), "anchor") for _ in range(n_anchor)]
    if n_reference:
        sides = _balanced_sides(Counter({0: n_reference}), rng)[0]
        out += [(*use.least_used(list(combos), rng), base, base, sides.pop(), "reference") for _ in range(n_reference)]
    return out


def _balanced_cycle(items: Iterable, n: int, rng: random.Random) -> list:
    """``n`` items drawn by repeating shuffled copies of ``items`` (each count differs by at most 1)."""
    items = list(items)
    out: list = []
    while len(out) < n:
        block = items[:]
        rng.shuffle(block)
        out.extend(block)
    out = out[:n]
    rng.shuffle(out)
    return out


def _balanced_sides(counts: Counter, rng: random.Random) -> dict[int, list[str]]:
    """Per pair a shuffled list of "A"/"B" with equal halves; the odd ones out alternate between
    pairs, so the listener's whole list is balanced too (counts differ by at most 1)."""
    odd_side = rng.choice("AB")
    sides = {}
    for pair_index in sorted(counts, key=lambda _: rng.random()):
        count = counts[pair_index]
        block = ["A", "B"] * (count // 2)
        if count % 2:
            block.append(odd_side)
            odd_side = "B" if odd_side == "A" else "A"
        rng.shuffle(block)
        sides[pair_index] = block
    return sides


def next_trial(trials: list[Trial], rated_ids: set[str]) -> Trial | None:
    """The first trial without a rating (None when the listener is done)."""
    return next((t for t in trials if t.trial_id not in rated_ids), None)
