"""Failure flags: the breakdowns that matter more than a small MOS change (pure numpy, no models).

Each check returns a :class:`FlagCheck` with what it measured and the rule it applied:

* non-finite samples (NaN/inf, e.g. float16 overflow in the flow);
* silence: whole-clip RMS under ``silence_rms_dbfs``;
* clipping: too many samples at the clip's peak magnitude (flat tops);
* implausible duration: syllables of the text per second of voiced audio outside a range;
* long internal silence between the first and the last speech frame;
* runs of repeated speech tokens (an LLM stuck in a loop);
* a high ASR error rate (see :mod:`eval.screen.asr`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tts_core.constants import TOKEN_RATE

from .options import ScreenOptions
from .results import (
    FLAG_CLIPPED,
    FLAG_DURATION,
    FLAG_ERROR_RATE,
    FLAG_INTERNAL_SILENCE,
    FLAG_NON_FINITE,
    FLAG_REPEATED_TOKENS,
    FLAG_SILENT,
    FlagCheck,
    Intelligibility,
)
from .text import syllable_count

LEVEL_FLOOR = 1e-10  # RMS floor before the log (-200 dBFS), so digital silence has a level


def _db(x: np.ndarray | float) -> np.ndarray | float:
    return 20.0 * np.log10(np.maximum(x, LEVEL_FLOOR))


def check_non_finite(audio: np.ndarray) -> FlagCheck:
    """audio: (N,) float. Fires when any sample is NaN or infinite."""
    bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
    detail = f"{bad} of {np.size(audio)} samples are NaN or infinite" if bad else "all samples are finite"
    return FlagCheck(FLAG_NON_FINITE, bad > 0, float(bad), "no NaN or infinite sample", detail)


def check_silent(audio: np.ndarray, options: ScreenOptions) -> FlagCheck:
    """audio: (N,) finite float in [-1, 1]. Fires when the clip's RMS is under the floor (or it is empty)."""
    limit = f"RMS >= {options.silence_rms_dbfs:g} dBFS"
    if audio.size == 0:
        return FlagCheck(FLAG_SILENT, True, None, limit, "the clip is empty")
    level = float(_db(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))))
    fired = level < options.silence_rms_dbfs
    return FlagCheck(FLAG_SILENT, fired, level, limit, f"RMS {level:.1f} dBFS")


def check_clipped(audio: np.ndarray, options: ScreenOptions) -> FlagCheck:
    """audio: (N,) finite float. Fires when more than ``max_clipped_fraction`` of the samples lie within
    ``clip_tolerance`` (relative) of the peak magnitude: a flat top, wherever the clipping level is
    (the pipeline itself clamps at 0.99; a gain error may clip at any level)."""
    limit = f"at most {options.max_clipped_fraction:.2%} of samples at the peak"
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        return FlagCheck(FLAG_CLIPPED, None, None, limit, "no signal to check")
    at_peak = int(np.count_nonzero(np.abs(audio) >= peak * (1.0 - options.clip_tolerance)))
    share = at_peak / audio.size
    detail = f"{share:.3%} of samples ({at_peak}) within {options.clip_tolerance:.1%} of the peak {peak:.3f}"
    return FlagCheck(FLAG_CLIPPED, share > options.max_clipped_fraction, share, limit, detail)


def frame_levels_db(audio: np.ndarray, sample_rate: int, frame_s: float) -> np.ndarray:
    """(T,) RMS level in dBFS of consecutive non-overlapping frames of ``frame_s`` seconds (tail dropped)."""
    n = max(1, int(round(frame_s * sample_rate)))
    frames = audio[: audio.size // n * n].reshape(-1, n).astype(np.float64)
    return _db(np.sqrt(np.mean(frames**2, axis=1))) if frames.size else np.zeros(0)


def speech_frames(audio: np.ndarray, sample_rate: int, options: ScreenOptions) -> np.ndarray:
    """(T,) bool: frames within ``silence_below_peak_db`` of the loudest frame and above the silence floor."""
    levels = frame_levels_db(audio, sample_rate, options.frame_s)
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    floor = max(float(levels.max()) - options.silence_below_peak_db, options.silence_rms_dbfs)
    return levels >= floor


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, length)] of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e - s)) for s, e in zip(edges[::2], edges[1::2])]


def check_internal_silence(audio: np.ndarray, sample_rate: int, options: ScreenOptions) -> FlagCheck:
    """Fires when a silent stretch between the first and the last speech frame is too long."""
    limit = f"no pause over {options.max_internal_silence_s:g} s inside the speech"
    speech = speech_frames(audio, sample_rate, options)
    if not speech.any():
        return FlagCheck(FLAG_INTERNAL_SILENCE, None, None, limit, "no speech frame found")
    first, last = np.flatnonzero(speech)[[0, -1]]
    gaps = _runs(~speech[first : last + 1])
    longest = max((length for _, length in gaps), default=0) * options.frame_s
    detail = f"longest pause inside the speech {longest:.2f} s"
    return FlagCheck(FLAG_INTERNAL_SILENCE, longest > options.max_internal_silence_s, longest, limit, detail)


def check_duration(
    audio: np.ndarray, sample_rate: int, text: str, language: str, options: ScreenOptions
) -> FlagCheck:
    """Fires when syllables of ``text`` per second of voiced audio (first to last speech frame) fall
    outside [min_syllables_per_s, max_syllables_per_s]: a truncated clip speaks too fast, a
    babbling or looping one too slowly."""
    limit = f"{options.min_syllables_per_s:g}-{options.max_syllables_per_s:g} syllables/s"
    syllables = syllable_count(text, language)
    speech = speech_frames(audio, sample_rate, options)
    if syllables == 0 or not speech.any():
        why = "the text has no syllables" if syllables == 0 else "no speech frame found"
        return FlagCheck(FLAG_DURATION, None, None, limit, why)
    first, last = np.flatnonzero(speech)[[0, -1]]
    voiced_s = (last - first + 1) * options.frame_s
    rate = syllables / voiced_s
    fired = not options.min_syllables_per_s <= rate <= options.max_syllables_per_s
    detail = f"{syllables} syllables in {voiced_s:.2f} s of speech: {rate:.1f} syllables/s"
    return FlagCheck(FLAG_DURATION, fired, rate, limit, detail)


def longest_repetition(
    tokens: Sequence[int] | np.ndarray, max_period: int, min_repeats: int
) -> tuple[int, int]:
    """(span, period) of the longest stretch of ``tokens`` that repeats one pattern of ``period``
    tokens at least ``min_repeats`` times (span counts every token of the stretch); (0, 0) if none.

    tokens: (L,) integer speech tokens. A stretch with period p is a run of positions i where
    tokens[i] == tokens[i - p]; its span is the run length plus p.
    """
    t = np.asarray(tokens, dtype=np.int64).reshape(-1)
    best = (0, 0)
    for period in range(1, min(max_period, t.size - 1) + 1):
        same = t[period:] == t[:-period]
        for _, length in _runs(same):
            span = length + period
            if span >= min_repeats * period and span > best[0]:
                best = (span, period)
    return best


def check_repetition(tokens: Sequence[int] | np.ndarray | None, options: ScreenOptions) -> FlagCheck:
    """Fires when the speech tokens loop: a pattern of 1..repeat_max_period tokens repeated at least
    ``min_repeats`` times over more than ``max_repeat_s`` seconds (25 tokens/s)."""
    limit = (
        f"no pattern of <= {options.repeat_max_period} tokens repeated {options.min_repeats}+ times "
        f"over more than {options.max_repeat_s:g} s"
    )
    if tokens is None or len(tokens) == 0:
        return FlagCheck(FLAG_REPEATED_TOKENS, None, None, limit, "no speech tokens given for this clip")
    span, period = longest_repetition(tokens, options.repeat_max_period, options.min_repeats)
    seconds = span / TOKEN_RATE
    detail = (
        f"longest loop: {span} tokens ({seconds:.2f} s) with period {period}" if span else "no loop found"
    )
    return FlagCheck(FLAG_REPEATED_TOKENS, seconds > options.max_repeat_s, seconds, limit, detail)


def check_error_rate(intelligibility: Intelligibility, options: ScreenOptions) -> FlagCheck:
    """Fires when the ASR error rate is above ``max_error_rate`` (not checkable without an ASR)."""
    metric = (intelligibility.metric or "error rate").upper()
    limit = f"{metric} <= {options.max_error_rate:.0%}"
    rate = intelligibility.error_rate
    if rate is None:
        return FlagCheck(FLAG_ERROR_RATE, None, None, limit, intelligibility.info.reason or "no ASR ran")
    detail = f"{metric} {rate:.0%} ({intelligibility.info.model})"
    return FlagCheck(FLAG_ERROR_RATE, rate > options.max_error_rate, rate, limit, detail)


def signal_checks(
    audio: np.ndarray,
    sample_rate: int,
    text: str,
    language: str,
    tokens: Sequence[int] | np.ndarray | None,
    options: ScreenOptions,
) -> tuple[FlagCheck, ...]:
    """Every check that needs no model. audio: (N,) float (non-finite samples allowed)."""
    non_finite = check_non_finite(audio)
    if non_finite.fired:
        why = "not checked: the clip has non-finite samples"
        others = [
            FlagCheck(code, None, None, "", why)
            for code in (FLAG_SILENT, FLAG_CLIPPED, FLAG_DURATION, FLAG_INTERNAL_SILENCE)
        ]
        return (non_finite, *others, check_repetition(tokens, options))
    silent = check_silent(audio, options)
    # NOTE: a near-silent clip stored as 16-bit PCM has a few quantisation levels, all "at the peak":
    # its flat top is no clipping, so only the silence flag speaks for it.
    clipped = (
        FlagCheck(FLAG_CLIPPED, None, None, "", "not checked: the clip is silent")
        if silent.fired
        else check_clipped(audio, options)
    )
    return (
        non_finite,
        silent,
        clipped,
        check_duration(audio, sample_rate, text, language, options),
        check_internal_silence(audio, sample_rate, options),
        check_repetition(tokens, options),
    )
