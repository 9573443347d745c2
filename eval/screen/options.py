"""The screen's one options object (every threshold, with its unit), validated in one place.

Override with ``dataclasses.replace(ScreenOptions(), max_internal_silence_s=2.0)``; the screen
functions take the object and never read settings from anywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Rates the measures' models are trained at (the screen resamples to them).
DNSMOS_SAMPLE_RATE = 16_000  # Hz: DNSMOS P.808 and P.835 ONNX models
ASR_SAMPLE_RATE = 16_000  # Hz: pocketsphinx en-us acoustic model and Whisper
SPEAKER_SAMPLE_RATE = 16_000  # Hz: CAM++ (campplus.onnx) and the resemblyzer encoder

MEASURES = ("dnsmos", "similarity", "asr", "flags")  # what a screen can compute (flags are cheap)


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class ScreenOptions:
    """Thresholds of the failure flags and which measures run. Defaults are argued in the comments."""

    # --- which measures run (a subset of MEASURES; the flags are always checked)
    measures: tuple[str, ...] = MEASURES
    # --- silence: whole-clip RMS below this is "silent" (speech sits near -20 dBFS; dither ~-90)
    silence_rms_dbfs: float = -45.0
    # --- clipping: the share of samples within clip_tolerance (relative) of the clip's peak
    # magnitude. Clean speech reaches its peak in a handful of samples (1e-5 of a 10 s clip);
    # a clipped waveform sits there for whole half-periods.
    clip_tolerance: float = 1e-3
    max_clipped_fraction: float = 1e-3
    # --- speech rate over the voiced span (first to last non-silent frame), in syllables per
    # second (English: vowel groups of the normalised text; Chinese: one per character). Read
    # speech runs at about 3-6; our prompts span 2.8-6.2 (flite, espeak-ng English) and 1.6-2.2
    # (espeak-ng Mandarin, which drawls). A loop or babble falls far below, a truncated clip above.
    min_syllables_per_s: float = 1.0
    max_syllables_per_s: float = 9.0
    # --- silences: frames (frame_s long) more than silence_below_peak_db under the loudest frame
    # are silent; a silent run between speech longer than max_internal_silence_s is flagged
    # (sentence pauses of read speech last 0.3-0.8 s).
    frame_s: float = 0.02
    silence_below_peak_db: float = 40.0
    max_internal_silence_s: float = 1.0
    # --- repetition: the longest stretch in which the speech tokens repeat with a period of
    # 1..repeat_max_period tokens, in seconds at 25 tokens/s (an LLM stuck in a loop)
    repeat_max_period: int = 8
    max_repeat_s: float = 1.2
    min_repeats: int = 3  # a stretch counts only when its pattern occurs at least this often
    # --- intelligibility: an ASR error rate above this is flagged (the field's "WER > 50%" count)
    max_error_rate: float = 0.5

    def __post_init__(self) -> None:
        if not self.measures or any(m not in MEASURES for m in self.measures):
            raise ValueError(f"measures must be a non-empty subset of {MEASURES}, got {self.measures!r}")
        if len(set(self.measures)) != len(self.measures):
            raise ValueError(f"measures repeat: {self.measures!r}")
        _check_range("silence_rms_dbfs", self.silence_rms_dbfs, -120.0, 0.0)
        _check_range("clip_tolerance", self.clip_tolerance, 0.0, 0.1)
        _check_range("max_clipped_fraction", self.max_clipped_fraction, 0.0, 1.0)
        _check_range("min_syllables_per_s", self.min_syllables_per_s, 0.0, 100.0)
        _check_range("max_syllables_per_s", self.max_syllables_per_s, 0.0, 100.0)
        if self.max_syllables_per_s <= self.min_syllables_per_s:
            raise ValueError("max_syllables_per_s must be above min_syllables_per_s")
        _check_range("frame_s", self.frame_s, 0.005, 0.2)
        _check_range("silence_below_peak_db", self.silence_below_peak_db, 1.0, 120.0)
        _check_range("max_internal_silence_s", self.max_internal_silence_s, 0.05, 60.0)
        if isinstance(self.repeat_max_period, bool) or not isinstance(self.repeat_max_period, int):
            raise ValueError(f"repeat_max_period must be an integer, got {self.repeat_max_period!r}")
        _check_range("repeat_max_period", self.repeat_max_period, 1, 100)
        _check_range("max_repeat_s", self.max_repeat_s, 0.04, 60.0)
        if isinstance(self.min_repeats, bool) or not isinstance(self.min_repeats, int):
            raise ValueError(f"min_repeats must be an integer, got {self.min_repeats!r}")
        _check_range("min_repeats", self.min_repeats, 2, 1000)
        _check_range("max_error_rate", self.max_error_rate, 0.0, 10.0)

    def runs(self, measure: str) -> bool:
        """Whether ``measure`` (one of MEASURES) is switched on."""
        return measure in self.measures
