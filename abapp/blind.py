"""Blind test tab: the experimenter sets up and pre-generates a plan; listeners rate hidden pairs.

The configuration behind each clip stays on the server (in this session's ``gr.State``) and is
sent to the browser only in the reveal line, after the rating has been written to the log.
Clips reach the browser as neutral copies (``<random token>/audio.wav``), never under their bank key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from abapp.context import AppContext, run_with_buttons_disabled, user_errors
from abapp.ratings_ui import PREFERENCE_CHOICES_CLIPS, SCORE_CHOICES, save_rating
from abapp.state import PairState, Side
from eval.trials import TestPlan, Trial, load_plan, next_trial, plan_from_dict
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
LOCKED_HINT = "Enter the admin password, then press **Refresh status**."
START_HINT = "Set your listener id at the top, then press **Start / resume**."


@dataclass(frozen=True)
class BlindSession:
    """One listener's place in the active test (server side only)."""

    listener_id: str
    plan: TestPlan
    trials: tuple[Trial, ...]
    trial: Trial | None  # the trial on screen; None when all are rated


def parse_configs(labels: list[str] | None, extra: str | None) -> list[str]:
    """Canonical labels from the checkboxes plus free text like ``float32-n3, bf16-n7`` (repeats dropped)."""
    names = list(labels or []) + [x for x in (extra or "").replace(";", ",").split(",") if x.strip()]
    return list(dict.fromkeys(ConfigId.parse(name).label for name in names))


def _side(clip, config: ConfigId) -> Side:
    meta = clip.meta
    return Side(
        config=config,
        dtype_ran=meta["dtype_ran"],
        backend=meta["backend"],
        llm_backend=meta.get("llm_backend", "unrecorded"),  # clips made by the first release lack it
        seed=int(meta["options"]["seed"]),
        clip_id=clip.key[:16],
    )


def _load_trial(ctx: AppContext, session: BlindSession, trial: Trial) -> tuple[PairState, str, str]:
    clip_a = ctx.blind.clip(session.plan, trial.text_id, trial.prompt_id, trial.config_a.label)
    clip_b = ctx.blind.clip(session.plan, trial.text_id, trial.prompt_id, trial.config_b.label)
    pair = PairState(
        trial_id=trial.trial_id,
        mode="blind",
        text_id=trial.text_id,
        text=ctx.texts[trial.text_id].text,
        prompt_id=trial.prompt_id,
        a=_side(clip_a, trial.config_a),
        b=_side(clip_b, trial.config_b),
        shown_first=trial.shown_first,
        model_id=ctx.pipeline.info.model_id,
        model_hash=ctx.pipeline.info.model_hash,
    )
    first, second = (clip_a, clip_b) if trial.shown_first == "A" else (clip_b, clip_a)
    return pair, ctx.blind.served_path(first), ctx.blind.served_path(second)


def _example_defaults() -> dict:
    try:
        return json.loads(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def build_blind(ctx: AppContext, listener: gr.State) -> None:
    """Lay out the blind test inside the current ``gr.Tab`` and wire its events."""
    if ctx.notice:
        gr.Markdown(ctx.notice, elem_classes=["random-weights-notice"])
    example = _example_defaults()
    with gr.Accordion("Experimenter: test plan and clip generation", open=ctx.blind.plan is None):
        admin_pw = gr.Textbox(
            label="Admin password",
            type="password",
            visible=bool(ctx.admin_password),
            elem_id="blind-admin-pw",
        )
        with gr.Row():
            plan_name = gr.Textbox(value=example.get("name", "my test"), label="Plan name")
            trials_n = gr.Number(
                value=example.get("trials_per_listener", 12),
                precision=0,
                minimum=1,
                label="Trials per listener",
            )
            seed = gr.Number(value=example.get("seed", 0), precision=0, minimum=0, label="Synthesis seed")
        plan_texts = gr.Dropdown(
            [(f"{t.id} · {t.text[:50]}", t.id) for t in ctx.texts.values()],
            value=example.get("texts"),
            multiselect=True,
            label="Texts",
        )
        plan_prompts = gr.Dropdown(
            list(ctx.prompts),
            value=example.get("prompts"),
            multiselect=True,
            label="Voice prompts (each text is paired with prompts of its language)",
        )
        with gr.Row():
            plan_configs = gr.CheckboxGroup(
                CONFIG_CHOICES, value=[c for c in CONFIG_CHOICES[:4]], label="Configurations"
            )
            extra_configs = gr.Textbox(label="More configurations (e.g. float32-n3, bfloat16-n7)")
            baseline = gr.Dropdown(
                CONFIG_CHOICES,
                value=example.get("baseline", CONFIG_CHOICES[0]),
                allow_custom_value=True,
                label="Baseline",
            )
        plan_file = gr.File(
            file_types=[".json", ".yaml", ".yml"], label="…or load a plan file (JSON / YAML)", height=120
        )
        with gr.Row():
            use_form = gr.Button("Use the plan above")
            generate = gr.Button("Pre-generate clips", variant="primary", elem_id="blind-generate")
            refresh_status = gr.Button("Refresh status")
        # NOTE: the plan summary names the configurations under test; listeners never see it
        # unless the experimenter controls are open to everyone (no admin password).
        plan_status = gr.Markdown(
            LOCKED_HINT if ctx.admin_password else ctx.blind.summary_markdown(), elem_id="blind-plan-status"
        )

    gr.Markdown("### Listening")
    start = gr.Button("Start / resume", variant="primary", elem_id="blind-start")
    counter = gr.Markdown(START_HINT, elem_id="blind-counter")
    with gr.Row():
        audio_1 = gr.Audio(
            label="Clip 1", type="filepath", interactive=False, buttons=[], elem_id="blind-audio-1"
        )
        audio_2 = gr.Audio(
            label="Clip 2", type="filepath", interactive=False, buttons=[], elem_id="blind-audio-2"
        )
    with gr.Row():
        score_1 = gr.Radio(SCORE_CHOICES, label="Score clip 1", elem_id="blind-score-1")
        score_2 = gr.Radio(SCORE_CHOICES, label="Score clip 2", elem_id="blind-score-2")
        preference = gr.Radio(PREFERENCE_CHOICES_CLIPS, label="Preference", elem_id="blind-preference")
    with gr.Row():
        submit = gr.Button("Submit rating", elem_id="blind-rate")
        next_btn = gr.Button("Next trial", visible=False, elem_id="blind-next")
    reveal = gr.Markdown(elem_id="blind-reveal")
    status = gr.Markdown(elem_id="blind-status")
    session = gr.State(None)
    pair = gr.State(None)

    def require_admin(password: str | None) -> None:
        if not ctx.check_admin(password):
            raise ValueError("wrong admin password: the experimenter controls are locked")

    @user_errors
    def set_from_form(password, name, n, seed_value, texts, prompts, configs, extra, base):
        require_admin(password)
        doc = {
            "name": name or "my test",
            "texts": texts or [],
            "prompts": prompts or [],
            "configs": parse_configs(configs, extra),
            "baseline": base,
            "trials_per_listener": n,
            "seed": seed_value,
        }
        ctx.blind.set_plan(plan_from_dict(doc, ctx.texts))
        return ctx.blind.summary_markdown()

    @user_errors
    def set_from_file(password, file_path):
        require_admin(password)
        if not file_path:
            raise ValueError("choose a plan file (.json or .yaml) first")
        ctx.blind.set_plan(load_plan(file_path))
        return ctx.blind.summary_markdown()

    @user_errors
    def pregenerate(password, progress=gr.Progress()):  # noqa: B008 - gradio injects the tracker here
        require_admin(password)
        ctx.blind.generate(lambda done, total, msg: progress((done, total), desc=msg, unit="clips"))
        return ctx.blind.summary_markdown()

    @user_errors
    def status_for_admin(password):
        require_admin(password)
        return ctx.blind.summary_markdown()

    refresh_status.click(status_for_admin, admin_pw, plan_status, api_name="blind_status")
    form_inputs = [
        admin_pw,
        plan_name,
        trials_n,
        seed,
        plan_texts,
        plan_prompts,
        plan_configs,
        extra_configs,
        baseline,
    ]
    use_form.click(set_from_form, form_inputs, plan_status, api_name="blind_set_plan")
    plan_file.upload(set_from_file, [admin_pw, plan_file], plan_status, api_name="blind_load_plan")
    run_with_buttons_disabled(
        generate.click,
        [generate],
        pregenerate,
        admin_pw,
        plan_status,
        api_name="blind_generate",
        concurrency_limit=1,
        concurrency_id="synthesis",
    )

    def show(ctx_session: BlindSession, rated: set[str]):
        trial = next_trial(list(ctx_session.trials), rated)
        total = len(ctx_session.trials)
        done = sum(t.trial_id in rated for t in ctx_session.trials)
        if trial is None:
            message = f"🎉 You have rated all {total} trials of this test. Thank you!"
            return (
                replace(ctx_session, trial=None),
                None,
                None,
                None,
                message,
                None,
                None,
                None,
                "",
                gr.Button(visible=False),
                gr.Button(interactive=False),
                "",
            )
        new_pair, first, second = _load_trial(ctx, ctx_session, trial)
        message = (
            f"**Trial {done + 1} of {total}** · play both clips, then score each and choose a preference."
        )
        return (
            replace(ctx_session, trial=trial),
            new_pair,
            first,
            second,
            message,
            None,
            None,
            None,
            "",
            gr.Button(visible=False),
            gr.Button(interactive=True),
            "",
        )

    outputs = [
        session,
        pair,
        audio_1,
        audio_2,
        counter,
        score_1,
        score_2,
        preference,
        reveal,
        next_btn,
        submit,
        status,
    ]

    @user_errors
    def start_or_resume(listener_id):
        if not listener_id:
            raise ValueError("enter your listener id first (at the top of the page)")
        plan, trials = ctx.blind.trials_for(listener_id)
        new_session = BlindSession(listener_id, plan, tuple(trials), None)
        return show(new_session, ctx.store.rated_trial_ids(listener_id))

    @user_errors
    def next_trial_handler(current: BlindSession | None):
        if current is None:
            raise ValueError("press Start / resume first")
        return show(current, ctx.store.rated_trial_ids(current.listener_id))

    start.click(start_or_resume, listener, outputs, api_name="blind_start")
    next_btn.click(next_trial_handler, session, outputs, api_name="blind_next")

    audio_1.play(
        lambda p: p.with_played("first") if p else None, pair, pair, queue=False, api_name="blind_played_1"
    )
    audio_2.play(
        lambda p: p.with_played("second") if p else None, pair, pair, queue=False, api_name="blind_played_2"
    )

    @user_errors
    def rate(current_pair, listener_id, s1, s2, pref, request: gr.Request):
        rated, message = save_rating(ctx, current_pair, listener_id, request.session_hash, s1, s2, pref)
        return rated, message, rated.reveal(), gr.Button(visible=True)

    # Disabled while saving; enabled again only if the pair is still unrated (the save failed).
    run_with_buttons_disabled(
        submit.click,
        [submit],
        rate,
        [pair, listener, score_1, score_2, preference],
        [pair, status, reveal, next_btn],
        enable=(lambda p: gr.Button(interactive=p is not None and not p.rated), pair),
        api_name="blind_rate",
    )
