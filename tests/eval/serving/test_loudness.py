"""Loudness matching against the numbers ITU-R BS.1770-4 / EBU Tech 3341 state for test signals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval.serving import loudness

ROOT = Path(__file__).resolve().parents[3]
RATE = 48_000


def sine(freq: float, amplitude: float, seconds: float = 5.0, rate: int = RATE, phase: float = 0.0):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


@pytest.mark.parametrize("amplitude_db", [0.0, -20.0, -30.0])
def test_997_hz_sine_reads_minus_3_01_lufs_below_its_peak(amplitude_db: float) -> None:
    # BS.1770-4 (and EBU Tech 3341 test case 1): a 0 dBFS 997 Hz sine in one channel is -3.01 LUFS.
    x = sine(997.0, 10 ** (amplitude_db / 20))
    assert loudness.integrated_loudness(x, RATE) == pytest.approx(amplitude_db - 3.01, abs=0.1)


def test_true_peak_finds_the_peak_between_samples() -> None:
    # A sine at fs/4 sampled 45 degrees off its crest: every sample is at 1/sqrt(2) of the peak,
    # so the sample peak is 3.01 dB low; the 4x oversampled true peak is the sine's amplitude.
    x = sine(RATE / 4, 0.5, seconds=1.0, phase=np.pi / 4)
    sample_peak_db = 20 * math.log10(np.max(np.abs(x)))
    assert sample_peak_db == pytest.approx(20 * math.log10(0.5) - 3.01, abs=0.05)
    assert loudness.true_peak_dbtp(x) == pytest.approx(20 * math.log10(0.5), abs=0.3)


def test_speech_at_different_levels_comes_out_at_the_target() -> None:
    speech, rate = sf.read(ROOT / "assets/prompts/en_flite_slt.wav", dtype="float32")
    quiet, loud = 0.05 * speech / np.max(np.abs(speech)), 0.7 * speech / np.max(np.abs(speech))
    before = [loudness.integrated_loudness(x, rate) for x in (quiet, loud)]
    assert before[1] - before[0] == pytest.approx(20 * math.log10(0.7 / 0.05), abs=0.05)
    for x, level in zip((quiet, loud), before):
        original = x.copy()
        out, record = loudness.match(x, rate)
        np.testing.assert_array_equal(x, original)  # the input is left alone
        assert record.before_lufs == pytest.approx(level, abs=1e-6)
        assert record.gain_db == pytest.approx(loudness.TARGET_LUFS - level, abs=1e-6)
        assert not record.peak_limited and not record.silent
        # An independent measurement of the output, not the record's own number.
        assert loudness.integrated_loudness(out, rate) == pytest.approx(loudness.TARGET_LUFS, abs=0.05)
        assert loudness.true_peak_dbtp(out) <= loudness.TRUE_PEAK_CEILING_DBTP
        assert record.after_lufs == pytest.approx(loudness.TARGET_LUFS, abs=0.05)


def test_a_peaky_clip_is_held_at_the_ceiling_and_says_so() -> None:
    clicks = np.zeros(RATE * 3, dtype=np.float32)
    clicks[:: RATE // 2] = 0.05  # sparse clicks: very low loudness, high peaks
    out, record = loudness.match(clicks, RATE)
    assert record.peak_limited and record.after_lufs < loudness.TARGET_LUFS
    assert loudness.true_peak_dbtp(out) == pytest.approx(loudness.TRUE_PEAK_CEILING_DBTP, abs=0.05)
    assert "ceiling" in loudness.describe(record)


def test_silence_and_short_clips() -> None:
    out, record = loudness.match(np.zeros(RATE, dtype=np.float32), RATE)
    assert record.silent and record.gain_db == 0.0 and not np.any(out)
    meta = record.to_meta()
    assert meta["before_lufs"] is None  # -inf is not JSON
    assert loudness.LoudnessMatch.from_meta(meta) == record
    short = sine(997.0, 0.1, seconds=0.2)  # shorter than one 400 ms block
    assert math.isfinite(loudness.integrated_loudness(short, RATE))
