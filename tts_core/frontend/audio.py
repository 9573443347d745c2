"""Loading, resampling and checking voice-prompt audio (numpy, mono float32 in [-1, 1]).

* :func:`load_audio` reads a file path, raw file bytes, or a Gradio ``(sample_rate, array)`` tuple and
  returns mono float32 at the native rate, scaled like the official ``load_wav`` (int16 / 32768, mean
  over channels).
* :func:`resample` converts between rates with soxr.
* :func:`check_prompt_audio` refuses prompts the model cannot use, with a message meant for the user.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tts_core.constants import MAX_PROMPT_SECONDS, MIN_PROMPT_SECONDS

MIN_SAMPLE_RATE = 8_000  # Hz: below this a prompt has no usable speech band
MAX_SAMPLE_RATE = 192_000  # Hz: the highest rate audio hardware records at
MAX_CHANNELS = 8  # a 2-D array with more "channels" than this is most likely (channels, N)
SILENCE_PEAK = 1e-3  # peak below -60 dBFS: nothing audible to clone
SILENCE_RMS = 1e-4  # RMS below -80 dBFS: essentially digital silence
MAX_FLOAT_PEAK = 2.0  # float samples far beyond [-1, 1] are integer PCM mislabelled as float
# soxr's "very high quality" preset: linear phase, ~175 dB stop band, passband to ~0.91 of the lower
# Nyquist. The official code uses torchaudio's windowed-sinc Resample; no resampler matches it sample
# for sample (see the reference README section 6), and a high-quality band-limited one is the best
# stand-in for both 16 kHz and 24 kHz targets.
RESAMPLE_QUALITY = "VHQ"
FFMPEG_TIMEOUT_S = 120  # decoding a 30 s prompt takes well under a second

# Integer PCM full scale: the official loader divides int16 by 32768 (not 32767).
_INT_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | tuple


def _to_mono_float32(data: np.ndarray, what: str) -> np.ndarray:
    """(N,) or (N, channels) int/float samples -> (N,) float32 in [-1, 1] (channel mean)."""
    data = np.asarray(data)
    if data.ndim == 2 and data.shape[1] > MAX_CHANNELS:
        raise ValueError(
            f"{what}: expected audio of shape (N,) or (N, channels), got {data.shape} "
            "(is it (channels, N)? transpose it)"
        )
    if data.ndim not in (1, 2):
        raise ValueError(f"{what}: expected audio of shape (N,) or (N, channels), got {data.shape}")
    if data.dtype in _INT_FULL_SCALE:
        samples = data.astype(np.float32) / np.float32(_INT_FULL_SCALE[data.dtype])
    elif data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        samples = (data.astype(np.float32) - 128.0) / np.float32(128.0)
    elif np.issubdtype(data.dtype, np.floating):
        samples = data.astype(np.float32, copy=False)
    else:
        raise ValueError(f"{what}: unsupported sample type {data.dtype} (use int16, int32 or float)")
    if samples.ndim == 2:
        # NOTE: average in float32 after scaling, as the official loader does (mean over channels).
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _read_with_soundfile(data: Path | bytes) -> tuple[np.ndarray, int]:
    handle = io.BytesIO(data) if isinstance(data, bytes) else data
    samples, sample_rate = sf.read(handle, dtype="float32", always_2d=True)
    return samples, int(sample_rate)


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode any format ffmpeg knows (mp3 without libsndfile support, m4a, webm...) to float WAV."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path)]
        cmd += ["-map", "0:a:0", "-c:a", "pcm_f32le", str(out)]
        result = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        if result.returncode != 0 or not out.is_file():
            raise RuntimeError(result.stderr.decode(errors="replace").strip()[-300:] or "ffmpeg failed")
        return _read_with_soundfile(out)


def _decode(source: Path | bytes, name: str) -> tuple[np.ndarray, int]:
    try:
        return _read_with_soundfile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
        first_error = sf_error
    # libsndfile does not know the container: let ffmpeg try (it needs a file for seekable formats).
    try:
        if isinstance(source, bytes):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "upload"
                path.write_bytes(source)
                return _read_with_ffmpeg(path)
        return _read_with_ffmpeg(source)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, sf.LibsndfileError) as ff_error:
        raise ValueError(
            f"{name} is not readable audio (soundfile: {first_error}; ffmpeg: {ff_error}). "
            "Use a WAV, FLAC, OGG or MP3 file."
        ) from ff_error


def load_audio(source: AudioSource) -> tuple[np.ndarray, int]:
    """Read prompt audio as mono float32 in [-1, 1] at its native sample rate.

    source: a file path (wav/flac/ogg/mp3 through libsndfile, other containers through ffmpeg), the
    bytes of such a file, or a Gradio ``(sample_rate, array)`` tuple with array (N,) or (N, channels)
    of int16 / int32 / float. Integer PCM is divided by its full scale (int16 / 32768, as the official
    loader); several channels are averaged. Returns ``(wav (N,) float32, sample_rate)``.
    Raises ValueError naming the input when it is missing or not readable audio.
    """
    if isinstance(source, tuple):
        if len(source) != 2 or not isinstance(source[0], int | np.integer):
            raise ValueError("audio tuple must be (sample_rate: int, samples: np.ndarray), as Gradio gives")
        sample_rate, data = int(source[0]), source[1]
        return _to_mono_float32(data, "audio array"), sample_rate
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ValueError("the uploaded audio is empty (0 bytes)")
        samples, sample_rate = _decode(data, "the uploaded data")
        return _to_mono_float32(samples, "the uploaded data"), sample_rate
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"audio file {path} does not exist")
        samples, sample_rate = _decode(path, f"file {path}")
        return _to_mono_float32(samples, str(path)), sample_rate
    raise ValueError(f"cannot load audio from a {type(source).__name__}; give a path, bytes or (sr, array)")


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of mono audio with soxr (quality ``RESAMPLE_QUALITY``).

    wav: (N,) float. Returns (round(N * sr_out / sr_in),) float32; a copy when the rates are equal.
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"resample expects mono audio of shape (N,), got {wav.shape}")
    if int(sr_in) <= 0 or int(sr_out) <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    wav = wav.astype(np.float32, copy=True)
    if int(sr_in) == int(sr_out) or wav.size == 0:
        return wav
    return np.ascontiguousarray(soxr.resample(wav, int(sr_in), int(sr_out), quality=RESAMPLE_QUALITY))


def check_prompt_audio(wav: np.ndarray, sample_rate: int) -> None:
    """Raise ValueError with a user-facing message when the prompt cannot be used.

    wav: (N,) float32 in [-1, 1] as :func:`load_audio` returns. Refused: a sample rate outside
    8-192 kHz, empty or non-finite audio, float samples far outside [-1, 1], silence (peak below
    -60 dBFS or RMS below -80 dBFS), and durations outside MIN/MAX_PROMPT_SECONDS.
    """
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"The prompt's sample rate {sample_rate} Hz is not supported: "
            f"use audio recorded at {MIN_SAMPLE_RATE // 1000}-{MAX_SAMPLE_RATE // 1000} kHz."
        )
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"The prompt must be mono audio of shape (N,), got {wav.shape}; use load_audio.")
    if wav.size == 0:
        raise ValueError("The prompt audio is empty: record or upload at least a few seconds of speech.")
    if not np.issubdtype(wav.dtype, np.floating):
        raise ValueError(f"The prompt must hold float samples in [-1, 1], got {wav.dtype}; use load_audio.")
    if not np.isfinite(wav).all():
        raise ValueError("The prompt audio contains NaN or infinite samples: the file is damaged.")
    peak = float(np.abs(wav).max())
    if peak > MAX_FLOAT_PEAK:
        raise ValueError(
            f"The prompt's samples reach {peak:.3g}, far outside [-1, 1]: "
            "integer PCM passed as float? Divide by 32768 or use load_audio."
        )
    seconds = wav.size / float(sample_rate)
    if seconds < MIN_PROMPT_SECONDS:
        raise ValueError(
            f"The prompt is only {seconds:.2f} s long: it needs at least {MIN_PROMPT_SECONDS:g} s of speech "
            "(3-10 s works best)."
        )
    if seconds > MAX_PROMPT_SECONDS:
        raise ValueError(
            f"The prompt is {seconds:.1f} s long: at most {MAX_PROMPT_SECONDS:g} s is supported "
            "(the speech tokenizer's limit). Trim it to 3-10 s of speech."
        )
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if peak < SILENCE_PEAK or rms < SILENCE_RMS:
        level = 20.0 * np.log10(max(peak, 1e-12))
        raise ValueError(
            f"The prompt audio is silent (peak {level:.0f} dBFS): check the microphone or the file."
        )
