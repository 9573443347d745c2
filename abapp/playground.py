"""Playground tab: pick text, voice and two configurations; hear, see and rate A against B."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf

from abapp.context import AppContext, fresh_temp_dir, run_with_buttons_disabled, user_errors
from abapp.ratings_ui import PREFERENCE_CHOICES_AB, SCORE_CHOICES, save_rating
from abapp.screen_view import PlaygroundScreen, pair_screen_input
from abapp.spectrogram import distances_markdown, pair_figure
from abapp.state import PairState
from abapp.synthesis import PRESETS, TOKEN_MODE_LABELS, make_options, render_pair, result_markdown
from tts_core.config_id import DTYPE_NAMES

UI_MAX_FLOW_STEPS = 20
PLAYGROUND_DIRNAME = "cosyvoice2-ab-playground"
DEFAULT_A = "baseline: float16-n10"
DEFAULT_B = "fastest: bfloat16-n5"
DEFAULT_TEXT_ID = "en_07"
NO_PAIR_HINT = "Generate a pair, play both clips, then rate them."


def to_wav(audio: np.ndarray, sample_rate: int, folder: Path, name: str) -> str:
    """Write 16-bit PCM ``folder/name`` for the player (gradio caches it by content, atomically)."""
    path = folder / name
    sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return str(path)


def _config_column(side: str, preset: str):
    config = PRESETS[preset]
    with gr.Column(variant="panel"):
        gr.Markdown(f"### Configuration {side}")
        chooser = gr.Dropdown(list(PRESETS), value=preset, label=f"Preset {side}")
        # NOTE: the slider starts at 0 on purpose: gradio silently clamps a typed value into the
        # slider's range, so with minimum 1 a typed 0 would run 1 step; this way 0 gets a clear error.
        flow_steps = gr.Slider(
            0,
            UI_MAX_FLOW_STEPS,
            value=config.flow_steps,
            step=1,
            label=f"Flow steps {side}",
            info="1-20 Euler steps of the flow",
        )
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
    return flow_steps, dtype_radio, seed, streaming


def build_playground(ctx: AppContext, listener: gr.State) -> None:
    """Lay out the playground inside the current ``gr.Tab`` and wire its events."""
    if ctx.notice:
        gr.Markdown(ctx.notice, elem_classes=["random-weights-notice"])
    texts = ctx.texts
    prompts = ctx.prompts
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
    with gr.Row():
        steps_a, dtype_a, seed_a, stream_a = _config_column("A", DEFAULT_A)
        steps_b, dtype_b, seed_b, stream_b = _config_column("B", DEFAULT_B)
    token_mode = gr.Radio(TOKEN_MODE_LABELS, value="auto", label="Speech tokens")
    generate = gr.Button("Generate A and B", variant="primary", elem_id="pg-generate")

    with gr.Row():
        with gr.Column():
            audio_a = gr.Audio(label="A", type="filepath", interactive=False, elem_id="pg-audio-a")
            info_a = gr.Markdown(elem_id="pg-info-a")
            screen_a = gr.Markdown(elem_id="pg-screen-a")
        with gr.Column():
            audio_b = gr.Audio(label="B", type="filepath", interactive=False, elem_id="pg-audio-b")
            info_b = gr.Markdown(elem_id="pg-info-b")
            screen_b = gr.Markdown(elem_id="pg-screen-b")
    plot = gr.Plot(label="Spectrograms: A, B (same colour scale) and B minus A")
    distances = gr.Markdown(label="Objective distances", elem_id="pg-distances")

    pair = gr.State(None)
    to_screen = gr.State(None)  # the pair's audio for the automatic screen, run after the clips show
    screen = PlaygroundScreen(ctx.pipeline.info.model_dir, ctx.pipeline.info.random_weights)
    with gr.Group():
        gr.Markdown("#### Your rating")
        with gr.Row():
            score_a = gr.Radio(SCORE_CHOICES, label="Score A", elem_id="pg-score-a")
            score_b = gr.Radio(SCORE_CHOICES, label="Score B", elem_id="pg-score-b")
            preference = gr.Radio(PREFERENCE_CHOICES_AB, label="Preference", elem_id="pg-preference")
        rate = gr.Button("Submit rating", elem_id="pg-rate")
    status = gr.Markdown(NO_PAIR_HINT, elem_id="pg-status")

    sentence.change(
        lambda i: texts[i].text if i in texts else gr.skip(),
        sentence,
        text,
        queue=False,
        api_visibility="private",
    )
    prompt_choice.change(
        lambda i: (str(prompts[i].path), prompts[i].transcript) if i in prompts else (gr.skip(), gr.skip()),
        prompt_choice,
        [prompt_audio, transcript],
        queue=False,
        api_visibility="private",
    )

    @user_errors
    def run(text, prompt_path, transcript, sa, da, xa, sb, db, xb, mode, ka, kb, progress=gr.Progress()):  # noqa: B008
        options_a = make_options(sa, da, xa, "A", ka)
        options_b = make_options(sb, db, xb, "B", kb)
        out = render_pair(
            ctx, text, prompt_path, transcript, options_a, options_b, mode, lambda f, m: progress(f, desc=m)
        )
        ra, rb = out.result_a, out.result_b
        folder = fresh_temp_dir(PLAYGROUND_DIRNAME)
        edges_a, edges_b = (r.stream.boundary_frames if r.stream else () for r in (ra, rb))
        figure = pair_figure(
            ra.mel, rb.mel, f"A: {options_a.config.label}", f"B: {options_b.config.label}", edges_a, edges_b
        )
        return (
            to_wav(ra.audio, ra.sample_rate, folder, "A.wav"),
            to_wav(rb.audio, rb.sample_rate, folder, "B.wav"),
            result_markdown("A", ra, options_a, out.shared_tokens),
            result_markdown("B", rb, options_b, out.shared_tokens),
            figure,
            distances_markdown(ra.audio, rb.audio, ra.mel, rb.mel, ra.sample_rate, (*edges_a, *edges_b)),
            out.pair,
            None,
            None,
            None,
            f"New pair `{out.pair.trial_id}` ready: play A and B, then rate.",
            pair_screen_input(out, prompt_path),
        )

    generated = run_with_buttons_disabled(
        generate.click,
        [generate, rate],
        run,
        [
            text,
            prompt_audio,
            transcript,
            steps_a,
            dtype_a,
            seed_a,
            steps_b,
            dtype_b,
            seed_b,
            token_mode,
            stream_a,
            stream_b,
        ],
        [audio_a, audio_b, info_a, info_b, plot, distances, pair, score_a, score_b, preference, status, to_screen],
        api_name="generate",
        concurrency_limit=1,
        concurrency_id="synthesis",
    )
    generated.success(
        screen.markdown_pair, to_screen, [screen_a, screen_b], concurrency_limit=1, concurrency_id="screen", api_name="screen"
    )

    def played(position: str):
        def mark(current: PairState | None) -> PairState | None:
            return current.with_played(position) if current is not None else None

        return mark

    audio_a.play(played("first"), pair, pair, queue=False, api_name="played_a")
    audio_b.play(played("second"), pair, pair, queue=False, api_name="played_b")

    @user_errors
    def submit(current, listener_id, s_a, s_b, pref, request: gr.Request):
        return save_rating(ctx, current, listener_id, request.session_hash, s_a, s_b, pref)

    run_with_buttons_disabled(
        rate.click,
        [rate],
        submit,
        [pair, listener, score_a, score_b, preference],
        [pair, status],
        enable=(lambda p: gr.Button(interactive=p is None or not p.rated), pair),
        api_name="rate",
    )
