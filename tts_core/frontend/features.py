"""Acoustic features of the CosyVoice2 frontend, in plain torch (float32, CPU-deterministic).

Three feature types feed the three prompt models:

* :func:`whisper_log_mel_128`: whisper's 128-bin log-mel (16 kHz) -> speech_tokenizer_v2.onnx
* :func:`kaldi_fbank_80` / :func:`campplus_input`: Kaldi 80-bin log filterbank (16 kHz), mean-normalised
  over time -> campplus.onnx
* :func:`prompt_mel_80`: Matcha's 80-bin natural-log mel (24 kHz, 50 Hz frames) -> the flow's prompt mel

Each follows the documented definition of the library the official frontend calls (openai-whisper,
torchaudio.compliance.kaldi, Matcha-TTS); neither whisper nor torchaudio is needed here. The filterbanks
are built on first use and cached; nothing is computed at import time.
"""

from __future__ import annotations

import math
from functools import cache

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from tts_core.constants import MEL_HOP, N_MELS, SAMPLE_RATE, TOKENIZER_SAMPLE_RATE

# --- whisper log-mel (speech tokenizer input) ---
WHISPER_N_FFT = 400  # 25 ms at 16 kHz
WHISPER_HOP = 160  # 10 ms -> 100 frames/s
WHISPER_N_MELS = 128  # speech_tokenizer_v2 uses whisper-large-v3's 128-bin filters
WHISPER_LOG_FLOOR = 1e-10  # power floor before log10
WHISPER_DYNAMIC_RANGE = 8.0  # log10 units kept below the utterance maximum (80 dB)

# --- Kaldi fbank (campplus input), torchaudio.compliance.kaldi.fbank defaults ---
KALDI_FRAME_LENGTH = 400  # 25 ms at 16 kHz
KALDI_FRAME_SHIFT = 160  # 10 ms
KALDI_N_FFT = 512  # frame length rounded up to a power of two
KALDI_N_MELS = 80
KALDI_PREEMPHASIS = 0.97
KALDI_POVEY_POWER = 0.85  # povey window = symmetric Hann ** 0.85
KALDI_LOW_FREQ = 20.0  # Hz; high_freq 0 means Nyquist
KALDI_LOG_FLOOR = float(torch.finfo(torch.float32).eps)

# --- Matcha mel (prompt mel for the flow), as configured in cosyvoice2.yaml ---
PROMPT_N_FFT = 1920  # 80 ms at 24 kHz
PROMPT_WIN = 1920
PROMPT_HOP = MEL_HOP  # 480 samples = 20 ms -> 50 frames/s
PROMPT_FMIN = 0.0
PROMPT_FMAX = 8000.0
PROMPT_MAG_EPS = 1e-9  # added inside the sqrt of the magnitude
PROMPT_LOG_FLOOR = 1e-5  # magnitude floor before ln


def _as_wave(name: str, wav: torch.Tensor | np.ndarray, min_samples: int) -> torch.Tensor:
    """A 1-D float32 CPU tensor from (N,) or (1, N) audio; ValueError when it is too short."""
    x = torch.as_tensor(wav)
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1:
        raise ValueError(f"{name} expects mono audio of shape (N,) or (1, N), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} expects float samples in [-1, 1], got {x.dtype}")
    if x.numel() < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {x.numel()}")
    return x.detach().to("cpu", torch.float32).contiguous()


# ----------------------------------------------------------------------------------------------
# Filterbanks and windows (built once)
# NOTE: cached tensors are shared between calls; never modify them in place.
# ----------------------------------------------------------------------------------------------


@cache
def whisper_mel_filters() -> torch.Tensor:
    """(128, 201) float32: librosa slaney mel filters for 16 kHz / n_fft 400 (= whisper's mel_128)."""
    fb = librosa.filters.mel(sr=TOKENIZER_SAMPLE_RATE, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS)
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


@cache
def prompt_mel_basis() -> torch.Tensor:
    """(80, 961) float32: librosa slaney mel basis for 24 kHz / n_fft 1920 / 0-8000 Hz (Matcha's)."""
    fb = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=PROMPT_N_FFT, n_mels=N_MELS, fmin=PROMPT_FMIN, fmax=PROMPT_FMAX
    )
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


def _kaldi_mel(freq_hz: torch.Tensor) -> torch.Tensor:
    """Kaldi's mel scale, 1127 ln(1 + f / 700) (natural log), on a float32 tensor of frequencies.

    NOTE: the log is taken in float64 and rounded to float32, i.e. a correctly rounded float32 log.
    torch's vectorised float32 log is one ulp off for some inputs on some CPUs (here: AMD EPYC,
    AVX512), which moves bank weights by up to 7e-6; this way the banks equal the reference ones bit
    for bit on any machine.
    """
    ratio = 1.0 + freq_hz / 700.0  # float32, as torchaudio computes it
    return 1127.0 * ratio.double().log().float()


@cache
def kaldi_mel_banks() -> torch.Tensor:
    """(80, 257) float32: Kaldi triangular mel banks (20 Hz - Nyquist) incl. a zero Nyquist column.

    The triangles are equally spaced on Kaldi's mel scale and evaluated at the mel value of each FFT
    bin (they are triangles in mel, not in Hz).
    NOTE: the band edges are float64 scalars and the per-bin values float32 tensors, the precision mix
    of torchaudio's get_mel_banks; computing everything in float64 moves the banks by ~1e-5.
    """
    n_bins = KALDI_N_FFT // 2  # the Nyquist bin gets no weight in Kaldi
    bin_width = TOKENIZER_SAMPLE_RATE / KALDI_N_FFT
    mel_low = 1127.0 * math.log(1.0 + KALDI_LOW_FREQ / 700.0)
    mel_high = 1127.0 * math.log(1.0 + (TOKENIZER_SAMPLE_RATE / 2) / 700.0)
    mel_step = (mel_high - mel_low) / (KALDI_N_MELS + 1)

    index = torch.arange(KALDI_N_MELS).unsqueeze(1)  # (80, 1) int64 -> float32 below
    left = mel_low + index * mel_step
    centre = mel_low + (index + 1.0) * mel_step
    right = mel_low + (index + 2.0) * mel_step
    bin_mel = _kaldi_mel(bin_width * torch.arange(n_bins, dtype=torch.float32)).unsqueeze(0)  # (1, 256)

    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (80, 256)
    return F.pad(banks, (0, 1))  # (80, 257)


@cache
def _hann(length: int, periodic: bool) -> torch.Tensor:
    return torch.hann_window(length, periodic=periodic, dtype=torch.float32)


@cache
def _povey_window() -> torch.Tensor:
    return _hann(KALDI_FRAME_LENGTH, periodic=False).pow(KALDI_POVEY_POWER)


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------


def whisper_log_mel_128(wav16k: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Whisper's log-mel spectrogram with 128 bins: the speech tokenizer input.

    wav16k: (N,) float32 in [-1, 1] at 16 kHz.  Returns (128, N // 160) float32.

    Periodic-Hann STFT (n_fft 400, hop 160, centred with reflect padding), the last frame dropped,
    power spectrum, slaney mel, log10 with a 1e-10 floor, clipped to 8 below the utterance maximum,
    then scaled as (x + 4) / 4.
    """
    x = _as_wave("whisper_log_mel_128", wav16k, WHISPER_N_FFT // 2 + 1)
    spec = torch.stft(
        x,
        WHISPER_N_FFT,
        hop_length=WHISPER_HOP,
        window=_hann(WHISPER_N_FFT, periodic=True),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (201, N // 160 + 1)
    power = spec[:, :-1].abs() ** 2  # whisper drops the last (padding-only) frame
    log_spec = torch.clamp(whisper_mel_filters() @ power, min=WHISPER_LOG_FLOOR).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - WHISPER_DYNAMIC_RANGE)
    return (log_spec + 4.0) / 4.0


def kaldi_fbank_80(wav16k: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Kaldi log mel filterbank, 80 bins, as ``torchaudio.compliance.kaldi.fbank(num_mel_bins=80, dither=0)``.

    wav16k: (N,) float32 in [-1, 1] at 16 kHz (NOT scaled to int16 range, as the official frontend).
    Returns (T, 80) float32 with T = 1 + (N - 400) // 160 (snip_edges: only whole frames).

    Per frame: remove the DC offset, pre-emphasis 0.97 (the first sample is its own predecessor), povey
    window, zero-pad to 512, power spectrum, mel banks, natural log with a float32-eps floor.
    """
    x = _as_wave("kaldi_fbank_80", wav16k, KALDI_FRAME_LENGTH)
    frames = x.unfold(0, KALDI_FRAME_LENGTH, KALDI_FRAME_SHIFT)  # (T, 400), a strided view
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - KALDI_PREEMPHASIS * previous) * _povey_window()
    power = torch.fft.rfft(frames, n=KALDI_N_FFT).abs().pow(2.0)  # (T, 257)
    energies = power @ kaldi_mel_banks().T  # (T, 80)
    return torch.clamp(energies, min=KALDI_LOG_FLOOR).log()


def campplus_input(wav16k: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(T, 80) float32: :func:`kaldi_fbank_80` minus its mean over time (campplus.onnx takes it as (1, T, 80))."""
    fbank = kaldi_fbank_80(wav16k)
    return fbank - fbank.mean(dim=0, keepdim=True)


def prompt_mel_80(wav24k: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Matcha's mel spectrogram as CosyVoice2's ``feat_extractor``: the flow's prompt mel.

    wav24k: (N,) float32 in [-1, 1] at 24 kHz.  Returns (N // 480, 80) float32 (time first, 50 Hz).

    Reflect-pad 720 samples each side, periodic-Hann STFT (n_fft = win = 1920, hop 480, not centred),
    magnitude sqrt(re^2 + im^2 + 1e-9), slaney mel 0-8000 Hz, natural log with a 1e-5 floor.
    """
    pad = (PROMPT_N_FFT - PROMPT_HOP) // 2
    x = _as_wave("prompt_mel_80", wav24k, pad + 1)
    # NOTE: reflect padding needs a batch/channel view in F.pad; the signal must be longer than pad.
    y = F.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(
        y,
        PROMPT_N_FFT,
        hop_length=PROMPT_HOP,
        win_length=PROMPT_WIN,
        window=_hann(PROMPT_WIN, periodic=True),
        center=False,
        return_complex=True,
    )  # (961, N // 480)
    magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + PROMPT_MAG_EPS)
    mel = prompt_mel_basis() @ magnitude  # (80, T)
    return torch.clamp(mel, min=PROMPT_LOG_FLOOR).log().T.contiguous()
