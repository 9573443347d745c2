"""Rating widgets' choices and the one path from a listener's answer to a row in the ratings log."""

from __future__ import annotations

from dataclasses import dataclass, replace

from abapp.context import AppContext
from abapp.playback import ClipPlayback
from abapp.state import Judgement, PairState, RatingRefused, rating_row
from eval.serving.ratings import DuplicateRatingError
from eval.serving.ratings_schema import SCORE_LABELS

# (label shown, value sent): 5 Excellent ... 1 Bad, best first as on a printed MOS sheet.
SCORE_CHOICES = [(f"{score} · {SCORE_LABELS[score]}", score) for score in sorted(SCORE_LABELS, reverse=True)]
PREFERENCE_CHOICES_AB = [("A", "first"), ("B", "second"), ("No preference", "none")]
PREFERENCE_CHOICES_CLIPS = [("Clip 1", "first"), ("Clip 2", "second"), ("No preference", "none")]


@dataclass(frozen=True)
class RatedView:
    """After a rating was saved: the pair (now rated) and the status line."""

    pair: PairState
    status: str


def save_rating(
    ctx: AppContext,
    pair: PairState | None,
    playback: tuple[ClipPlayback | None, ClipPlayback | None],
    judgement: Judgement,
    listener_id: str | None,
    session_id: str,
) -> RatedView:
    """Append the judgement to the log; returns the pair marked as rated and a status line.

    Raises :class:`RatingRefused` (a ValueError) when the rating cannot be taken: no listener id,
    a clip not yet heard to its end, a missing score, or the trial already rated (in this session
    or, for the same trial id, by any process writing the same file).
    """
    row = rating_row(
        pair, playback, judgement, listener_id=listener_id, session_id=session_id, app_version=ctx.app_version
    )
    try:
        written = ctx.store.append(row)
    except DuplicateRatingError:
        raise RatingRefused("this trial is already rated; it counts once") from None
    return RatedView(
        replace(pair, rated=True), f"✅ Saved rating of trial `{written['trial_id']}` at {written['timestamp_utc']}."
    )
