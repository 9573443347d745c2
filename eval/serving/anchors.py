"""The MUSHRA low anchor: a clip low-passed at 3.5 kHz (ITU-R BS.1534-3), kept in the clip bank.

A listener who rates this anchor above the unfiltered baseline is not hearing (or not reading) the
scale; eval/statistics/screening.py flags them. The filter is a zero-phase Butterworth low-pass (order 8
each way, so -48 dB/octave and no delay against the original).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from scipy import signal

from eval.serving.clipbank import Clip, ClipBank
from eval.serving.conditions import LOWPASS_CUTOFF_HZ

LOWPASS_ORDER = 8
LOWPASS_KEY_VERSION = 1


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float = LOWPASS_CUTOFF_HZ) -> np.ndarray:
    """``audio`` (N,) low-passed at ``cutoff_hz`` without phase shift; (N,) float32."""
    sos = signal.butter(LOWPASS_ORDER, cutoff_hz, btype="lowpass", fs=sample_rate, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(audio, dtype=np.float64)).astype(np.float32)


def lowpass_key(base_key: str, cutoff_hz: int = LOWPASS_CUTOFF_HZ) -> str:
    doc = {"lowpass_key_version": LOWPASS_KEY_VERSION, "of": base_key, "cutoff_hz": cutoff_hz, "order": LOWPASS_ORDER}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def lowpass_clip(bank: ClipBank, base: Clip, label: str, cutoff_hz: int = LOWPASS_CUTOFF_HZ) -> Clip:
    """The low-passed copy of ``base`` in ``bank`` under :func:`lowpass_key` (made once)."""
    key = lowpass_key(base.key, cutoff_hz)
    existing = bank.get(key)
    if existing is not None:
        return existing
    audio, rate = base.read()
    meta = {
        **{k: v for k, v in base.meta.items() if k not in ("key", "loudness", "n_samples", "sample_rate")},
        "config": label,
        "source": "lowpass",
        "lowpass_of": base.key,
        "lowpass_cutoff_hz": cutoff_hz,
    }
    return bank.put_audio(key, lowpass(audio, rate, cutoff_hz), rate, meta)
