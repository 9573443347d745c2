"""What the blind-test tab does, without gradio's layout: plan set-up, trials, playback, ratings.

Each handler takes small typed values and returns a frozen view (:class:`PanelView`,
:class:`TrialView`, :class:`RatedView`); abapp/blind.py lays out the tab and turns views into
component updates. Handlers raise ValueError (or :class:`~abapp.state.RatingRefused`) with a
message for the person at the browser; ``user_errors`` shows it as one message.

Blinding: nothing a listener's browser receives names a condition or links a clip to another
serving of it (abapp/served_clips.py); the conditions are named to a listener at most once, at the
end of the test, and then only as their own mean score per condition (``reveal_at_end``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from abapp.context import AppContext
from abapp.playback import ClipPlayback
from abapp.state import PairState, Side
from eval.serving.assignment import Trial, next_trial
from eval.serving.clipbank import Clip
from eval.serving.conditions import ANCHOR_LOWPASS, Condition
from eval.serving.trials import TestPlan, load_plan, plan_from_dict
from tts_core.config_id import ConfigId

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLAN = ROOT / "assets" / "plans" / "example.json"
CONFIG_CHOICES = [
    c.label
    for c in (
        ConfigId("float16", 10),
        ConfigId("bfloat16", 5),
        ConfigId("bfloat16", 10),
        ConfigId("float16", 8),
        ConfigId("float32", 10),
        ConfigId("float32", 5),
    )
]
ANCHOR_CHOICES = [
    ("none", ""),
    ("the baseline low-passed at 3.5 kHz (MUSHRA)", ANCHOR_LOWPASS),
    ("float32-n1 (one flow step)", "float32-n1"),
]
LOCKED_HINT = "Enter the admin password, then press **Refresh status**."
START_HINT = "Set your listener id at the top, then press **Start / resume**."


@dataclass(frozen=True)
class PlanForm:
    """The experimenter form's values (as the widgets hold them)."""

    name: str
    trials_per_listener: object
    seed: object
    texts: tuple[str, ...]
    prompts: tuple[str, ...]
    configs: tuple[str, ...]  # labels ticked among CONFIG_CHOICES
    extra_configs: str  # more labels, comma separated
    baseline: str
    anchor: str = ""
    anchor_rate: object = 0.1
    reference_rate: object = 0.0
    reveal_at_end: bool = False
    external_dir: str = ""

    def plan_doc(self) -> dict:
        doc = {
            "name": self.name or "my test",
            "texts": list(self.texts),
            "prompts": list(self.prompts),
            "configs": parse_configs(list(self.configs), self.extra_configs),
            "baseline": self.baseline,
            "trials_per_listener": self.trials_per_listener,
            "seed": self.seed,
            "reference_rate": self.reference_rate or 0.0,
            "reveal_at_end": bool(self.reveal_at_end),
        }
        if self.anchor:  # without an anchor the rate field means nothing
            doc |= {"anchor": self.anchor, "anchor_rate": self.anchor_rate}
        if (self.external_dir or "").strip():
            doc["external"] = {"folder": self.external_dir.strip()}
        return doc

    @classmethod
    def from_plan(cls, plan: TestPlan) -> PlanForm:
        ours = [c.label for c in plan.configs]
        return cls(
            name=plan.name,
            trials_per_listener=plan.trials_per_listener,
            seed=plan.seed,
            texts=plan.text_ids,
            prompts=plan.prompt_ids,
            configs=tuple(c for c in ours if c in CONFIG_CHOICES),
            extra_configs=", ".join(c for c in ours if c not in CONFIG_CHOICES),
            baseline=plan.baseline,
            anchor=plan.anchor,
            anchor_rate=plan.anchor_rate if plan.anchor else 0.1,
            reference_rate=plan.reference_rate,
            reveal_at_end=plan.reveal_at_end,
            external_dir=plan.external_dir,
        )


def parse_configs(labels: list[str] | None, extra: str | None) -> list[str]:
    """Canonical labels from the checkboxes plus free text like ``float32-n3, bf16-n7`` (repeats dropped)."""
    names = list(labels or []) + [x for x in (extra or "").replace(";", ",").split(",") if x.strip()]
    return list(dict.fromkeys(ConfigId.parse(name).label for name in names))


def example_form() -> PlanForm:
    """The form as the page first shows it: the example plan (assets/plans/example.json)."""
    doc = json.loads(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    return PlanForm(
        name=doc["name"],
        trials_per_listener=doc["trials_per_listener"],
        seed=doc.get("seed", 0),
        texts=tuple(doc["texts"]),
        prompts=tuple(doc["prompts"]),
        configs=tuple(c for c in doc["configs"] if c in CONFIG_CHOICES),
        extra_configs="",
        baseline=doc["baseline"],
    )


# ----------------------------------------------------------------------------- experimenter


@dataclass(frozen=True)
class PanelView:
    """What the experimenter panel shows: the status, and the form's values (None: unchanged)."""

    status: str
    form: PlanForm | None = None


def _panel(ctx: AppContext) -> PanelView:
    plan = ctx.blind.plan
    return PanelView(ctx.blind.summary_markdown(), PlanForm.from_plan(plan) if plan is not None else None)


def panel_on_load(ctx: AppContext, request) -> PanelView:
    """After every page load: the active plan for the experimenter, the locked hint for others."""
    if not ctx.check_admin(None, request):
        return PanelView(LOCKED_HINT)
    return _panel(ctx)


def panel_status(ctx: AppContext, password: str | None, request) -> PanelView:
    ctx.require_admin(password, request)
    return _panel(ctx)


def set_plan_from_form(ctx: AppContext, password: str | None, request, form: PlanForm) -> PanelView:
    ctx.require_admin(password, request)
    ctx.blind.set_plan(plan_from_dict(form.plan_doc(), ctx.texts))
    return PanelView(ctx.blind.summary_markdown())


def load_plan_file(ctx: AppContext, password: str | None, request, path: str | None) -> PanelView:
    """Activate the plan in a .json/.yaml file and fill the form with it."""
    ctx.require_admin(password, request)
    if not path:
        raise ValueError("choose a plan file (.json or .yaml) first")
    ctx.blind.set_plan(load_plan(path))
    return _panel(ctx)


def pregenerate(ctx: AppContext, password: str | None, request, progress) -> PanelView:
    """Make every missing clip of the active plan; ``progress(done, total, message)``."""
    ctx.require_admin(password, request)
    ctx.blind.generate(progress)
    return PanelView(ctx.blind.summary_markdown())


# ----------------------------------------------------------------------------- listening


@dataclass(frozen=True)
class BlindSession:
    """One listener's place in the active test (server side only)."""

    listener_id: str
    plan: TestPlan
    trials: tuple[Trial, ...]
    trial: Trial | None  # the trial on screen; None when all are rated


@dataclass(frozen=True)
class TrialView:
    """The listening part of the tab for one trial (or the end of the test)."""

    session: BlindSession
    pair: PairState | None
    clip_1: str | None  # served file paths
    clip_2: str | None
    playback_1: ClipPlayback | None
    playback_2: ClipPlayback | None
    counter: str
    finished_message: str  # the end of the test: thanks, and the reveal when the plan allows it

    @property
    def can_rate(self) -> bool:
        return self.pair is not None


def side_of(clip: Clip, condition: Condition) -> Side:
    meta = clip.meta
    return Side(
        condition=condition,
        dtype_ran=meta["dtype_ran"],
        backend=meta["backend"],
        llm_backend=meta.get("llm_backend", "unrecorded"),  # clips made by the first release lack it
        seed=int(meta["options"]["seed"]),
        clip_id=clip.key[:16],
    )


def load_trial(ctx: AppContext, session: BlindSession, trial: Trial) -> tuple[PairState, str, str, float]:
    """(the pair, served path of clip 1, of clip 2, their duration in seconds)."""
    served = ctx.blind.serve(session.plan, trial)
    by_side = {trial.shown_first: served.first, ("B" if trial.shown_first == "A" else "A"): served.second}
    pair = PairState(
        trial_id=trial.trial_id,
        mode="blind",
        text_id=trial.text_id,
        text=ctx.texts[trial.text_id].text,
        prompt_id=trial.prompt_id,
        a=side_of(by_side["A"], trial.config_a),
        b=side_of(by_side["B"], trial.config_b),
        shown_first=trial.shown_first,
        model_id=ctx.pipeline.info.model_id,
        model_hash=ctx.pipeline.info.model_hash,
        kind=trial.kind,
    )
    return pair, served.first_path, served.second_path, served.duration_s


def _show(ctx: AppContext, session: BlindSession) -> TrialView:
    rated = ctx.store.rated_trial_ids(session.listener_id)
    trial = next_trial(list(session.trials), rated)
    total = len(session.trials)
    if trial is None:
        message = f"🎉 You have rated all {total} trials of this test. Thank you!"
        reveal = own_scores_markdown(ctx, session) if session.plan.reveal_at_end else ""
        return TrialView(replace(session, trial=None), None, None, None, None, None, message, reveal)
    pair, first, second, seconds = load_trial(ctx, session, trial)
    done = sum(t.trial_id in rated for t in session.trials)
    counter = (
        f"**Trial {done + 1} of {total}** · play each clip to its end (one at a time), "
        "then score both and choose a preference."
    )
    playback = ClipPlayback(seconds)
    return TrialView(replace(session, trial=trial), pair, first, second, playback, playback, counter, "")


def start(ctx: AppContext, listener_id: str | None) -> TrialView:
    if not listener_id:
        raise ValueError("enter your listener id first (at the top of the page)")
    plan, trials = ctx.blind.trials_for(listener_id)
    return _show(ctx, BlindSession(listener_id, plan, tuple(trials), None))


def next_trial_view(ctx: AppContext, session: BlindSession | None) -> TrialView:
    if session is None:
        raise ValueError("press Start / resume first")
    return _show(ctx, session)


def own_scores_markdown(ctx: AppContext, session: BlindSession) -> str:
    """The listener's mean score per condition over this test (the only reveal, at the end)."""
    ids = {t.trial_id for t in session.trials}
    scores: dict[str, list[int]] = defaultdict(list)
    for row in ctx.store.rows():
        if row["trial_id"] in ids:
            for side in ("a", "b"):
                scores[row[f"{side}_config"]].append(int(row[f"score_{side}"]))
    lines = ["Your scores by configuration:", "", "| configuration | clips | your mean score |", "|---|---|---|"]
    for label, values in sorted(scores.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])):
        lines.append(f"| `{label}` | {len(values)} | {sum(values) / len(values):.2f} |")
    return "\n".join(lines)
