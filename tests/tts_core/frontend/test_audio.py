"""tts_core.frontend.audio: loading (formats, rates, channels, scaling), prompt checks and resampling.

Truth comes from outside the module: int16 values written with scipy's WAV writer, numpy channel
means, the official int16 / 32768 scaling, the FFT peak of a resampled sine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile

from tts_core.constants import MAX_PROMPT_SECONDS, MIN_PROMPT_SECONDS
from tts_core.frontend.audio import check_prompt_audio, load_audio, resample


def _speechlike_int16(sample_rate: int, seconds: float = 2.0, channels: int = 1) -> np.ndarray:
    """A deterministic 'voiced' signal: 150 Hz harmonics under a 3 Hz envelope, int16 (N,) or (N, C)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    x = 0.25 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = np.round(x * 32767).astype(np.int16)
    if channels == 1:
        return x
    return np.stack([x, (x * 0.6).astype(np.int16)] + [x // 2] * (channels - 2), axis=1)


@pytest.fixture(scope="module")
def pcm22k() -> np.ndarray:
    return _speechlike_int16(22050)


# ----------------------------------------------------------------------------------------------
# load_audio
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_wav_rates_and_int16_scaling(tmp_path: Path, rate: int):
    pcm = _speechlike_int16(rate)
    path = tmp_path / f"x{rate}.wav"
    wavfile.write(path, rate, pcm)
    wav, sr = load_audio(path)
    assert sr == rate
    assert wav.dtype == np.float32 and wav.shape == pcm.shape
    np.testing.assert_array_equal(wav, pcm.astype(np.float32) / 32768.0)  # official: int16 / 32768


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_formats(tmp_path: Path, pcm22k: np.ndarray, fmt: str):
    ref = pcm22k.astype(np.float32) / 32768.0
    path = tmp_path / f"x.{fmt}"
    options = {"flac": {}, "ogg": {"subtype": "VORBIS"}, "mp3": {"format": "MP3"}}[fmt]
    sf.write(path, pcm22k, 22050, **options)
    wav, sr = load_audio(str(path))
    assert sr == 22050 and wav.dtype == np.float32 and wav.ndim == 1
    if fmt == "flac":
        np.testing.assert_array_equal(wav, ref)  # lossless
    else:
        n = min(wav.size, ref.size)
        assert abs(wav.size - ref.size) < 0.05 * ref.size
        assert np.corrcoef(wav[:n], ref[:n])[0, 1] > 0.99


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_fallback_for_containers_libsndfile_lacks(tmp_path: Path, pcm22k: np.ndarray):
    src = tmp_path / "x.wav"
    wavfile.write(src, 22050, pcm22k)
    m4a = tmp_path / "x.m4a"
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(src), "-c:a", "aac", str(m4a)]
    subprocess.run(cmd, check=True)
    with pytest.raises(sf.LibsndfileError):
        sf.read(m4a)  # the premise: libsndfile alone cannot read it
    for source in (m4a, m4a.read_bytes()):
        wav, sr = load_audio(source)
        assert sr == 22050
        ref = pcm22k.astype(np.float32) / 32768.0
        assert abs(wav.size - ref.size) < 0.1 * ref.size
        lag = int(np.argmax(np.correlate(wav[2048:6144], ref[2048:4096], mode="valid")))  # AAC priming
        n = min(ref.size, wav.size - lag) - 4096
        assert np.corrcoef(wav[lag : lag + n], ref[:n])[0, 1] > 0.98


def test_stereo_becomes_channel_mean(tmp_path: Path):
    pcm = _speechlike_int16(44100, channels=2)
    path = tmp_path / "stereo.wav"
    wavfile.write(path, 44100, pcm)
    wav, sr = load_audio(path)
    expected = (pcm.astype(np.float32) / 32768.0).mean(axis=1)
    assert sr == 44100
    np.testing.assert_allclose(wav, expected, rtol=0, atol=1e-7)
    # the same from bytes and from a Gradio tuple
    np.testing.assert_array_equal(load_audio(path.read_bytes())[0], wav)
    np.testing.assert_allclose(load_audio((44100, pcm))[0], expected, rtol=0, atol=1e-7)


def test_reference_stereo_wav(reference_dir: Path):
    path = reference_dir / "frontend" / "en_a_44k_stereo.wav"
    rate, pcm = wavfile.read(path)
    wav, sr = load_audio(path)
    assert sr == rate == 44100 and pcm.shape[1] == 2
    np.testing.assert_allclose(wav, pcm.astype(np.float32).mean(axis=1) / 32768.0, rtol=0, atol=1e-7)


def test_gradio_tuples():
    int16 = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    wav, sr = load_audio((16000, int16))
    assert sr == 16000
    np.testing.assert_array_equal(wav, [0.0, 0.5, -1.0, 32767 / 32768])
    int32 = np.array([0, 2**30, -(2**31)], dtype=np.int32)
    np.testing.assert_array_equal(load_audio((16000, int32))[0], [0.0, 0.5, -1.0])
    floats = np.array([0.1, -0.2], dtype=np.float64)
    out = load_audio((24000, floats))[0]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, floats.astype(np.float32))
    with pytest.raises(ValueError, match="channels"):
        load_audio((16000, np.zeros((2, 16000), dtype=np.int16)))  # (channels, N) is refused


def test_unreadable_inputs(tmp_path: Path, pcm22k: np.ndarray):
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 50)
    with pytest.raises(ValueError, match=r"notes\.txt is not readable audio"):
        load_audio(text)
    good = tmp_path / "good.wav"
    wavfile.write(good, 22050, pcm22k)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # cut inside the header
    with pytest.raises(ValueError, match=r"truncated\.wav is not readable audio"):
        load_audio(truncated)
    with pytest.raises(ValueError, match="not readable audio"):
        load_audio(b"\x00\x01garbage" * 100)
    with pytest.raises(ValueError, match="empty"):
        load_audio(b"")
    with pytest.raises(ValueError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="cannot load audio"):
        load_audio(12345)


# ----------------------------------------------------------------------------------------------
# check_prompt_audio
# ----------------------------------------------------------------------------------------------


def _tone(seconds: float, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_good_prompts_pass():
    check_prompt_audio(_tone(3.0), 16000)
    check_prompt_audio(_tone(MIN_PROMPT_SECONDS, 8000), 8000)
    check_prompt_audio(_tone(2.0, 192000), 192000)


@pytest.mark.parametrize(
    ("wav", "sr", "message"),
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros(48000, np.float32), 16000, "silent"),
        (_tone(3.0, amplitude=5e-4), 16000, "silent"),
        (_tone(0.5), 16000, "at least 1 s"),
        (_tone(MAX_PROMPT_SECONDS + 1.0), 16000, "at most 30 s"),
        (np.where(np.arange(48000) == 100, np.nan, _tone(3.0)).astype(np.float32), 16000, "NaN or infinite"),
        (np.where(np.arange(48000) == 7, np.inf, _tone(3.0)).astype(np.float32), 16000, "NaN or infinite"),
        (_tone(3.0, 4000), 4000, "4000 Hz is not supported"),
        (_tone(2.0, 200000), 200000, "200000 Hz is not supported"),
        (_tone(3.0, amplitude=20000.0), 16000, "outside"),
        (np.stack([_tone(3.0)] * 2, axis=1), 16000, "mono"),
        (np.zeros(48000, np.int16), 16000, "float samples"),
    ],
    ids=[
        "empty",
        "zeros",
        "too-quiet",
        "short",
        "long",
        "nan",
        "inf",
        "rate-low",
        "rate-high",
        "int-as-float",
        "2-D",
        "int16",
    ],
)
def test_bad_prompts_are_refused(wav: np.ndarray, sr: int, message: str):
    with pytest.raises(ValueError, match=message):
        check_prompt_audio(wav, sr)


# ----------------------------------------------------------------------------------------------
# resample
# ----------------------------------------------------------------------------------------------


def _peak_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    return float(np.fft.rfftfreq(wav.size, 1.0 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(("sr_in", "sr_out"), [(44100, 16000), (22050, 24000), (8000, 24000), (48000, 16000)])
def test_resampled_sine_keeps_frequency_level_and_length(sr_in: int, sr_out: int):
    freq, seconds = 1000.0, 2.0
    t = np.arange(int(sr_in * seconds)) / sr_in
    wav = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    out = resample(wav, sr_in, sr_out)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - wav.size * sr_out / sr_in) <= 1
    assert abs(_peak_hz(out, sr_out) - freq) <= 1.0 / seconds  # within one FFT bin
    core = slice(out.size // 10, -out.size // 10)  # away from the filter's edge transients
    assert np.sqrt(np.mean(out[core] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_removes_content_above_the_new_nyquist():
    sr_in, sr_out = 44100, 16000
    t = np.arange(sr_in) / sr_in
    wav = (0.5 * np.sin(2 * np.pi * 10000.0 * t)).astype(np.float32)  # above 8 kHz
    out = resample(wav, sr_in, sr_out)
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 1e-3  # no alias at 6 kHz


def test_resample_same_rate_is_a_copy():
    wav = _tone(1.0)
    out = resample(wav, 16000, 16000)
    np.testing.assert_array_equal(out, wav)
    assert out is not wav
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((2, 100), np.float32), 16000, 24000)
