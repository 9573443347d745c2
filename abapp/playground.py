"""Playground tab: pick text, voice and two configurations; hear, see and rate A against B.

The layout and its wiring; rendering a pair is abapp/playground_handlers.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from abapp import playground_handlers as handlers
from abapp.context import AppContext, run_with_buttons_disabled, user_errors
from abapp.listening_ui import Player, listening_line, wire_players
from abapp.playground_handlers import PairRequest, PairView, SideRequest
from abapp.ratings_ui import PREFERENCE_CHOICES_AB, SCORE_CHOICES, save_rating
from abapp.state import Judgement
from abapp.synthesis import PRESETS, TOKEN_MODE_LABELS
from eval.serving.loudness import TARGET_LUFS
from tts_core.config_id import DTYPE_NAMES

UI_MAX_FLOW_STEPS = 20
DEFAULT_A = "baseline: float16-n10"
DEFAULT_B = "fastest: bfloat16-n5"
DEFAULT_TEXT_ID = "en_07"
NO_PAIR_HINT = "Generate a pair, play both clips to their ends, then rate them."
PLAYER_NAMES = ("A", "B")


@dataclass(frozen=True)
class SideWidgets:
    flow_steps: gr.Slider
    dtype: gr.Radio
    seed: gr.Number
    streaming: gr.Checkbox


@dataclass(frozen=True)
class PairWidgets:
    """What a rendered pair updates."""

    audio_a: gr.Audio
    audio_b: gr.Audio
    info_a: gr.Markdown
    info_b: gr.Markdown
    plot: gr.Plot
    distances: gr.Markdown
    pair: gr.State
    score_a: gr.Radio
    score_b: gr.Radio
    preference: gr.Radio
    status: gr.Markdown
    playback_a: gr.State
    playback_b: gr.State
    listening: gr.Markdown
    screen_a: gr.Markdown  # the automatic quality screen, filled after the clips show
    screen_b: gr.Markdown
    to_screen: gr.State  # the pair's unnormalised audio, waiting for the screen

    @property
    def outputs(self) -> list:
        # NOTE: this order is the API's (gradio_client drops the states): audio A, audio B, info A, ...
        return [
            self.audio_a, self.audio_b, self.info_a, self.info_b, self.plot, self.distances, self.pair,
            self.score_a, self.score_b, self.preference, self.listening, self.status, self.playback_a,
            self.playback_b, self.to_screen,
        ]  # fmt: skip

    def updates(self, view: PairView) -> dict:
        return {
            self.audio_a: view.audio_a,
            self.audio_b: view.audio_b,
            self.info_a: view.info_a,
            self.info_b: view.info_b,
            self.plot: view.figure,
            self.distances: view.distances,
            self.pair: view.pair,
            self.score_a: None,
            self.score_b: None,
            self.preference: None,
            self.status: view.status,
            self.playback_a: view.playback_a,
            self.playback_b: view.playback_b,
            self.listening: listening_line(view.playback_a, view.playback_b, PLAYER_NAMES),
            self.to_screen: view.screen_input,
        }


def _config_column(side: str, preset: str) -> SideWidgets:
    config = PRESETS[preset]
    with gr.Column(variant="panel"):
        gr.Markdown(f"### Configuration {side}")
        chooser = gr.Dropdown(list(PRESETS), value=preset, label=f"Preset {side}")
        # NOTE: the slider starts at 0 on purpose: gradio silently clamps a typed value into the
        # slider's range, so with minimum 1 a typed 0 would run 1 step; this way 0 gets a clear error.
        flow_steps = gr.Slider(
            0, UI_MAX_FLOW_STEPS, value=config.flow_steps, step=1, label=f"Flow steps {side}",
            info="1-20 Euler steps of the flow",
        )  # fmt: skip
        dtype_radio = gr.Radio(list(DTYPE_NAMES), value=config.dtype, label=f"dtype {side}")
        streaming = gr.Checkbox(
            value=config.streaming,
            label=f"Streaming {side}",
            info="render chunk by chunk as a streaming server does (label -stream)",
            elem_id=f"pg-streaming-{side.lower()}",
        )
        seed = gr.Number(value=0, precision=0, minimum=0, label=f"Seed {side}")
    chooser.change(
        lambda name: (PRESETS[name].dtype, PRESETS[name].flow_steps, PRESETS[name].streaming),
        chooser,
        [dtype_radio, flow_steps, streaming],
        queue=False,
        api_visibility="private",
    )
    return SideWidgets(flow_steps, dtype_radio, seed, streaming)


def _inputs_layout(ctx: AppContext):
    texts, prompts = ctx.texts, ctx.prompts
    with gr.Row():
        with gr.Column(scale=3):
            sentence = gr.Dropdown(
                [(f"{t.id} · {t.text[:70]}", t.id) for t in texts.values()],
                value=DEFAULT_TEXT_ID if DEFAULT_TEXT_ID in texts else None,
                label="Test sentence (fills the text box)",
            )
            text = gr.Textbox(
                value=texts[DEFAULT_TEXT_ID].text if DEFAULT_TEXT_ID in texts else "",
                label="Text to synthesise",
                lines=3,
                elem_id="pg-text",
            )
        with gr.Column(scale=2):
            first_prompt = next(iter(prompts.values()), None)
            prompt_choice = gr.Dropdown(
                [(f"{p.id} ({p.language}, {p.tool} {p.voice})", p.id) for p in prompts.values()],
                value=first_prompt.id if first_prompt else None,
                label="Voice prompt (or upload / record below)",
            )
            prompt_audio = gr.Audio(
                value=str(first_prompt.path) if first_prompt else None,
                sources=["upload", "microphone"],
                type="filepath",
                label="Prompt audio",
                elem_id="pg-prompt-audio",
            )
            transcript = gr.Textbox(
                value=first_prompt.transcript if first_prompt else "",
                label="Prompt transcript (empty: cross-lingual mode)",
            )
    sentence.change(
        lambda i: texts[i].text if i in texts else gr.skip(), sentence, text, queue=False, api_visibility="private"
    )
    prompt_choice.change(
        lambda i: (str(prompts[i].path), prompts[i].transcript) if i in prompts else (gr.skip(), gr.skip()),
        prompt_choice,
        [prompt_audio, transcript],
        queue=False,
        api_visibility="private",
    )
    return text, prompt_audio, transcript


def _results_layout() -> tuple[PairWidgets, gr.Button]:
    with gr.Row():
        with gr.Column():
            audio_a = gr.Audio(label="A", type="filepath", interactive=False, elem_id="pg-audio-a")
            info_a = gr.Markdown(elem_id="pg-info-a")
            screen_a = gr.Markdown(elem_id="pg-screen-a")
        with gr.Column():
            audio_b = gr.Audio(label="B", type="filepath", interactive=False, elem_id="pg-audio-b")
            info_b = gr.Markdown(elem_id="pg-info-b")
            screen_b = gr.Markdown(elem_id="pg-screen-b")
    listening = gr.Markdown(elem_id="pg-listening")
    plot = gr.Plot(label="Spectrograms: A, B (same colour scale) and B minus A")
    distances = gr.Markdown(label="Objective distances", elem_id="pg-distances")
    with gr.Group():
        gr.Markdown("#### Your rating")
        with gr.Row():
            score_a = gr.Radio(SCORE_CHOICES, label="Score A", elem_id="pg-score-a")
            score_b = gr.Radio(SCORE_CHOICES, label="Score B", elem_id="pg-score-b")
            preference = gr.Radio(PREFERENCE_CHOICES_AB, label="Preference", elem_id="pg-preference")
        rate = gr.Button("Submit rating", elem_id="pg-rate")
    status = gr.Markdown(NO_PAIR_HINT, elem_id="pg-status")
    widgets = PairWidgets(
        audio_a, audio_b, info_a, info_b, plot, distances, gr.State(None), score_a, score_b, preference, status,
        gr.State(None), gr.State(None), listening, screen_a, screen_b, gr.State(None),
    )  # fmt: skip
    return widgets, rate


def build_playground(ctx: AppContext, listener: gr.State) -> None:
    """Lay out the playground inside the current ``gr.Tab`` and wire its events."""
    if ctx.notice:
        gr.Markdown(ctx.notice, elem_classes=["random-weights-notice"])
    text, prompt_audio, transcript = _inputs_layout(ctx)
    with gr.Row():
        side_a = _config_column("A", DEFAULT_A)
        side_b = _config_column("B", DEFAULT_B)
    with gr.Row():
        token_mode = gr.Radio(TOKEN_MODE_LABELS, value="auto", label="Speech tokens", scale=3)
        match_loudness = gr.Checkbox(
            value=True, label=f"Play both at {TARGET_LUFS:.0f} LUFS (ITU-R BS.1770 loudness matching)", scale=1
        )
    generate = gr.Button("Generate A and B", variant="primary", elem_id="pg-generate")
    out, rate = _results_layout()

    @user_errors
    def on_generate(text, path, transcript, sa, da, xa, sb, db, xb, mode, ka, kb, match, progress=gr.Progress()):  # noqa: B008
        sides = SideRequest(sa, da, xa, ka), SideRequest(sb, db, xb, kb)
        request = PairRequest(text, path, transcript, *sides, mode, match)
        return out.updates(handlers.generate(ctx, request, lambda f, m: progress(f, desc=m)))

    # NOTE: this order is the API's; inputs added later come last (gradio_client may omit them).
    side_inputs = [w for s in (side_a, side_b) for w in (s.flow_steps, s.dtype, s.seed)]
    generated = run_with_buttons_disabled(
        generate.click,
        [generate, rate],
        on_generate,
        [text, prompt_audio, transcript, *side_inputs, token_mode, side_a.streaming, side_b.streaming, match_loudness],
        out.outputs,
        api_name="generate",
        concurrency_limit=1,
        concurrency_id="synthesis",
        show_progress_on=[out.status],
    )
    # The screen runs after the clips are on screen, so it never holds them up.
    generated.success(
        ctx.screen.markdown_pair,
        out.to_screen,
        [out.screen_a, out.screen_b],
        concurrency_limit=1,
        concurrency_id="screen",
        api_name="screen",
    )
    wire_players(
        Player(out.audio_a, out.playback_a, "pg-audio-a", "played_a", "paused_a", "ended_a"),
        Player(out.audio_b, out.playback_b, "pg-audio-b", "played_b", "paused_b", "ended_b"),
        out.listening,
        ctx.clock,
        PLAYER_NAMES,
    )

    @user_errors
    def on_rate(pair, first, second, listener_id, s_a, s_b, pref, request: gr.Request):
        view = save_rating(ctx, pair, (first, second), Judgement(s_a, s_b, pref), listener_id, request.session_hash)
        return view.pair, view.status

    run_with_buttons_disabled(
        rate.click,
        [rate],
        on_rate,
        [out.pair, out.playback_a, out.playback_b, listener, out.score_a, out.score_b, out.preference],
        [out.pair, out.status],
        enable=(lambda p: gr.Button(interactive=p is None or not p.rated), out.pair),
        api_name="rate",
        show_progress="hidden",
    )
