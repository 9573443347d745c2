"""Per-listener state of one A/B pair, and the rules for rating it (pure logic, no gradio).

A :class:`PairState` lives in a ``gr.State`` of one browser session only. It holds what the
server knows about the pair on screen (including, in blind mode, which configuration is which
clip) and whether it was rated; how each clip was listened to is an
:class:`abapp.playback.ClipPlayback` in a ``gr.State`` of its own (one per clip, so the browser's
events for one clip never overwrite the other's). Methods return new objects; gradio stores
whatever the handler returns.

Screen positions are "first" and "second" (left and right); configurations are "A" and "B".
In the playground A is always first; in blind mode ``shown_first`` says which one is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from abapp.playback import ClipPlayback
from eval.serving.conditions import Condition
from eval.serving.ratings_schema import PREFERENCES, SCORE_LABELS, TRIAL_KINDS

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
    """One condition of a pair: what was asked for, and what actually ran."""

    condition: Condition  # the configuration as asked for (or anchor / external clip); its label names it
    dtype_ran: str  # may differ from the configuration's dtype after a fallback (a warning was shown)
    backend: str  # flow backend that ran ("external" for clips of another system)
    llm_backend: str  # LLM decoder that made the tokens
    seed: int
    clip_id: str  # content hash of the clip

    @property
    def label(self) -> str:
        return self.condition.label

    def log_fields(self, key: str) -> dict[str, object]:
        """This side's ratings-log cells, ``key`` "a" or "b" (see eval/serving/ratings_schema.py)."""
        return {
            f"{key}_config": self.label,
            f"{key}_flow_steps": self.condition.flow_steps,
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
    kind: str = "test"  # "test" | "anchor" | "reference" (the hidden controls of a plan)
    rated: bool = False

    def __post_init__(self) -> None:
        if self.kind not in TRIAL_KINDS:
            raise ValueError(f"trial kind must be one of {TRIAL_KINDS}, got {self.kind!r}")

    def side_at(self, position: str) -> str:
        """Configuration ("A" | "B") shown at a screen position."""
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        other = "B" if self.shown_first == "A" else "A"
        return self.shown_first if position == "first" else other


@dataclass(frozen=True)
class Judgement:
    """What the listener answered, in screen terms (raw widget values, checked by :func:`rating_row`)."""

    score_first: object
    score_second: object
    preferred_position: str | None  # "first" | "second" | "none"


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
    playback: tuple[ClipPlayback | None, ClipPlayback | None],
    judgement: Judgement,
    *,
    listener_id: str | None,
    session_id: str,
    app_version: str,
) -> dict[str, object]:
    """The ratings-log row for a judgement of the pair on screen, or :class:`RatingRefused`.

    ``playback`` is how the (first, second) clip was listened to: both must have been heard to
    their end. The row stores the preference, the scores and the play counts in configuration
    terms (A/B).
    """
    if pair is None:
        raise RatingRefused("there is no pair to rate yet")
    if not listener_id:
        raise RatingRefused("enter your listener id first (at the top of the page)")
    if pair.rated:
        raise RatingRefused("this pair is already rated; generate or load the next one")
    missing = [str(i + 1) for i, p in enumerate(playback) if p is None or not p.heard]
    if missing:
        raise RatingRefused(
            f"listen to both clips to the end before rating (not heard to the end yet: clip {' and '.join(missing)})"
        )
    scores = {"first": _score("clip 1", judgement.score_first), "second": _score("clip 2", judgement.score_second)}
    preferred = judgement.preferred_position
    if preferred not in (*POSITIONS, PREFERENCE_NONE):
        raise RatingRefused("choose which clip you prefer (or no preference)")
    by_side = {pair.side_at(p): scores[p] for p in POSITIONS}
    plays = {pair.side_at(p): heard.plays for p, heard in zip(POSITIONS, playback)}
    preference = PREFERENCE_NONE if preferred == PREFERENCE_NONE else pair.side_at(preferred)
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
        "a_plays": plays["A"],
        "b_plays": plays["B"],
        "trial_kind": pair.kind,
    }
