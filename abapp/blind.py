"""Blind test tab: the layout and its wiring; what each event does is in abapp/blind_handlers.py.

The experimenter sets up and pre-generates a plan, screens its clips and may drop a configuration
with failures (abapp/blind_screen_ui.py); listeners rate hidden pairs. The condition behind
each clip stays on the server (in this session's ``gr.State``); the browser gets fresh copies of the
clips (abapp/served_clips.py). Each clip counts as heard only once it has played to its end
(abapp/playback.py); starting one clip pauses the other (a few lines of JavaScript in the page).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from abapp import blind_handlers as handlers
from abapp.blind_handlers import ANCHOR_CHOICES, CONFIG_CHOICES, START_HINT, PanelView, PlanForm, TrialView
from abapp.blind_screen_ui import ScreenWidgets, screen_layout, wire_screen
from abapp.context import AppContext, run_with_buttons_disabled, user_errors
from abapp.listening_ui import Player, listening_line, wire_players
from abapp.ratings_ui import PREFERENCE_CHOICES_CLIPS, SCORE_CHOICES, save_rating
from abapp.state import Judgement

QUIET = {"show_progress": "hidden"}  # a refusal shows its one message; other outputs stay as they were


@dataclass(frozen=True)
class PanelWidgets:
    """The experimenter panel: password, plan form, status."""

    password: gr.Textbox
    status: gr.Markdown
    name: gr.Textbox
    trials: gr.Number
    seed: gr.Number
    texts: gr.Dropdown
    prompts: gr.Dropdown
    configs: gr.CheckboxGroup
    extra: gr.Textbox
    baseline: gr.Dropdown
    anchor: gr.Dropdown
    anchor_rate: gr.Number
    reference_rate: gr.Number
    reveal_at_end: gr.Checkbox
    external_dir: gr.Textbox

    @property
    def form(self) -> list:
        """The form's components in :class:`PlanForm` field order."""
        return [
            self.name, self.trials, self.seed, self.texts, self.prompts, self.configs, self.extra,
            self.baseline, self.anchor, self.anchor_rate, self.reference_rate, self.reveal_at_end,
            self.external_dir,
        ]  # fmt: skip

    def updates(self, view: PanelView) -> dict:
        out = {self.status: view.status}
        if view.form is not None:
            f = view.form
            values = (
                f.name, f.trials_per_listener, f.seed, list(f.texts), list(f.prompts), list(f.configs),
                f.extra_configs, f.baseline, f.anchor, f.anchor_rate, f.reference_rate, f.reveal_at_end,
                f.external_dir,
            )  # fmt: skip
            out |= dict(zip(self.form, values))
        return out


@dataclass(frozen=True)
class PanelButtons:
    """The panel's plan actions."""

    plan_file: gr.File
    use_form: gr.Button
    generate: gr.Button
    refresh: gr.Button


@dataclass(frozen=True)
class ListenWidgets:
    """The listening part: states, players, rating widgets and messages."""

    session: gr.State
    pair: gr.State
    playback_1: gr.State
    playback_2: gr.State
    audio_1: gr.Audio
    audio_2: gr.Audio
    counter: gr.Markdown
    listening: gr.Markdown
    score_1: gr.Radio
    score_2: gr.Radio
    preference: gr.Radio
    submit: gr.Button
    next_btn: gr.Button
    reveal: gr.Markdown
    status: gr.Markdown

    @property
    def trial_outputs(self) -> list:
        # NOTE: this order is the API's (gradio_client drops the states): audio 1, audio 2, counter, ...
        return [
            self.session, self.pair, self.audio_1, self.audio_2, self.counter, self.score_1, self.score_2,
            self.preference, self.reveal, self.next_btn, self.submit, self.listening, self.status,
            self.playback_1, self.playback_2,
        ]  # fmt: skip

    def trial_updates(self, view: TrialView) -> dict:
        return {
            self.session: view.session,
            self.pair: view.pair,
            self.audio_1: view.clip_1,
            self.audio_2: view.clip_2,
            self.counter: view.counter,
            self.score_1: None,
            self.score_2: None,
            self.preference: None,
            self.reveal: view.finished_message,
            self.next_btn: gr.Button(visible=False),
            self.submit: gr.Button(interactive=view.can_rate),
            self.status: "",
            self.playback_1: view.playback_1,
            self.playback_2: view.playback_2,
            self.listening: listening_line(view.playback_1, view.playback_2) if view.can_rate else "",
        }


def _panel_layout(ctx: AppContext) -> tuple[PanelWidgets, PanelButtons, ScreenWidgets]:
    form = handlers.example_form()
    local_hint = " (not needed from this machine)" if ctx.access.generated else ""
    with gr.Accordion("Experimenter: test plan and clip generation", open=False):
        password = gr.Textbox(label=f"Admin password{local_hint}", type="password", elem_id="blind-admin-pw")
        with gr.Row():
            name = gr.Textbox(value=form.name, label="Plan name")
            trials = gr.Number(value=form.trials_per_listener, precision=0, minimum=1, label="Trials per listener")
            seed = gr.Number(value=form.seed, precision=0, minimum=0, label="Synthesis seed")
        texts = gr.Dropdown(
            [(f"{t.id} · {t.text[:50]}", t.id) for t in ctx.texts.values()],
            value=list(form.texts),
            multiselect=True,
            label="Texts",
        )
        prompts = gr.Dropdown(
            list(ctx.prompts),
            value=list(form.prompts),
            multiselect=True,
            label="Voice prompts (each text is paired with prompts of its language)",
        )
        with gr.Row():
            configs = gr.CheckboxGroup(CONFIG_CHOICES, value=list(form.configs), label="Configurations")
            extra = gr.Textbox(label="More configurations (e.g. float32-n3, bfloat16-n7)")
            baseline = gr.Dropdown(CONFIG_CHOICES, value=form.baseline, allow_custom_value=True, label="Baseline")
        with gr.Row():
            anchor = gr.Dropdown(ANCHOR_CHOICES, value="", allow_custom_value=True, label="Hidden low anchor")
            anchor_rate = gr.Number(value=0.1, minimum=0, maximum=1, label="Anchor trials per test trial")
            reference_rate = gr.Number(
                value=0.0, minimum=0, maximum=1, label="Hidden-reference trials (baseline vs itself) per test trial"
            )
            reveal_at_end = gr.Checkbox(value=False, label="Show each listener their scores per configuration at the end")
        external_dir = gr.Textbox(value="", label="Folder of clips made by another system (manifest.json inside; optional)")
        plan_file = gr.File(
            file_types=[".json", ".yaml", ".yml"], label="…or load a plan file (JSON / YAML)", height=120,
            elem_id="blind-plan-file",
        )  # fmt: skip
        with gr.Row():
            use_form = gr.Button("Use the plan above")
            generate = gr.Button("Pre-generate clips", variant="primary", elem_id="blind-generate")
            refresh = gr.Button("Refresh status")
        # NOTE: filled after the page loads, and only for the experimenter: it names the configurations.
        status = gr.Markdown(handlers.LOCKED_HINT, elem_id="blind-plan-status")
        screen = screen_layout()
    widgets = PanelWidgets(
        password, status, name, trials, seed, texts, prompts, configs, extra, baseline, anchor, anchor_rate,
        reference_rate, reveal_at_end, external_dir,
    )  # fmt: skip
    return widgets, PanelButtons(plan_file, use_form, generate, refresh), screen


def _listen_layout() -> tuple[ListenWidgets, gr.Button]:
    gr.Markdown("### Listening")
    start = gr.Button("Start / resume", variant="primary", elem_id="blind-start")
    counter = gr.Markdown(START_HINT, elem_id="blind-counter")
    with gr.Row():
        audio_1 = gr.Audio(label="Clip 1", type="filepath", interactive=False, buttons=[], elem_id="blind-audio-1")
        audio_2 = gr.Audio(label="Clip 2", type="filepath", interactive=False, buttons=[], elem_id="blind-audio-2")
    listening = gr.Markdown(elem_id="blind-listening")
    with gr.Row():
        score_1 = gr.Radio(SCORE_CHOICES, label="Score clip 1", elem_id="blind-score-1")
        score_2 = gr.Radio(SCORE_CHOICES, label="Score clip 2", elem_id="blind-score-2")
        preference = gr.Radio(PREFERENCE_CHOICES_CLIPS, label="Preference", elem_id="blind-preference")
    with gr.Row():
        submit = gr.Button("Submit rating", elem_id="blind-rate")
        next_btn = gr.Button("Next trial", visible=False, elem_id="blind-next")
    reveal = gr.Markdown(elem_id="blind-reveal")
    status = gr.Markdown(elem_id="blind-status")
    states = (gr.State(None), gr.State(None), gr.State(None), gr.State(None))
    widgets = ListenWidgets(
        *states, audio_1, audio_2, counter, listening, score_1, score_2, preference, submit, next_btn, reveal, status
    )
    return widgets, start


def build_blind(ctx: AppContext, listener: gr.State, demo: gr.Blocks) -> None:
    """Lay out the blind test inside the current ``gr.Tab`` and wire its events."""
    if ctx.notice:
        gr.Markdown(ctx.notice, elem_classes=["random-weights-notice"])
    panel, buttons, screen = _panel_layout(ctx)
    listen, start = _listen_layout()
    changed = _wire_panel(ctx, demo, panel, buttons)
    wire_screen(ctx, demo, screen, panel.password, panel.status, changed, _fill_form(ctx, panel))
    _wire_listening(ctx, listener, listen, start)


def _fill_form(ctx: AppContext, panel: PanelWidgets) -> dict:
    """The event that shows the active plan in the panel (status and form), as ``.success`` keywords."""

    @user_errors
    def fill_form(password, request: gr.Request):
        return panel.updates(handlers.panel_status(ctx, password, request))

    outputs = [panel.status, *panel.form]
    return {"fn": fill_form, "inputs": panel.password, "outputs": outputs, "api_visibility": "private", **QUIET}


def _wire_panel(ctx, demo, panel: PanelWidgets, buttons: PanelButtons) -> list:
    """Wire the plan actions; returns their events after which the plan or its bank may have changed."""
    everything = [panel.status, *panel.form]

    def on_load(request: gr.Request):
        return panel.updates(handlers.panel_on_load(ctx, request))

    @user_errors
    def status(password, request: gr.Request):
        return handlers.panel_status(ctx, password, request).status

    @user_errors
    def set_from_form(password, name, n, seed, texts, prompts, configs, extra, base, anchor, rate, ref, reveal, folder,
                      request: gr.Request):  # fmt: skip
        form = PlanForm(name, n, seed, tuple(texts or ()), tuple(prompts or ()), tuple(configs or ()), extra, base,
                        anchor or "", rate, ref, bool(reveal), folder or "")  # fmt: skip
        return handlers.set_plan_from_form(ctx, password, request, form).status

    @user_errors
    def from_file(password, path, request: gr.Request):
        return handlers.load_plan_file(ctx, password, request, path).status

    @user_errors
    def pregenerate(password, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        tick = lambda done, total, msg: progress((done, total), desc=msg, unit="clips")  # noqa: E731
        return handlers.pregenerate(ctx, password, request, tick).status

    fill = _fill_form(ctx, panel)
    demo.load(on_load, None, everything, api_visibility="private", **QUIET)
    refreshed = buttons.refresh.click(status, panel.password, panel.status, api_name="blind_status", **QUIET)
    refreshed.success(**fill)
    from_form = buttons.use_form.click(
        set_from_form, [panel.password, *panel.form], panel.status, api_name="blind_set_plan", **QUIET
    )
    uploaded = buttons.plan_file.upload(
        from_file, [panel.password, buttons.plan_file], panel.status, api_name="blind_load_plan", **QUIET
    )
    uploaded.success(**fill)
    generated = run_with_buttons_disabled(
        buttons.generate.click,
        [buttons.generate],
        pregenerate,
        panel.password,
        panel.status,
        api_name="blind_generate",
        concurrency_limit=1,
        concurrency_id="synthesis",
    )
    return [refreshed, from_form, uploaded, generated]


def _wire_listening(ctx: AppContext, listener: gr.State, listen: ListenWidgets, start: gr.Button) -> None:
    @user_errors
    def on_start(listener_id):
        return listen.trial_updates(handlers.start(ctx, listener_id))

    @user_errors
    def on_next(session):
        return listen.trial_updates(handlers.next_trial_view(ctx, session))

    start.click(on_start, listener, listen.trial_outputs, api_name="blind_start", **QUIET)
    listen.next_btn.click(on_next, listen.session, listen.trial_outputs, api_name="blind_next", **QUIET)
    wire_players(
        Player(listen.audio_1, listen.playback_1, "blind-audio-1", "blind_played_1", "blind_paused_1", "blind_ended_1"),
        Player(listen.audio_2, listen.playback_2, "blind-audio-2", "blind_played_2", "blind_paused_2", "blind_ended_2"),
        listen.listening,
        ctx.clock,
        ("Clip 1", "Clip 2"),
    )

    @user_errors
    def on_rate(pair, first, second, listener_id, s1, s2, pref, request: gr.Request):
        view = save_rating(ctx, pair, (first, second), Judgement(s1, s2, pref), listener_id, request.session_hash)
        return view.pair, view.status, "", gr.Button(visible=True)

    # Disabled while saving; enabled again only if the pair is still unrated (the save failed).
    run_with_buttons_disabled(
        listen.submit.click,
        [listen.submit],
        on_rate,
        [listen.pair, listen.playback_1, listen.playback_2, listener, listen.score_1, listen.score_2, listen.preference],
        [listen.pair, listen.status, listen.reveal, listen.next_btn],
        enable=(lambda p: gr.Button(interactive=p is not None and not p.rated), listen.pair),
        api_name="blind_rate",
        **QUIET,
    )
