"""Per-listener state of one A/B pair, and the rules for rating it (pure logic, no gradio).

A :class:`PairState` lives in a ``gr.State`` of one browser session only. It holds what the
server knows about the pair on screen (including, in blind mode, which configuration is which
clip) and what the listener has done (which clips were played, whether it was rated). Its
methods return new objects; gradio stores whatever the handler returns.

Screen positions are "first" and "second" (left and right); configurations are "A" and "B".
In the playground A is always first; in blind mode ``shown_first`` says which one is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace

from eval.ratings_schema import PREFERENCES, SCORE_LABELS
from tts_core.config_id import ConfigId

POSITIONS = ("first", "second")
MAX_LISTENER_ID_CHARS = 64
PREFERENCE_NONE = "none"


class RatingRefused(ValueError):
    """The rating cannot be accepted now; the message says why, for the listener."""


def clean_listener_id(raw: str | None) -> str:
    """A listener id as typed, trimmed and with inner whitespace collapsed (ValueError if unusable)."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", raw or "")).strip()
    if not text:
        raise ValueError("enter a listener id (a name or code that you will use again to resume)")
    if len(text) > MAX_LISTENER_ID_CHARS:
        raise ValueError(f"the listener id is longer than {MAX_LISTENER_ID_CHARS} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ValueError("the listener id contains control characters")
    return text


@dataclass(frozen=True)
class Side:
    """One configuration of a pair: what was asked for, and what actually ran."""

    config: ConfigId  # the configuration as asked for; its label names it everywhere
    dtype_ran: str  # may differ from config.dtype after a fallback (then a warning was shown)
    backend: str  # flow backend that ran
    llm_backend: str  # LLM decoder that made the tokens
    seed: int
    clip_id: str  # content hash of the clip

    @property
    def label(self) -> str:
        return self.config.label

    def log_fields(self, key: str) -> dict[str, object]:
        """This side's ratings-log cells, ``key`` "a" or "b" (see eval/ratings_schema.py)."""
        return {
            f"{key}_config": self.label,
            f"{key}_flow_steps": self.config.flow_steps,
            f"{key}_dtype": self.dtype_ran,
            f"{key}_backend": self.backend,
            f"{key}_llm_backend": self.llm_backend,
            f"{key}_seed": self.seed,
            f"{key}_clip_id": self.clip_id,
        }


@dataclass(frozen=True)
class PairState:
    """The pair a listener is looking at, and what they did with it."""

    trial_id: str
    mode: str  # "playground" | "blind"
    text_id: str
    text: str
    prompt_id: str
    a: Side
    b: Side
    shown_first: str  # "A" | "B"
    model_id: str
    model_hash: str
    played: frozenset[str] = field(default_factory=frozenset)  # positions played at least once
    rated: bool = False

    def side_at(self, position: str) -> str:
        """Configuration ("A" | "B") shown at a screen position."""
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        other = "B" if self.shown_first == "A" else "A"
        return self.shown_first if position == "first" else other

    def with_played(self, position: str) -> PairState:
        self.side_at(position)  # validates the position
        return replace(self, played=self.played | {position})

    def reveal(self) -> str:
        """Markdown naming the configuration behind each clip (only ever sent after the rating)."""
        parts = []
        for number, position in enumerate(POSITIONS, start=1):
            key = self.side_at(position)
            side = self.a if key == "A" else self.b
            parts.append(f"Clip {number} was **{key}: {side.label}** (seed {side.seed})")
        return " · ".join(parts)


def _score(name: str, value: object) -> int:
    if value is None or value == "":
        raise RatingRefused(f"give {name} a score from 1 (Bad) to 5 (Excellent)")
    try:
        score = int(value)
    except (TypeError, ValueError):
        raise RatingRefused(f"the score of {name} must be 1-5, got {value!r}") from None
    if score not in SCORE_LABELS:
        raise RatingRefused(f"the score of {name} must be 1-5, got {score}")
    return score


def rating_row(
    pair: PairState | None,
    listener_id: str | None,
    session_id: str,
    score_first: object,
    score_second: object,
    preferred_position: str | None,
    app_version: str,
) -> dict[str, object]:
    """The ratings-log row for a judgement of the pair on screen, or :class:`RatingRefused`.

    ``preferred_position`` is "first", "second" or "none" (screen terms); the row stores the
    preference and the scores in configuration terms (A/B).
    """
    if pair is None:
        raise RatingRefused("there is no pair to rate yet")
    if not listener_id:
        raise RatingRefused("enter your listener id first (at the top of the page)")
    if pair.rated:
        raise RatingRefused("this pair is already rated; generate or load the next one")
    missing = [str(i + 1) for i, p in enumerate(POSITIONS) if p not in pair.played]
    if missing:
        raise RatingRefused(
            f"listen to both clips before rating (not played yet: clip {' and '.join(missing)})"
        )
    scores = {"first": _score("clip 1", score_first), "second": _score("clip 2", score_second)}
    if preferred_position not in (*POSITIONS, PREFERENCE_NONE):
        raise RatingRefused("choose which clip you prefer (or no preference)")
    by_side = {pair.side_at(p): scores[p] for p in POSITIONS}
    preference = (
        PREFERENCE_NONE if preferred_position == PREFERENCE_NONE else pair.side_at(preferred_position)
    )
    assert preference in PREFERENCES
    return {
        "listener_id": listener_id,
        "session_id": session_id,
        "trial_id": pair.trial_id,
        "mode": pair.mode,
        "text_id": pair.text_id,
        "text": pair.text,
        "prompt_id": pair.prompt_id,
        **pair.a.log_fields("a"),
        **pair.b.log_fields("b"),
        "shown_first": pair.shown_first,
        "score_a": by_side["A"],
        "score_b": by_side["B"],
        "preference": preference,
        "model_id": pair.model_id,
        "model_hash": pair.model_hash,
        "app_version": app_version,
    }
