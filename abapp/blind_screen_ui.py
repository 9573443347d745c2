"""The blind tab's screen of the bank: its layout and wiring (the handlers: abapp/blind_screen_handlers.py).

Inside the experimenter panel (abapp/blind.py): "Screen the bank" with a progress bar, the
per-configuration table and the plot, and "Drop it from the plan" for a configuration with flagged
clips. Nothing here is shown before the admin password is given (the views name configurations).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from abapp import blind_screen_handlers as screening
from abapp.blind_screen_handlers import ScreenView
from abapp.context import AppContext, run_with_buttons_disabled, user_errors

QUIET = {"show_progress": "hidden"}  # a refusal shows its one message; other outputs stay as they were


@dataclass(frozen=True)
class ScreenWidgets:
    """The experimenter's screen of the bank: run it, read it, drop a failed configuration."""

    run: gr.Button
    summary: gr.Markdown
    plot: gr.Plot
    choice: gr.Dropdown
    drop: gr.Button

    @property
    def outputs(self) -> list:
        # NOTE: this order is the API's (/blind_screen, and /blind_drop before the plan status).
        return [self.summary, self.plot, self.choice]

    def updates(self, view: ScreenView) -> dict:
        choices = list(view.drop_choices)
        return {
            self.summary: view.summary,
            self.plot: gr.Plot(value=view.figure, visible=view.figure is not None),
            self.choice: gr.Dropdown(choices=choices, value=choices[0] if choices else None, interactive=bool(choices)),
        }


def screen_layout() -> ScreenWidgets:
    """The screen section, laid out inside the experimenter panel (an open gradio context)."""
    gr.Markdown("#### Automatic screen of the bank, before the test is opened")
    run = gr.Button("Screen the bank", elem_id="blind-screen")
    # NOTE: filled after the page loads, and only for the experimenter: it names the configurations.
    summary = gr.Markdown(elem_id="blind-screen-summary")
    plot = gr.Plot(label="Screen per configuration (each clip a dot, the mean a bar; flagged clips red)",
                   visible=False, elem_id="blind-screen-plot")  # fmt: skip
    with gr.Row():
        choice = gr.Dropdown([], label="Configuration with flagged clips", interactive=False, elem_id="blind-drop-choice")
        drop = gr.Button("Drop it from the plan", variant="stop", elem_id="blind-drop")
    return ScreenWidgets(run, summary, plot, choice, drop)


def wire_screen(
    ctx: AppContext, demo, screen: ScreenWidgets, password: gr.Textbox, status: gr.Markdown, changed: list, fill: dict
) -> None:
    """Screen the bank (progress bar), show the saved screen after ``changed`` events (the plan or its
    bank may be new), drop a configuration; ``fill`` (``.success`` keywords) refreshes the plan's form after a drop."""

    def on_load(request: gr.Request):
        return screen.updates(screening.screen_on_load(ctx, request))

    @user_errors
    def show(pw, request: gr.Request):
        return screen.updates(screening.screen_status(ctx, pw, request))

    @user_errors
    def run(pw, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
        tick = lambda done, total, msg: progress((done, total), desc=msg, unit="clips")  # noqa: E731
        return screen.updates(screening.screen_bank(ctx, pw, request, tick))

    @user_errors
    def drop(pw, label, request: gr.Request):
        view = screening.drop_configuration(ctx, pw, request, label)
        return screen.updates(view) | {status: view.plan_status}

    demo.load(on_load, None, screen.outputs, api_visibility="private", **QUIET)
    for event in changed:
        event.success(show, password, screen.outputs, api_visibility="private", **QUIET)
    run_with_buttons_disabled(
        screen.run.click,
        [screen.run, screen.drop],
        run,
        password,
        screen.outputs,
        api_name="blind_screen",
        concurrency_limit=1,
        concurrency_id="bank_screen",
        show_progress_on=[screen.summary],
    )
    dropped = run_with_buttons_disabled(
        screen.drop.click,
        [screen.drop],
        drop,
        [password, screen.choice],
        [*screen.outputs, status],
        api_name="blind_drop",
        **QUIET,
    )
    dropped.success(**fill)
