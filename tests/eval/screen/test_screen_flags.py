"""The screen's failure flags and text rules on real speech (prompt clips, flite) and on clips made to fail.

No model runs here: every check is signal processing on the waveform or on the token stream.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.cluster.vq import kmeans2

from eval.screen.flags import (
    check_clipped,
    check_duration,
    check_error_rate,
    check_internal_silence,
    check_repetition,
    check_silent,
    longest_repetition,
    signal_checks,
)
from eval.screen.options import ScreenOptions
from eval.screen.results import (
    FLAG_NON_FINITE,
    FLAG_SILENT,
    Intelligibility,
    MeasureInfo,
)
from eval.screen.text import error_rate, scoring_text, syllable_count
from eval.serving.trials import load_prompts
from tests.screen_audio import flite, hard_clipped, needs_speech_tools

OPTIONS = ScreenOptions()
PROMPTS = load_prompts()
TOKEN_RATE = 25  # CosyVoice2 speech tokens per second


@pytest.fixture(scope="module")
def slt() -> tuple[np.ndarray, int, str]:
    prompt = PROMPTS["en_flite_slt"]
    audio, rate = prompt.load()
    return audio, rate, prompt.transcript


# ----------------------------------------------------------------------------- clean speech


@pytest.mark.parametrize("prompt_id", sorted(PROMPTS))
def test_no_flag_on_clean_prompt_speech(prompt_id):
    prompt = PROMPTS[prompt_id]
    audio, rate = prompt.load()
    checks = signal_checks(audio, rate, prompt.transcript, prompt.language, None, OPTIONS)
    fired = [c.code for c in checks if c.fired]
    assert fired == [], [c.detail for c in checks if c.fired]
    assert {c.code: c.fired for c in checks}["repeated_tokens"] is None  # no tokens given


@needs_speech_tools
@pytest.mark.parametrize("voice", ["slt", "rms", "awb", "kal"])
def test_no_flag_on_fresh_flite_speech(voice):
    text = "When the old lighthouse keeper retired, the village held a party in the harbour."
    audio, rate = flite(text, voice)
    checks = signal_checks(audio, rate, text, "en", None, OPTIONS)
    assert [c.code for c in checks if c.fired] == []


# ----------------------------------------------------------------------------- each flag fires


def test_non_finite_fires_and_skips_the_level_checks(slt):
    audio, rate, text = slt
    broken = audio.copy()
    broken[1000:1010] = np.nan
    broken[5000] = np.inf
    checks = {c.code: c for c in signal_checks(broken, rate, text, "en", None, OPTIONS)}
    assert checks[FLAG_NON_FINITE].fired and checks[FLAG_NON_FINITE].value == 11
    assert checks[FLAG_SILENT].fired is None and "non-finite" in checks[FLAG_SILENT].detail


@pytest.mark.parametrize("gain", [0.0, 1e-4])  # digital silence; speech 80 dB down (about -93 dBFS)
def test_silence_fires(slt, gain):
    audio, _, _ = slt
    check = check_silent(audio * gain, OPTIONS)
    assert check.fired and check.value < OPTIONS.silence_rms_dbfs
    assert check_silent(audio, OPTIONS).fired is False


def test_a_silent_clip_stored_as_16_bit_pcm_is_silent_not_clipped(slt, tmp_path):
    # Speech 100 dB down, written as the bank writes clips: what is left is +-1 LSB, all "at the peak".
    import soundfile as sf

    audio, rate, text = slt
    sf.write(tmp_path / "quiet.wav", audio * 1e-5, rate, subtype="PCM_16")
    quiet, _ = sf.read(tmp_path / "quiet.wav", dtype="float32")
    assert check_clipped(quiet, OPTIONS).fired  # the bare check sees a flat top...
    checks = {c.code: c for c in signal_checks(quiet, rate, text, "en", None, OPTIONS)}
    assert [code for code, c in checks.items() if c.fired] == [FLAG_SILENT]  # ...the screen reports silence
    assert checks["clipped"].fired is None and "silent" in checks["clipped"].detail


def test_empty_clip_is_silent():
    assert check_silent(np.zeros(0, np.float32), OPTIONS).fired


@pytest.mark.parametrize("gain,level", [(20.0, 0.5), (4.0, 0.99), (3.0, 0.1)])
def test_clipping_fires_at_any_clipping_level(slt, gain, level):
    audio, _, _ = slt
    check = check_clipped(hard_clipped(audio, gain, level), OPTIONS)
    assert check.fired, check.detail
    assert check_clipped(audio, OPTIONS).fired is False


def test_mild_clipping_of_a_few_peaks_stays_below_the_limit(slt):
    # Clamping only the loudest 0.01% of samples is inaudible and below max_clipped_fraction.
    audio, _, _ = slt
    level = np.quantile(np.abs(audio), 0.9999)
    assert check_clipped(np.clip(audio, -level, level), OPTIONS).fired is False


def test_truncated_clip_speaks_too_fast(slt):
    audio, rate, text = slt
    check = check_duration(audio[: audio.size // 5], rate, text, "en", OPTIONS)
    assert check.fired and check.value > OPTIONS.max_syllables_per_s


def test_long_clip_for_a_short_text_speaks_too_slowly(slt):
    audio, rate, _ = slt  # 17 syllables of speech ...
    check = check_duration(audio, rate, "Thank you.", "en", OPTIONS)  # ... for a 3-syllable text
    assert check.fired and check.value < OPTIONS.min_syllables_per_s
    assert check_duration(audio, rate, slt[2], "en", OPTIONS).fired is False


@pytest.mark.parametrize("pause_s,fires", [(0.5, False), (1.5, True), (3.0, True)])
def test_internal_silence(slt, pause_s, fires):
    audio, rate, _ = slt
    half = audio.size // 2
    padded = np.concatenate([audio[:half], np.zeros(int(pause_s * rate), np.float32), audio[half:]])
    check = check_internal_silence(padded, rate, OPTIONS)
    assert check.fired is fires
    assert check.value == pytest.approx(pause_s, abs=2 * OPTIONS.frame_s)


def test_leading_and_trailing_silence_is_not_an_internal_pause(slt):
    audio, rate, _ = slt
    pad = np.zeros(3 * rate, np.float32)
    assert check_internal_silence(np.concatenate([pad, audio, pad]), rate, OPTIONS).fired is False


# ----------------------------------------------------------------------------- token loops


def test_longest_repetition_counts_textbook_sequences():
    assert longest_repetition([1, 2, 3, 4, 5], 8, 3) == (0, 0)
    assert longest_repetition([9, 7, 7, 7, 7, 8], 8, 3) == (4, 1)
    assert longest_repetition([0, 1, 2, 1, 2, 1, 2, 1, 2, 5], 8, 3) == (8, 2)
    assert longest_repetition([1, 2, 1, 2, 5], 8, 3) == (0, 0)  # two repeats only


def _loop_tokens(seed: int, pattern_len: int, loop_s: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, 6561, pattern_len)
    loop = np.tile(pattern, int(loop_s * TOKEN_RATE / pattern_len) + 1)
    return np.concatenate([rng.integers(0, 6561, 50), loop, rng.integers(0, 6561, 50)])


@pytest.mark.parametrize("pattern_len", [1, 3, 8])
def test_a_looping_llm_fires(pattern_len):
    check = check_repetition(_loop_tokens(pattern_len, pattern_len, 2.5), OPTIONS)
    assert check.fired and check.value >= 2.5


def test_random_tokens_and_short_holds_do_not_fire():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 6561, 500)
    assert check_repetition(tokens, OPTIONS).fired is False
    tokens[100:115] = 42  # a 0.6 s held vowel
    assert check_repetition(tokens, OPTIONS).fired is False


def test_speech_units_of_real_speech_do_not_loop():
    """Real speech changes its spectrum every few tens of milliseconds: vector-quantised 25 Hz log-mel
    frames of the prompt clips (64 units, a stand-in for speech tokens) never hold a pattern for 1.2 s."""
    import librosa

    clips = {p.id: p.load() for p in PROMPTS.values()}
    feats = {
        pid: np.log(
            librosa.feature.melspectrogram(y=a, sr=r, n_fft=1024, hop_length=r // TOKEN_RATE, n_mels=40)
            + 1e-6
        ).T
        for pid, (a, r) in clips.items()
    }
    _, labels = kmeans2(np.concatenate(list(feats.values())), 64, seed=0, minit="++")
    start = 0
    for pid, frames in feats.items():
        units = labels[start : start + len(frames)]
        start += len(frames)
        assert check_repetition(units, OPTIONS).fired is False, pid


def test_no_tokens_cannot_be_checked():
    assert check_repetition(None, OPTIONS).fired is None
    assert check_repetition([], OPTIONS).fired is None


# ----------------------------------------------------------------------------- error-rate flag


def _intel(rate: float | None) -> Intelligibility:
    info = MeasureInfo("asr_x", "test ASR", model="m")
    return Intelligibility(info if rate is not None else info.unavailable("no ASR"), "wer", rate)


def test_error_rate_flag():
    assert check_error_rate(_intel(0.8), OPTIONS).fired
    assert check_error_rate(_intel(0.1), OPTIONS).fired is False
    assert check_error_rate(_intel(None), OPTIONS).fired is None


# ----------------------------------------------------------------------------- text rules


def test_scoring_text_spells_numbers_and_drops_punctuation():
    assert scoring_text("It costs $5, I'm sure!", "en") == "it costs five dollars i'm sure"
    assert scoring_text("会议在3月举行。", "zh") == "会 议 在 三 月 举 行"


@pytest.mark.parametrize(
    "text,syllables",
    [("little", 2), ("coffee", 2), ("make", 1), ("corner", 2), ("the", 1), ("strengths", 1), ("你好。", 2)],
)
def test_syllable_counts(text, syllables):
    assert syllable_count(text, "zh" if "你" in text else "en") == syllables


def test_error_rate_is_levenshtein_over_the_reference_length():
    assert error_rate("a b c d", "a x c") == pytest.approx(0.5)  # one substitution, one deletion
    assert error_rate("a b", "a b c d") == pytest.approx(1.0)  # two insertions
    assert error_rate("a b", "") == 1.0
    with pytest.raises(ValueError):
        error_rate("", "a")


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "change",
    [
        {"measures": ()},
        {"measures": ("dnsmos", "mos")},
        {"silence_rms_dbfs": 3.0},
        {"min_syllables_per_s": 5.0, "max_syllables_per_s": 4.0},
        {"repeat_max_period": 2.5},
        {"max_internal_silence_s": float("nan")},
    ],
)
def test_bad_options_are_refused(change):
    with pytest.raises(ValueError):
        dataclasses.replace(ScreenOptions(), **change)
