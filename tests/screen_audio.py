"""Real speech for the screen's tests: flite / espeak-ng clips made on the spot, and degradations.

NOTE: the degradations are textbook signal processing (white Gaussian noise at a given SNR, hard
clipping after a gain), so the screen is tested against what the clips are, not against itself.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HAVE_SPEECH_TOOLS = bool(shutil.which("flite") and shutil.which("espeak-ng"))
needs_speech_tools = pytest.mark.skipif(
    not HAVE_SPEECH_TOOLS, reason="flite/espeak-ng not installed (.ci/run installs them)"
)


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=False)
    return audio, int(rate)


def flite(text: str, voice: str = "slt") -> tuple[np.ndarray, int]:
    """(audio (N,) float32, sample rate) of flite speaking ``text`` with ``voice``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(
            ["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True
        )
        return _read(path)


def espeak(text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """(audio (N,) float32, sample rate) of espeak-ng speaking ``text`` with ``voice``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
        return _read(path)


def with_white_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """audio plus white Gaussian noise whose power is the speech power minus ``snr_db`` dB."""
    rng = np.random.default_rng(seed)
    noise_power = float(np.mean(audio.astype(np.float64) ** 2)) / 10 ** (snr_db / 10)
    noisy = audio + rng.standard_normal(audio.size) * np.sqrt(noise_power)
    return np.clip(noisy, -1.0, 1.0).astype(np.float32)


def hard_clipped(audio: np.ndarray, gain: float = 20.0, level: float = 0.5) -> np.ndarray:
    """audio times ``gain``, flattened at +-``level`` (a gain error into a clamp)."""
    return np.clip(audio * gain, -level, level).astype(np.float32)


def trim_silence(audio: np.ndarray, rel: float = 0.01) -> np.ndarray:
    """Leading and trailing samples below ``rel`` of the peak removed (flite pads its clips)."""
    loud = np.flatnonzero(np.abs(audio) >= rel * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1]
