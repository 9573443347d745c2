"""Objective distances between two renderings of the same speech tokens (before anyone listens).

Both renderings come from the same tokens, so they have the same length and are frame-aligned: no
time warping is done. ``a`` is the reference (e.g. float32 with 10 flow steps), ``b`` the tested
rendering. All functions take numpy arrays (or CPU tensors); audio is mono, shape (n_samples,)
(a leading axis of size 1 is accepted), float in [-1, 1].

:func:`compare` is the single entry point used by the app's difference view and by the batch
scorer of a test plan (one call per stimulus pair).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass

import numpy as np

SPECTRUM_FRAME_S = 0.040  # STFT window for LSD and MCD (960 samples at 24 kHz)
SPECTRUM_HOP_S = 0.010
POWER_FLOOR = 1e-10  # power floor before taking logs (audio in [-1, 1]); keeps silence finite
MCD_N_MELS = 80
MCD_ORDER = 24  # cepstral coefficients c1..c24 enter the distance; c0 (energy) does not
MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)  # dB per unit of Euclidean cepstral distance
F0_MIN_HZ = 50.0
F0_MAX_HZ = 550.0
F0_FRAME_S = 0.085  # pYIN window: at least two periods of F0_MIN_HZ
F0_HOP_S = 0.020  # one F0 value per mel frame (50 Hz)
LENGTH_TOLERANCE_S = 0.05  # longer length differences are refused (not renderings of one token sequence)
PESQ_SAMPLE_RATE = 16_000  # wide-band PESQ works on 16 kHz audio


@dataclass(frozen=True)
class ObjectiveDistances:
    """Distances of rendering b from reference a; None where not computable or not installed."""

    mel_l1: float | None  # mean |log-mel_a - log-mel_b| (natural-log mel of the model), when mels given
    lsd_db: float  # log-spectral distance, dB
    mcd_db: float  # mel-cepstral distortion, dB (variant: see mel_cepstral_distortion)
    f0_rmse_hz: float | None  # over frames voiced in both; None when no frame is
    f0_frames: int  # frames voiced in both
    pesq: float | None  # wide-band PESQ MOS-LQO, only when the `pesq` package is installed
    stoi: float | None  # STOI 0..1, only when the `pystoi` package is installed

    def to_dict(self) -> dict:
        return asdict(self)


def _mono(wav: object, name: str) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be mono audio of shape (n_samples,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _pair(wav_a: object, wav_b: object, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 of one common length (a few samples of difference are trimmed)."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    a, b = _mono(wav_a, "wav_a"), _mono(wav_b, "wav_b")
    if abs(a.size - b.size) > LENGTH_TOLERANCE_S * sr:
        raise ValueError(
            f"renderings differ in length ({a.size} vs {b.size} samples at {sr} Hz); distances need two "
            "renderings of the same speech tokens"
        )
    n = min(a.size, b.size)
    if n < round(SPECTRUM_FRAME_S * sr):
        raise ValueError(f"audio of {n} samples is shorter than one analysis frame ({SPECTRUM_FRAME_S} s)")
    return a[:n], b[:n]


def _frames(sr: int, frame_s: float, hop_s: float) -> tuple[int, int]:
    return int(round(frame_s * sr)), int(round(hop_s * sr))


def _power_spectrogram(x: np.ndarray, sr: int) -> np.ndarray:
    """|STFT|^2, shape (n_fft // 2 + 1, n_frames), Hann window, centred frames."""
    import librosa

    n_fft, hop = _frames(sr, SPECTRUM_FRAME_S, SPECTRUM_HOP_S)
    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True)) ** 2


def mel_l1(mel_a: object, mel_b: object) -> float:
    """Mean absolute difference of two log-mel spectrograms, shape (n_mels, n_frames) each.

    The model's mels are already natural-log magnitudes, so this is in log units (nats).
    """
    a, b = np.squeeze(np.asarray(mel_a, dtype=np.float64)), np.squeeze(np.asarray(mel_b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"mel shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean(np.abs(a - b)))


def log_spectral_distance(wav_a: object, wav_b: object, sr: int) -> float:
    """Log-spectral distance in dB.

    Per frame: sqrt(mean over frequency bins of (10 log10 P_a - 10 log10 P_b)^2), then the mean
    over frames. P is the STFT power (floored at POWER_FLOOR). A gain g on one signal gives exactly
    |20 log10 g| dB.
    """
    a, b = _pair(wav_a, wav_b, sr)
    la = 10.0 * np.log10(np.maximum(_power_spectrogram(a, sr), POWER_FLOOR))
    lb = 10.0 * np.log10(np.maximum(_power_spectrogram(b, sr), POWER_FLOOR))
    return float(np.mean(np.sqrt(np.mean((la - lb) ** 2, axis=0))))


def mel_cepstrum(wav: np.ndarray, sr: int, order: int = MCD_ORDER) -> np.ndarray:
    """Mel cepstrum c0..c_order per frame, shape (order + 1, n_frames).

    Variant (MFCC-style, no all-pass warping as in SPTK's mcep): an MCD_N_MELS-band mel filterbank
    (librosa, Slaney) on the STFT power, natural log of the band AMPLITUDES (0.5 ln power), then an
    orthonormal DCT-II over bands.
    """
    import librosa
    from scipy.fft import dct

    mel_basis = librosa.filters.mel(
        sr=sr, n_fft=_frames(sr, SPECTRUM_FRAME_S, SPECTRUM_HOP_S)[0], n_mels=MCD_N_MELS
    )
    mel_power = mel_basis @ _power_spectrogram(wav, sr)
    log_amplitude = 0.5 * np.log(np.maximum(mel_power, POWER_FLOOR))
    return dct(log_amplitude, type=2, norm="ortho", axis=0)[: order + 1]


def mel_cepstral_distortion(wav_a: object, wav_b: object, sr: int) -> float:
    """MCD in dB: mean over frames of (10 / ln 10) * sqrt(2 * sum_{k=1..24} (c_a,k - c_b,k)^2).

    Cepstra from :func:`mel_cepstrum`; c0 (overall level) is left out, so a pure gain change gives 0.
    Frames are aligned one to one (same tokens), silent frames included.
    """
    a, b = _pair(wav_a, wav_b, sr)
    diff = mel_cepstrum(a, sr)[1:] - mel_cepstrum(b, sr)[1:]
    return float(np.mean(MCD_CONSTANT * np.sqrt(np.sum(diff**2, axis=0))))


def f0_track(wav: np.ndarray, sr: int) -> np.ndarray:
    """F0 in Hz per F0_HOP_S frame from librosa's pYIN, NaN where unvoiced; shape (n_frames,)."""
    import librosa

    frame, hop = _frames(sr, F0_FRAME_S, F0_HOP_S)
    f0, _, _ = librosa.pyin(wav, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=sr, frame_length=frame, hop_length=hop)
    return f0


def _f0_difference(a: np.ndarray, b: np.ndarray, sr: int) -> tuple[float | None, int]:
    fa, fb = f0_track(a, sr), f0_track(b, sr)
    both = np.isfinite(fa) & np.isfinite(fb)
    if not both.any():
        return None, 0
    return float(np.sqrt(np.mean((fa[both] - fb[both]) ** 2))), int(both.sum())


def f0_rmse(wav_a: object, wav_b: object, sr: int) -> float | None:
    """RMS difference of F0 in Hz over frames voiced in both (pYIN); None when no frame is."""
    a, b = _pair(wav_a, wav_b, sr)
    return _f0_difference(a, b, sr)[0]


def optional_metric_available(package: str) -> bool:
    """True when ``pesq`` or ``pystoi`` can be imported (they are not project requirements)."""
    return importlib.util.find_spec(package) is not None


def pesq_wb(wav_a: object, wav_b: object, sr: int) -> float | None:
    """Wide-band PESQ of b against reference a at 16 kHz; None without the `pesq` package.

    NOTE: not exercised here (the package is not a requirement); API of pesq >= 0.0.4.
    """
    if not optional_metric_available("pesq"):
        return None
    import soxr
    from pesq import PesqError, pesq

    a, b = _pair(wav_a, wav_b, sr)
    if sr != PESQ_SAMPLE_RATE:
        a, b = soxr.resample(a, sr, PESQ_SAMPLE_RATE), soxr.resample(b, sr, PESQ_SAMPLE_RATE)
    try:
        return float(pesq(PESQ_SAMPLE_RATE, a.astype(np.float32), b.astype(np.float32), "wb"))
    except PesqError:  # e.g. no utterance detected in a silent reference
        return None


def stoi(wav_a: object, wav_b: object, sr: int) -> float | None:
    """STOI of b against reference a; None without the `pystoi` package."""
    if not optional_metric_available("pystoi"):
        return None
    from pystoi import stoi as _stoi

    a, b = _pair(wav_a, wav_b, sr)
    return float(_stoi(a, b, sr, extended=False))


def compare(
    result_a_audio: object, result_b_audio: object, sr: int, mel_a: object = None, mel_b: object = None
) -> ObjectiveDistances:
    """Every distance of rendering b from reference a (same tokens); mel_l1 only when both mels are given.

    result_*_audio: (n_samples,) mono audio at ``sr``; mel_*: (n_mels, n_frames) log-mels.
    """
    a, b = _pair(result_a_audio, result_b_audio, sr)
    f0, n_f0 = _f0_difference(a, b, sr)
    return ObjectiveDistances(
        mel_l1=mel_l1(mel_a, mel_b) if mel_a is not None and mel_b is not None else None,
        lsd_db=log_spectral_distance(a, b, sr),
        mcd_db=mel_cepstral_distortion(a, b, sr),
        f0_rmse_hz=f0,
        f0_frames=n_f0,
        pesq=pesq_wb(a, b, sr),
        stoi=stoi(a, b, sr),
    )
