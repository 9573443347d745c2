"""The players of an A/B pair: one plays at a time, and each is timed until it has been heard.

Shared by the playground and the blind test. Per clip three events reach the server (play, pause,
reaching the end), each updating that clip's :class:`~abapp.playback.ClipPlayback` in its own
``gr.State``; they run through one queue slot ("playback") so that two events of one clip never
overwrite each other's update. Starting a clip pauses the other in the browser at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from abapp.playback import ClipPlayback

# Starting one clip pauses the other: press the other player's Pause button when it shows one.
PAUSE_OTHER_JS = "() => {{ document.querySelector('#{other} button[aria-label=\"Pause\"]')?.click(); }}"
PLAYBACK_EVENTS = {"queue": True, "concurrency_limit": 1, "concurrency_id": "playback", "show_progress": "hidden"}


@dataclass(frozen=True)
class Player:
    """One clip's player, its playback state, and the names of its API endpoints."""

    audio: gr.Audio
    state: gr.State
    elem_id: str  # the audio component's elem_id (the other player's JavaScript finds it by it)
    played_api: str
    paused_api: str
    ended_api: str


def listening_line(first: ClipPlayback | None, second: ClipPlayback | None, names=("Clip 1", "Clip 2")) -> str:
    """'Clip 1 ✓ heard · Clip 2 not yet heard to its end' for the listener."""
    parts = []
    for name, playback in zip(names, (first, second)):
        heard = playback is not None and playback.heard
        parts.append(f"{name} {'✓ heard' if heard else 'not yet heard to its end'}")
    return " · ".join(parts)


def wire_players(first: Player, second: Player, line: gr.Markdown, clock: Callable[[], float], names) -> None:
    """Wire both players' play / pause / end events; ``line`` shows what has been heard."""
    for mine, other, is_first in ((first, second, True), (second, first, False)):
        mine.audio.play(
            None, None, None, js=PAUSE_OTHER_JS.format(other=other.elem_id), queue=False, api_visibility="private"
        )
        mine.audio.play(
            lambda p: p.started(clock()) if p else None, mine.state, mine.state, api_name=mine.played_api,
            **PLAYBACK_EVENTS,
        )  # fmt: skip
        mine.audio.pause(
            lambda p: p.paused(clock()) if p else None, mine.state, mine.state, api_name=mine.paused_api,
            **PLAYBACK_EVENTS,
        )  # fmt: skip

        def ended(current, theirs, is_first=is_first):
            current = current.ended(clock()) if current else None
            pair = (current, theirs) if is_first else (theirs, current)
            return current, listening_line(*pair, names=names)

        mine.audio.stop(
            ended, [mine.state, other.state], [mine.state, line], api_name=mine.ended_api, **PLAYBACK_EVENTS
        )
