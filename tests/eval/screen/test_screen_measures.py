"""The screen's model-based measures on real speech: DNSMOS, speaker similarity, pocketsphinx WER.

Speech: the prompt clips of assets/prompts (flite / espeak-ng, transcripts in the manifest) and
flite / espeak-ng speech made here. Degradations: white noise at 5 dB SNR and hard clipping.
Models are loaded once per module.

Measured bounds (pocketsphinx 5.1.1, en-us bundled models): WER on the four flite prompts is 0.00,
0.07, 0.25 and 0.47 (mean 0.20); on two fresh flite sentences 0.00-0.15 (slt); with white noise
at 5 dB SNR it is 1.0 on all of them. The test bounds: every clean flite prompt <= 0.5, their mean
<= 0.3, and noisy >= clean + 0.3 (on two of them).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from eval.screen import asr as asr_mod
from eval.screen.asr import NO_CHINESE_ASR, PocketsphinxAsr, measure_intelligibility
from eval.screen.options import ScreenOptions
from eval.screen.quality import Dnsmos
from eval.screen.screener import CampplusSource, ClipInput, load_screener
from eval.screen.speaker import RANDOM_WEIGHTS_CAVEAT, CampplusEncoder, ResemblyzerEncoder, to_speaker_rate
from eval.serving.trials import load_prompts
from tests.screen_audio import espeak, flite, hard_clipped, needs_speech_tools, trim_silence, with_white_noise
from tests.tiny_whisper import write_tiny_whisper
from tts_core.model.tiny_onnx import write_campplus_onnx

PROMPTS = load_prompts()
FLITE_PROMPTS = ("en_flite_slt", "en_flite_rms_slow", "en_flite_awb_fast", "en_flite_kal")
NOISY_PROMPTS = ("en_flite_slt", "en_flite_awb_fast")
DNSMOS_PROMPTS = ("en_flite_slt", "en_us_espeak_m", "zh_espeak_m")
SNR_DB = 5.0
SENTENCE_1 = "The old lighthouse keeper retired after forty years of storms."
SENTENCE_2 = "Please remember to validate your ticket before boarding the train."


@pytest.fixture(scope="module")
def dnsmos() -> Dnsmos:
    return Dnsmos()


@pytest.fixture(scope="module")
def resemblyzer() -> ResemblyzerEncoder:
    return ResemblyzerEncoder()


@pytest.fixture(scope="module")
def sphinx() -> PocketsphinxAsr:
    return PocketsphinxAsr()


# ----------------------------------------------------------------------------- DNSMOS


@pytest.mark.parametrize("prompt_id", DNSMOS_PROMPTS)
def test_dnsmos_clean_beats_noisy_and_clipped(dnsmos, prompt_id):
    audio, rate = PROMPTS[prompt_id].load()
    clean = dnsmos.score(audio, rate)
    noisy = dnsmos.score(with_white_noise(audio, SNR_DB), rate)
    clipped = dnsmos.score(hard_clipped(audio), rate)
    for name in ("ovrl", "p808"):
        assert getattr(clean, name) > getattr(noisy, name) + 0.1, name
        assert getattr(clean, name) > getattr(clipped, name) + 0.1, name  # measured: >= 0.19
    assert clean.bak > noisy.bak + 1.0  # the background head hears the noise most
    assert all(1.0 <= v <= 5.0 for v in (clean.ovrl, clean.sig, clean.bak, clean.p808))
    assert clean.info.available and "speechmos" in clean.info.version


def test_dnsmos_refuses_a_too_short_clip(dnsmos):
    out = dnsmos.score(np.zeros(100, np.float32), 16000)
    assert out.ovrl is None and not out.info.available and "shorter" in out.info.reason


# ----------------------------------------------------------------------------- speaker similarity


@needs_speech_tools
def test_same_voice_is_more_similar_than_other_voices(resemblyzer):
    voices = {f"flite-{v}": (lambda t, v=v: flite(t, v)) for v in ("slt", "rms", "awb", "kal")}
    voices["espeak-en-us"] = lambda t: espeak(t, "en-us")
    first = {name: resemblyzer.embed(to_speaker_rate(*make(SENTENCE_1))) for name, make in voices.items()}
    second = {name: resemblyzer.embed(to_speaker_rate(*make(SENTENCE_2))) for name, make in voices.items()}
    for name in voices:
        same = float(first[name] @ second[name])
        others = [float(first[name] @ second[o]) for o in voices if o != name]
        assert same > max(others) + 0.1, (name, same, others)  # measured: same 0.87-0.94, others <= 0.71


def test_resemblyzer_embeddings_equal_the_package_code(resemblyzer, monkeypatch):
    """Our forward pass of resemblyzer's weights gives the package's own embed_utterance output.

    The package imports webrtcvad, which imports pkg_resources (gone from setuptools >= 81); a stub
    stands in for it here only, so the package's code can run as the reference.
    """
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            stub = types.SimpleNamespace(get_distribution=lambda name: types.SimpleNamespace(version="0"))
            monkeypatch.setitem(sys.modules, "pkg_resources", stub)
    from resemblyzer import VoiceEncoder, normalize_volume

    reference = VoiceEncoder("cpu", verbose=False)
    for prompt_id in ("en_flite_slt", "zh_espeak_m"):
        wav = normalize_volume(to_speaker_rate(*PROMPTS[prompt_id].load()), -30, increase_only=True)
        theirs = reference.embed_utterance(wav)
        ours = resemblyzer.embed_preprocessed(wav.astype(np.float32))
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_campplus_of_a_random_model_says_it_measures_nothing(tmp_path):
    path = write_campplus_onnx(tmp_path / "campplus.onnx", seed=2)
    encoder = CampplusEncoder(path, random_weights=True)
    wav = to_speaker_rate(*PROMPTS["en_flite_slt"].load())
    embedding = encoder.embed(wav)
    assert embedding.shape == (192,) and float(embedding @ encoder.embed(wav)) == pytest.approx(1.0, abs=1e-5)
    assert encoder.info.reason == RANDOM_WEIGHTS_CAVEAT and "sha256" in encoder.info.version


# ----------------------------------------------------------------------------- ASR


def _wer(sphinx, audio: np.ndarray, rate: int, text: str) -> float:
    wav16k = np.clip(to_speaker_rate(audio, rate), -1, 1)
    return measure_intelligibility((sphinx,), wav16k, text, "en").error_rate


def test_pocketsphinx_wer_on_clear_flite_speech_and_on_noise(sphinx):
    clean = {}
    for prompt_id in FLITE_PROMPTS:
        audio, rate = PROMPTS[prompt_id].load()
        clean[prompt_id] = _wer(sphinx, audio, rate, PROMPTS[prompt_id].transcript)
    assert max(clean.values()) <= 0.5 and float(np.mean(list(clean.values()))) <= 0.3, clean
    for prompt_id in NOISY_PROMPTS:  # decoding noise is slow (a wide search): two clips suffice
        audio, rate = PROMPTS[prompt_id].load()
        noisy = _wer(sphinx, with_white_noise(audio, SNR_DB), rate, PROMPTS[prompt_id].transcript)
        assert noisy >= clean[prompt_id] + 0.3, (prompt_id, clean[prompt_id], noisy)


@needs_speech_tools
def test_pocketsphinx_on_fresh_flite_sentences(sphinx):
    for text in (SENTENCE_1, SENTENCE_2):
        audio, rate = flite(text, "slt")
        assert _wer(sphinx, trim_silence(audio), rate, text) <= 0.3


def test_pocketsphinx_is_deterministic_whatever_came_before(sphinx):
    audio, rate = PROMPTS["en_flite_kal"].load()
    text = PROMPTS["en_flite_kal"].transcript
    first = _wer(sphinx, audio, rate, text)
    _wer(sphinx, *PROMPTS["en_us_espeak_m"].load(), PROMPTS["en_us_espeak_m"].transcript)
    assert _wer(sphinx, audio, rate, text) == first


def test_pocketsphinx_in_a_worker_process_transcribes_the_same(sphinx):
    worker = PocketsphinxAsr(in_worker=True)  # what the app uses: the decode does not hold its GIL
    wav = to_speaker_rate(*PROMPTS["en_flite_awb_fast"].load())
    assert worker.transcribe(wav, "en") == sphinx.transcribe(wav, "en") != ""


def test_chinese_without_whisper_says_what_to_do(sphinx):
    wav = to_speaker_rate(*PROMPTS["zh_espeak_m"].load())
    out = measure_intelligibility((sphinx,), wav, PROMPTS["zh_espeak_m"].transcript, "zh")
    assert out.error_rate is None and out.metric == "cer" and out.info.reason == NO_CHINESE_ASR


def test_a_local_whisper_directory_runs_for_english_and_chinese(tmp_path, sphinx):
    """Plumbing only (random weights, meaningless transcripts): loads offline, is preferred over
    pocketsphinx, scores WER for English and CER for Chinese."""
    whisper = asr_mod.WhisperAsr(write_tiny_whisper(tmp_path / "whisper"))
    assert asr_mod.choose_recogniser((sphinx, whisper), "en") is whisper
    for prompt_id, metric in (("en_flite_slt", "wer"), ("zh_espeak_m", "cer")):
        prompt = PROMPTS[prompt_id]
        wav = to_speaker_rate(*prompt.load())
        out = measure_intelligibility((sphinx, whisper), wav, prompt.transcript, prompt.language)
        assert out.info.name == "asr_whisper" and out.metric == metric and out.error_rate is not None
        assert "transformers" in out.info.version


def test_whisper_dir_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--asr-model"):
        load_screener(ScreenOptions(measures=("asr",)), asr_model_dir=tmp_path)
    assert asr_mod.choose_recogniser((), "en") is None


# ----------------------------------------------------------------------------- the screener


@pytest.fixture(scope="module")
def screener(tmp_path_factory):
    path = write_campplus_onnx(tmp_path_factory.mktemp("campplus") / "campplus.onnx", seed=2)
    return load_screener(ScreenOptions(), CampplusSource(path, random_weights=True))


def test_screen_of_clean_speech_has_every_measure_and_no_flag(screener):
    prompt = PROMPTS["en_flite_slt"]
    audio, rate = prompt.load()
    reference = screener.speaker_reference(*PROMPTS["en_flite_awb_fast"].load())
    result = screener.screen(ClipInput(audio, rate, prompt.transcript, reference))
    assert not result.flagged, [c.detail for c in result.flags]
    values = result.values()
    assert set(values) == {
        "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "sim_campplus", "sim_resemblyzer", "error_rate",
    }  # fmt: skip
    assert all(v is not None for v in values.values()), values
    assert result.intelligibility.transcript and result.intelligibility.info.name == "asr_pocketsphinx"
    assert all(m.model and m.version for m in result.measures())


def test_screen_of_broken_audio_flags_it_and_says_why_nothing_was_measured(screener):
    audio = np.full(24000, np.nan, np.float32)
    result = screener.screen(ClipInput(audio, 24000, "Hello there."))
    assert [c.code for c in result.flags] == ["non_finite"]
    assert result.quality.ovrl is None and "non-finite" in result.quality.info.reason
    assert all(not m.available for m in result.measures())


def test_screen_without_a_prompt_skips_similarity_only(screener):
    audio, rate = PROMPTS["en_flite_slt"].load()
    result = screener.screen(ClipInput(audio, rate, PROMPTS["en_flite_slt"].transcript))
    assert all(s.cosine is None and s.info.reason == "no voice prompt given" for s in result.similarity)
    assert result.quality.ovrl is not None


def test_switched_off_measures_say_so():
    lean = load_screener(ScreenOptions(measures=("flags",)))
    audio, rate = PROMPTS["en_flite_slt"].load()
    result = lean.screen(ClipInput(audio, rate, PROMPTS["en_flite_slt"].transcript))
    assert "switched off" in result.quality.info.reason
    assert "switched off" in result.intelligibility.info.reason
    assert not result.flagged
