"""The whole page: header, listener id (asked once per browser session) and the three tabs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from abapp import APP_VERSION
from abapp.access import AdminAccess
from abapp.bank_screen import BankScreener
from abapp.blind import build_blind
from abapp.blind_runner import BlindTestRunner
from abapp.context import RANDOM_WEIGHTS_NOTICE, AppContext, PromptCache, user_errors
from abapp.playground import build_playground
from abapp.results_tab import build_results
from abapp.screen_view import SCREEN_CSS, PlaygroundScreen
from abapp.state import clean_listener_id
from eval.serving.clipbank import ClipBank
from eval.serving.ratings import RatingsStore
from eval.serving.trials import load_prompts, load_texts

CACHE_KEEP_S = 3600  # seconds gradio keeps a served file (and how often it prunes)
CSS = """
.random-weights-notice { background: #fff4d6; border: 1px solid #e0b000; border-radius: 6px; padding: 4px 12px; }
.random-weights-notice p { color: #5a4500 !important; }
/* A/B clips are heard at their own speed: no playback-rate button on those players. */
#blind-audio-1 button.playback, #blind-audio-2 button.playback,
#pg-audio-a button.playback, #pg-audio-b button.playback { display: none; }
""" + SCREEN_CSS


def make_context(
    pipeline,
    store: RatingsStore,
    data_dir: Path,
    admin_password: str | None = None,
    app_version: str = APP_VERSION,
    clock: Callable[[], float] = time.monotonic,
) -> AppContext:
    """Everything the handlers share, from the loaded pipeline and the ratings store.

    Without ``admin_password`` a password is generated (abapp/access.py); ``clock`` times playback.
    """
    texts, prompts = load_texts(), load_prompts()
    runner = BlindTestRunner(pipeline, ClipBank(Path(data_dir) / "clips"), texts, prompts, Path(data_dir))
    screen = PlaygroundScreen(pipeline.info.model_dir, pipeline.info.random_weights)
    return AppContext(
        pipeline=pipeline,
        store=store,
        texts=texts,
        prompts=prompts,
        blind=runner,
        prompt_cache=PromptCache(),
        access=AdminAccess.from_setting(admin_password),
        app_version=app_version,
        notice=RANDOM_WEIGHTS_NOTICE if pipeline.info.random_weights else "",
        screen=screen,
        bank_screen=BankScreener(screen, Path(data_dir)),
        clock=clock,
    )


def _header(ctx: AppContext) -> str:
    info = ctx.pipeline.info
    return (
        "# Does a faster CosyVoice2 still sound as good?\n"
        f"Model `{info.model_id}` (hash `{info.model_hash}`) on **{info.device}** · flow backend `{info.backend}` · "
        f"dtypes here: {', '.join(info.dtypes)} · ratings go to `{ctx.store.path.name}` · app {ctx.app_version}"
    )


def build_blocks(ctx: AppContext) -> gr.Blocks:
    """The Blocks app. All per-listener state is in ``gr.State``; ``ctx`` holds shared resources only."""
    # Every trial serves fresh copies of its clips (abapp/served_clips.py); gradio's cache of them
    # is pruned of files older than CACHE_KEEP_S.
    with gr.Blocks(
        title="CosyVoice2 A/B listening test", analytics_enabled=False, delete_cache=(CACHE_KEEP_S, CACHE_KEEP_S)
    ) as demo:
        gr.Markdown(_header(ctx))
        listener = gr.State(None)
        with gr.Row(equal_height=True):
            listener_box = gr.Textbox(
                label="Your listener id (asked once per browser session)",
                scale=3,
                placeholder="e.g. your initials or the code you were given",
                elem_id="listener-id",
            )
            listener_set = gr.Button("Set listener id", scale=1, elem_id="listener-set")
        with gr.Tabs():
            with gr.Tab("Playground", id="playground"):
                build_playground(ctx, listener)
            with gr.Tab("Blind test", id="blind"):
                build_blind(ctx, listener, demo)
            with gr.Tab("Results", id="results"):
                build_results(ctx)

        @user_errors
        def set_listener(raw: str):
            listener_id = clean_listener_id(raw)
            return (
                listener_id,
                gr.Textbox(value=listener_id, interactive=False),
                gr.Button(value=f"Listening as {listener_id}", interactive=False),
            )

        listener_box.submit(
            set_listener,
            listener_box,
            [listener, listener_box, listener_set],
            api_name="set_listener_enter",
            api_visibility="private",
        )
        listener_set.click(
            set_listener, listener_box, [listener, listener_box, listener_set], api_name="set_listener"
        )
    return demo
