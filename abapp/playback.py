"""Whether a listener has heard a clip: played to its end, for about as long as it lasts.

The browser reports three things per clip: playback started, paused, reached the end (gradio's
``play``, ``pause`` and ``stop`` events). The server times the intervals between them with its own
clock, so a client that reports "ended" without playing (or after seeking to the end) has not heard
the clip. A clip counts as heard when it reaches its end with at least :data:`HEARD_FRACTION` of its
duration played since it was loaded; each such end counts as one play in the ratings log.
Pure logic (no gradio); the state lives in the listener's ``gr.State``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

HEARD_FRACTION = 0.9  # share of a clip's duration that must have played before its end counts
# NOTE: the browser's events reach the server with some delay, which shortens or lengthens an
# interval by about the same amount at both ends; 10% of even a 1 s clip is well above that.


@dataclass(frozen=True)
class ClipPlayback:
    """What one clip on screen has been through (server clock, seconds)."""

    duration_s: float  # of the clip as served
    playing_since: float | None = None  # clock time of the last start, None while stopped
    listened_s: float = 0.0  # time played so far (all intervals, repeats included)
    plays: int = 0  # times it reached its end after enough listening: heard that often

    @property
    def heard(self) -> bool:
        return self.plays > 0

    @property
    def playing(self) -> bool:
        return self.playing_since is not None

    def _stopped(self, now: float) -> ClipPlayback:
        if self.playing_since is None:
            return self
        return replace(self, playing_since=None, listened_s=self.listened_s + max(0.0, now - self.playing_since))

    def started(self, now: float) -> ClipPlayback:
        return replace(self._stopped(now), playing_since=now)

    def paused(self, now: float) -> ClipPlayback:
        return self._stopped(now)

    def ended(self, now: float) -> ClipPlayback:
        """At the end of the clip: counts as a play when enough of it was played since the last one."""
        stopped = self._stopped(now)
        needed = HEARD_FRACTION * self.duration_s * (stopped.plays + 1)
        if stopped.listened_s + 1e-9 >= needed:
            return replace(stopped, plays=stopped.plays + 1)
        return stopped
