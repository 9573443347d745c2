"""What the browser tests do on a page of the app: wait for its signals, play clips, read errors.

Every wait is for a signal of the page or the app (a text, a toast, a loaded player), with
NO_DEADLINE as a backstop, so that a slow machine only makes a test slower.
"""

from __future__ import annotations

import os
from pathlib import Path

# NOTE: no deadline on work whose length depends on the machine (start-up, synthesis): the test
# waits for the app's own signals (its URL answers; the status line; an error toast) for as long as
# the app process lives. A dead app or an error toast fails at once.
NO_DEADLINE = 900_000  # ms: a generous backstop, so a lost signal fails instead of hanging CI


def expect_error(page, pattern: str) -> None:
    """Wait for an error toast whose text matches ``pattern``, then close every toast."""
    page.wait_for_function(
        "re => [...document.querySelectorAll('.toast-body')].some(t => new RegExp(re).test(t.innerText))",
        arg=pattern,
        timeout=30_000,
    )
    assert "Traceback" not in page.inner_text("body")
    for close in page.locator(".toast-close").all():
        close.click()
    page.wait_for_function("() => !document.querySelector('.toast-body')", timeout=30_000)  # gone, not fading


def wait_text(page, selector: str, text: str, timeout: int = 30_000) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
        arg=[selector, text],
        timeout=timeout,
    )


LISTENING_LINES = {"pg-audio-a": ("#pg-listening", "A ✓"), "pg-audio-b": ("#pg-listening", "B ✓"),
                   "blind-audio-1": ("#blind-listening", "Clip 1 ✓"), "blind-audio-2": ("#blind-listening", "Clip 2 ✓")}  # fmt: skip


def press(page, audio_id: str, button: str) -> None:
    page.locator(f"#{audio_id} .play-pause-wrapper button[aria-label='{button}']").click()


def player_state(page, audio_id: str) -> str:
    """'Play' while paused or stopped, 'Pause' while playing (the label of its main button)."""
    return page.locator(f"#{audio_id} .play-pause-wrapper button").nth(1).get_attribute("aria-label")


def wait_for_work(page, selector: str, text: str) -> None:
    """Wait, with no deadline, until ``selector`` shows ``text`` (the work is done) or an error toast
    appears (then fail with its message)."""
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)"
        " || [...document.querySelectorAll('.toast-body')].some(e => /error/i.test(e.className + e.innerText))",
        arg=[selector, text],
        timeout=NO_DEADLINE,
    )
    toasts = [t.inner_text() for t in page.locator(".toast-body").all()]
    assert text in page.inner_text(selector), f"the app reported an error instead: {toasts}"


# The player has its clip: wavesurfer's media element (in its shadow root) has enough data and the
# waveform is drawn. A Play pressed before that is lost on a busy machine (seen after a reload).
PLAYER_READY_JS = """(id) => {
  const root = document.querySelector(`#${id} #waveform > div`)?.shadowRoot;
  const media = root?.querySelector('audio, video');
  return !!media && media.readyState >= 3 && root.querySelectorAll('canvas').length > 0;
}"""


def play(page, audio_id: str) -> None:
    """Play a clip to its end: the app says so in its listening line once the server counted it.

    Each wait is for a signal of the page or the app (the clip loaded, the player playing or done,
    the server's listening line), so a slow machine only makes it slower.
    """
    page.wait_for_function(PLAYER_READY_JS, arg=audio_id, timeout=NO_DEADLINE)
    press(page, audio_id, "Play")
    line, heard = LISTENING_LINES[audio_id]
    page.wait_for_function(
        "([id, s, t]) => (document.querySelector(s)?.innerText || '').includes(t)"
        " || !!document.querySelector(`#${id} .play-pause-wrapper button[aria-label='Pause']`)",
        arg=[audio_id, line, heard],
        timeout=NO_DEADLINE,
    )
    wait_for_work(page, line, heard)


def visible_error_badges(page) -> int:
    """Error badges shown on output components (the toast is the one message a refusal gives)."""
    return page.evaluate("() => document.querySelectorAll('[data-testid=status-tracker]:not(.hide) .error').length")


def choose(page, radio_id: str, label: str) -> None:
    page.locator(f"#{radio_id} label:has-text('{label}')").click()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("AB_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
