"""The copy of a clip that one listener's browser receives for one trial, made fresh every time.

Every served file is new bytes under a new name: the clip at the stimulus loudness, placed after a
random lead-in of up to :data:`LEAD_MAX_S` of silence, padded with silence to the stimulus length
(the longest clip of that text and prompt over every condition of the plan, plus the largest
lead-in), with TPDF dither at the 16-bit step added. So neither a file's hash, its URL (gradio
names cached files by their content hash), its size, its duration nor a sample-by-sample
difference links two servings of one clip, and the two clips of a trial are equally long.
The dither is 1 LSB of 16-bit PCM (about -96 dBFS), far below anything a listener can hear.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import soundfile as sf

from abapp.context import fresh_temp_dir

SERVED_DIRNAME = "cosyvoice2-ab-served"
SERVED_FILE_NAME = "audio.wav"
LEAD_MAX_S = 0.05  # s: largest random silence before the clip
PCM16_STEP = 1.0 / 32768.0  # one 16-bit quantisation step, in full scale
SEED_BITS = 128


def served_length(longest_samples: int, sample_rate: int) -> int:
    """Samples of every served clip of a stimulus whose longest clip has ``longest_samples``."""
    return int(longest_samples) + round(LEAD_MAX_S * sample_rate)


def served_audio(audio: np.ndarray, sample_rate: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``audio`` (N,) after a random lead-in, padded to ``length`` samples, dithered; (length,) float32."""
    lead_max = length - audio.shape[0]
    if lead_max < 0:
        raise ValueError(f"a clip of {audio.shape[0]} samples does not fit a stimulus of {length}")
    lead = int(rng.integers(0, min(lead_max, round(LEAD_MAX_S * sample_rate)) + 1))
    out = np.zeros(length, dtype=np.float64)
    out[lead : lead + audio.shape[0]] = audio
    out += (rng.random(length) - rng.random(length)) * PCM16_STEP  # TPDF dither, +-1 step
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def write_served(audio: np.ndarray, sample_rate: int, length: int) -> str:
    """A fresh served copy of ``audio`` (N,) in a new folder; returns its path."""
    rng = np.random.default_rng(secrets.randbits(SEED_BITS))
    path = Path(fresh_temp_dir(SERVED_DIRNAME)) / SERVED_FILE_NAME
    sf.write(path, served_audio(audio, sample_rate, length, rng), sample_rate, subtype="PCM_16", format="WAV")
    return str(path)
