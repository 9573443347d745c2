"""SpeechFrontend with the tiny ONNX stand-ins: signatures, loading errors and prompt features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tts_core.constants import SPEAKER_EMBEDDING_DIM, SPEECH_TOKEN_SIZE, TOKEN_RATE
from tts_core.frontend.audio import load_audio, resample
from tts_core.frontend.prompt import PromptFeatures
from tts_core.frontend.speech_frontend import SpeechFrontend
from tts_core.model.tiny_onnx import write_campplus_onnx, write_speech_tokenizer_onnx

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    write_speech_tokenizer_onnx(folder / "speech_tokenizer_v2.onnx", seed=1)
    write_campplus_onnx(folder / "campplus.onnx", seed=2)
    return folder


@pytest.fixture(scope="module")
def frontend(onnx_dir: Path) -> SpeechFrontend:
    return SpeechFrontend(onnx_dir / "speech_tokenizer_v2.onnx", onnx_dir / "campplus.onnx", CPU)


@pytest.fixture(scope="module")
def espeak_wav(reference_dir: Path) -> tuple[np.ndarray, int]:
    return load_audio(reference_dir / "frontend" / "en_a_22k.wav")


def _signature(values) -> list[tuple[str, str, list]]:
    return [(v.name, v.type, [d if isinstance(d, int) else "dyn" for d in v.shape]) for v in values]


def test_tiny_models_have_the_official_signatures(onnx_dir: Path):
    tok = ort.InferenceSession(str(onnx_dir / "speech_tokenizer_v2.onnx"), providers=["CPUExecutionProvider"])
    assert _signature(tok.get_inputs()) == [
        ("feats", "tensor(float)", ["dyn", 128, "dyn"]),
        ("feats_length", "tensor(int32)", ["dyn"]),
    ]
    assert _signature(tok.get_outputs()) == [("indices", "tensor(int32)", ["dyn", "dyn"])]
    spk = ort.InferenceSession(str(onnx_dir / "campplus.onnx"), providers=["CPUExecutionProvider"])
    assert _signature(spk.get_inputs()) == [("input", "tensor(float)", ["dyn", "dyn", 80])]
    assert _signature(spk.get_outputs()) == [("output", "tensor(float)", ["dyn", SPEAKER_EMBEDDING_DIM])]


def test_tiny_models_are_small_valid_and_deterministic(tmp_path: Path, onnx_dir: Path):
    for name in ("speech_tokenizer_v2.onnx", "campplus.onnx"):
        path = onnx_dir / name
        onnx.checker.check_model(onnx.load(path), full_check=True)
        assert path.stat().st_size < 2_000_000
    again = write_speech_tokenizer_onnx(tmp_path / "again.onnx", seed=1)
    assert again.read_bytes() == (onnx_dir / "speech_tokenizer_v2.onnx").read_bytes()
    other = write_speech_tokenizer_onnx(tmp_path / "other.onnx", seed=3)
    assert other.read_bytes() != again.read_bytes()


def test_tiny_tokenizer_output_length_follows_feats_length(onnx_dir: Path):
    tok = ort.InferenceSession(str(onnx_dir / "speech_tokenizer_v2.onnx"), providers=["CPUExecutionProvider"])
    feats = np.random.default_rng(0).standard_normal((1, 128, 290)).astype(np.float32)
    for length, expected in ((290, 73), (100, 25), (101, 26)):
        (out,) = tok.run(None, {"feats": feats, "feats_length": np.array([length], np.int32)})
        assert out.shape == (1, expected)


def test_speech_tokens_and_embedding_on_espeak(frontend: SpeechFrontend, espeak_wav):
    wav, sr = espeak_wav
    wav16k = resample(wav, sr, 16000)
    tokens = frontend.speech_tokens(wav16k)
    assert tokens.dtype == torch.int64 and tokens.dim() == 1
    assert int(tokens.min()) >= 0 and int(tokens.max()) < SPEECH_TOKEN_SIZE
    seconds = wav16k.size / 16000
    assert abs(tokens.numel() - seconds * TOKEN_RATE) <= 2  # ~25 Hz
    assert tokens.unique().numel() > 10  # the tokens follow the audio, not a constant
    embedding = frontend.speaker_embedding(wav16k)
    assert embedding.dtype == torch.float32 and embedding.shape == (SPEAKER_EMBEDDING_DIM,)
    assert torch.isfinite(embedding).all() and embedding.abs().sum() > 0


def test_prompt_features_align_tokens_and_mel(frontend: SpeechFrontend, espeak_wav):
    wav, sr = espeak_wav
    prompt = frontend.prompt_features(wav, sr, [11, 12, 13], "The quick brown fox.")
    assert isinstance(prompt, PromptFeatures)
    assert prompt.mode == "zero_shot"
    assert prompt.text_tokens.tolist() == [11, 12, 13]
    assert prompt.mel.shape == (2 * prompt.speech_tokens.numel(), 80)
    n_mel_24k = round(wav.size * 24000 / sr) // 480
    assert prompt.speech_tokens.numel() == min(
        n_mel_24k // 2, int(np.ceil(round(wav.size * 16000 / sr) / 640))
    )
    assert torch.isfinite(prompt.mel).all()
    cross = frontend.prompt_features(wav, sr, None, None)
    assert cross.mode == "cross_lingual"
    assert torch.equal(cross.speech_tokens, prompt.speech_tokens)  # deterministic


def test_different_prompts_give_different_features(frontend: SpeechFrontend, espeak_wav, reference_dir: Path):
    wav_a, sr_a = espeak_wav
    wav_b, sr_b = load_audio(reference_dir / "frontend" / "cmn_b_22k.wav")
    a = frontend.prompt_features(wav_a, sr_a, None, None)
    b = frontend.prompt_features(wav_b, sr_b, None, None)
    n = min(a.speech_tokens.numel(), b.speech_tokens.numel())
    assert not torch.equal(a.speech_tokens[:n], b.speech_tokens[:n])
    assert not torch.allclose(a.embedding, b.embedding)


def test_prompt_features_check_the_audio(frontend: SpeechFrontend):
    with pytest.raises(ValueError, match="silent"):
        frontend.prompt_features(np.zeros(48000, np.float32), 16000, None, None)


def test_corrupt_onnx_file_is_named(tmp_path: Path, onnx_dir: Path):
    bad = tmp_path / "speech_tokenizer_v2.onnx"
    bad.write_bytes((onnx_dir / "speech_tokenizer_v2.onnx").read_bytes()[:5000])  # truncated download
    with pytest.raises(ValueError, match=r"speech_tokenizer_v2\.onnx.*download the model directory again"):
        SpeechFrontend(bad, onnx_dir / "campplus.onnx", CPU)
    junk = tmp_path / "campplus.onnx"
    junk.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match=r"campplus\.onnx"):
        SpeechFrontend(None, junk, CPU)


def test_swapped_models_are_refused(onnx_dir: Path):
    with pytest.raises(ValueError, match="not the campplus.onnx"):
        SpeechFrontend(None, onnx_dir / "speech_tokenizer_v2.onnx", CPU)


def test_missing_models(tmp_path: Path, onnx_dir: Path):
    only_tokens = SpeechFrontend(onnx_dir / "speech_tokenizer_v2.onnx", None, CPU)
    wav16k = np.random.default_rng(0).uniform(-0.3, 0.3, 32000).astype(np.float32)
    assert only_tokens.speech_tokens(wav16k).numel() == 50
    with pytest.raises(RuntimeError, match=r"campplus\.onnx is not available"):
        only_tokens.speaker_embedding(wav16k)
    nothing = SpeechFrontend(None, None, CPU)
    with pytest.raises(RuntimeError, match=r"speech_tokenizer_v2\.onnx is not available"):
        nothing.prompt_features(wav16k, 16000, None, None)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        SpeechFrontend(tmp_path / "missing.onnx", None, CPU)
