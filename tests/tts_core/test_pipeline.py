"""End to end on a tiny random-weight model in the official layout (written by the factory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tts_core import PromptFeatures, SynthesisOptions, load_pipeline
from tts_core.constants import MAX_TEXT_CHARS
from tts_core.model.factory import write_random_model

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "prompts"
SECONDS_PER_TOKEN = 2 * 480 / 24000  # two mel frames of 480 samples at 24 kHz


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    model = write_random_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0)
    return load_pipeline(model, device="cpu", require_frontend=True)


@pytest.fixture(scope="module")
def prompt_clip():
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    entry = next(p for p in manifest["prompts"] if p["language"] == "en")
    wav, sr = sf.read(ASSETS / entry["file"], dtype="float32")
    return wav, sr, entry["transcript"]


@pytest.fixture(scope="module")
def prompt(pipe, prompt_clip):
    wav, sr, transcript = prompt_clip
    return pipe.prepare_prompt(wav, sr, transcript)


FAST = SynthesisOptions(flow_steps=2, seed=7, max_token_text_ratio=4.0)


def test_prompt_features(prompt, prompt_clip):
    wav, sr, _ = prompt_clip
    assert prompt.mode == "zero_shot" and prompt.text_tokens.numel() > 0
    n = prompt.speech_tokens.numel()
    assert abs(n - len(wav) / sr * 25) <= 2  # 25 tokens per second
    assert prompt.mel.shape == (2 * n, 80)
    assert prompt.embedding.shape == (192,)


def test_same_seed_same_audio_other_seed_differs(pipe, prompt):
    a = pipe.synthesize("Hello world.", prompt, FAST)
    b = pipe.synthesize("Hello world.", prompt, FAST)
    c = pipe.synthesize("Hello world.", prompt, FAST.replace(seed=8))
    assert all(torch.equal(x, y) for x, y in zip(a.speech_tokens, b.speech_tokens))
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)


def test_result_fields(pipe, prompt):
    r = pipe.synthesize("Hello world.", prompt, FAST)
    n_tokens = sum(int(t.numel()) for t in r.speech_tokens)
    assert r.sample_rate == 24000 and r.audio.dtype == np.float32
    assert r.duration == pytest.approx(n_tokens * SECONDS_PER_TOKEN)
    assert r.mel.shape == (80, 2 * n_tokens)
    assert np.abs(r.audio).max() <= 0.99
    assert r.timings.llm > 0 and r.timings.flow > 0 and r.timings.vocoder > 0
    assert r.rtf == pytest.approx(r.timings.total / r.duration)
    assert (r.dtype_ran, r.backend, r.device, r.warnings) == ("float32", "torch", "cpu", ())


def test_official_length_rule(pipe, prompt):
    tokens = pipe.generate_tokens([11, 12, 13, 14, 15], prompt, SynthesisOptions(seed=1))
    n = tokens.n_tokens
    assert 2 * 5 <= n <= 20 * 5


def test_fixed_tokens(pipe, prompt):
    tokens = pipe.generate_tokens("Hi.", prompt, FAST.replace(fixed_tokens=37))
    assert tokens.n_tokens == 37


def test_same_tokens_two_flow_settings(pipe, prompt):
    tokens = pipe.generate_tokens("Hello world.", prompt, FAST)
    ten = pipe.tokens_to_audio(tokens, prompt, FAST.replace(flow_steps=10))
    five = pipe.tokens_to_audio(tokens, prompt, FAST.replace(flow_steps=5))
    assert all(torch.equal(a, b) for a, b in zip(ten.speech_tokens, five.speech_tokens))
    assert ten.mel.shape == five.mel.shape and not torch.equal(ten.mel, five.mel)
    assert ten.timings.llm == five.timings.llm == tokens.llm_seconds
    assert tokens.llm_backend == ten.llm_backend == "eager"  # what "auto" means on a CPU


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_runs_and_is_reported(pipe, prompt, dtype):
    r = pipe.synthesize("Hello world.", prompt, FAST.replace(dtype=dtype))
    assert r.dtype_ran == dtype and np.isfinite(r.audio).all()


def test_speed_changes_length(pipe, prompt):
    tokens = pipe.generate_tokens("Hello world.", prompt, FAST)
    normal = pipe.tokens_to_audio(tokens, prompt, FAST)
    fast = pipe.tokens_to_audio(tokens, prompt, FAST.replace(speed=2.0))
    assert fast.mel.shape[1] == normal.mel.shape[1] // 2


def test_cross_lingual_prompt(pipe, prompt_clip):
    wav, sr, _ = prompt_clip
    p = pipe.prepare_prompt(wav, sr, transcript=None)
    assert p.mode == "cross_lingual" and p.text_tokens.numel() == 0
    assert pipe.synthesize("你好，世界。", p, FAST).duration > 0


def test_long_text_is_split_into_sentences(pipe, prompt):
    text = " ".join(["This sentence is here to make the paragraph long enough to split."] * 12)
    tokens = pipe.generate_tokens(text, prompt, FAST.replace(max_token_text_ratio=2.0))
    assert len(tokens.segments) >= 2 and len(tokens.texts) == len(tokens.segments)


def test_prompt_from_arrays_matches_prepared(pipe, prompt):
    again = PromptFeatures.from_arrays(
        prompt.text_tokens.numpy(),
        prompt.speech_tokens.numpy()[None],
        prompt.mel.numpy()[None],
        prompt.embedding,
    )
    assert again.digest() == prompt.digest()
    assert (
        PromptFeatures.from_arrays([], prompt.speech_tokens, prompt.mel, prompt.embedding).mode
        == "cross_lingual"
    )


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("   ", "empty"), ("x" * (MAX_TEXT_CHARS + 1), "limit"), ("?!。，", "nothing to speak")],
)
def test_bad_text(pipe, prompt, text, message):
    with pytest.raises(ValueError, match=message):
        pipe.synthesize(text, prompt, FAST)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: np.zeros(48000, np.float32), "silent"),
        (lambda: np.zeros(0, np.float32), "empty"),
        (lambda: 0.3 * np.sin(np.arange(4800) / 10).astype(np.float32), "at least 1 s"),
        (lambda: 0.3 * np.sin(np.arange(24000 * 31) / 10).astype(np.float32), "30"),
    ],
)
def test_bad_prompt_audio(pipe, make, message):
    with pytest.raises(ValueError, match=message):
        pipe.prepare_prompt(make(), 24000, "hello")


def test_bad_tokens(pipe, prompt):
    with pytest.raises(ValueError, match="speech tokens"):
        pipe.tokens_to_audio(torch.tensor([1, 2, 7000]), prompt, FAST)
    with pytest.raises(ValueError, match="no speech tokens"):
        pipe.tokens_to_audio(torch.zeros(0, dtype=torch.long), prompt, FAST)


def test_dtype_that_cannot_run_falls_back_visibly(pipe, prompt, monkeypatch):
    import tts_core.devices as devices

    monkeypatch.setattr(devices, "_dtype_runs", lambda device, name: name != "bfloat16")
    tokens = pipe.generate_tokens("Hello world.", prompt, FAST.replace(dtype="bfloat16"))
    r = pipe.tokens_to_audio(tokens, prompt, FAST.replace(dtype="bfloat16"))
    assert tokens.dtype_ran == r.dtype_ran == "float32"
    assert any("bfloat16 cannot run" in w for w in r.warnings)
    assert any("LLM ran in float32" in w for w in r.warnings)
