"""Loudness matching of listening-test stimuli: ITU-R BS.1770 integrated loudness and true peak.

Louder clips are preferred in listening tests, so every clip a listener hears is brought to one
stated integrated loudness (``TARGET_LUFS``, the EBU R 128 programme level) by a single gain, never
above a true-peak ceiling (``TRUE_PEAK_CEILING_DBTP``). The gain is what changes; the waveform's
shape is not touched (no limiter, no compressor), so a clip whose gain would push its true peak over
the ceiling gets the largest gain that does not, and is marked ``peak_limited``.

* integrated loudness: ``pyloudnorm`` (ITU-R BS.1770-4: K-weighting, 400 ms blocks, 75 % overlap,
  absolute gate -70 LUFS, relative gate -10 LU);
* true peak: BS.1770-4 Annex 2, the signal oversampled 4x (polyphase FIR, ``scipy.signal``) and its
  largest absolute value in dB relative to full scale.

The objective distances and the quality screen use the audio as synthesised; only what is played
to a listener is normalised.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib.metadata import version

import numpy as np
import pyloudnorm
from scipy import signal

TARGET_LUFS = -23.0  # LUFS: integrated loudness of every stimulus (EBU R 128)
TRUE_PEAK_CEILING_DBTP = -1.0  # dBTP: no stimulus's true peak above this (EBU R 128)
TRUE_PEAK_OVERSAMPLING = 4  # BS.1770-4 Annex 2: 4x at 48 kHz (more at lower rates is not needed for speech)
BLOCK_SECONDS = 0.4  # BS.1770 gating block; shorter audio is measured zero-padded to one block
STANDARD = f"ITU-R BS.1770-4 (pyloudnorm {version('pyloudnorm')})"
SILENT_LUFS = -70.0  # BS.1770 absolute gate: below this a clip has no measurable loudness


@dataclass(frozen=True)
class LoudnessLevel:
    """Integrated loudness (LUFS; -inf when silent) and true peak (dBTP; -inf when all zeros)."""

    lufs: float
    true_peak_dbtp: float


@dataclass(frozen=True)
class LoudnessMatch:
    """How a clip was brought to the target: measured before, the gain, measured after."""

    target_lufs: float
    ceiling_dbtp: float
    before_lufs: float
    before_true_peak_dbtp: float
    gain_db: float
    after_lufs: float
    after_true_peak_dbtp: float
    peak_limited: bool  # the ceiling, not the target, set the gain (the clip is quieter than the target)
    silent: bool  # no measurable loudness: played unchanged
    standard: str = STANDARD

    @property
    def gain(self) -> float:
        """The linear gain factor."""
        return float(10.0 ** (self.gain_db / 20.0))

    def to_meta(self) -> dict:
        """JSON-safe dict for a clip sidecar (-inf written as null)."""
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: dict) -> LoudnessMatch:
        values = {k: (float("-inf") if v is None else v) for k, v in meta.items()}
        return cls(**values)


def _mono(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"loudness is measured on mono audio (N,), got shape {arr.shape}")
    return arr


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness of mono ``audio`` (N,) in LUFS; -inf when below the gate."""
    x = _mono(audio)
    need = int(math.ceil(BLOCK_SECONDS * sample_rate)) + 1
    if x.size < need:  # pyloudnorm needs one full block; silence adds no energy above the gate
        x = np.pad(x, (0, need - x.size))
    lufs = float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))
    return lufs if math.isfinite(lufs) and lufs >= SILENT_LUFS else float("-inf")


def true_peak_dbtp(audio: np.ndarray, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """BS.1770-4 Annex 2 true peak of mono ``audio`` (N,): max |x| after 4x oversampling, in dBTP."""
    x = _mono(audio)
    if x.size == 0 or not np.any(x):
        return float("-inf")
    up = signal.resample_poly(x, oversampling, 1)
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(x))))
    return 20.0 * math.log10(peak)


def measure(audio: np.ndarray, sample_rate: int) -> LoudnessLevel:
    return LoudnessLevel(integrated_loudness(audio, sample_rate), true_peak_dbtp(audio))


def plan_gain(
    before: LoudnessLevel, target_lufs: float = TARGET_LUFS, ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP
) -> tuple[float, bool, bool]:
    """(gain in dB, peak limited, silent) that brings ``before`` to the target under the ceiling."""
    if not math.isfinite(before.lufs):
        return 0.0, False, True
    gain = target_lufs - before.lufs
    if before.true_peak_dbtp + gain > ceiling_dbtp:
        return ceiling_dbtp - before.true_peak_dbtp, True, False
    return gain, False, False


def match(
    audio: np.ndarray,
    sample_rate: int,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
) -> tuple[np.ndarray, LoudnessMatch]:
    """(audio (N,) float32 at the target loudness, the record of how). The input is not modified."""
    before = measure(audio, sample_rate)
    gain_db, limited, silent = plan_gain(before, target_lufs, ceiling_dbtp)
    out = (np.asarray(audio, dtype=np.float64) * 10.0 ** (gain_db / 20.0)).astype(np.float32)
    after = measure(out, sample_rate)
    return out, LoudnessMatch(
        target_lufs=float(target_lufs),
        ceiling_dbtp=float(ceiling_dbtp),
        before_lufs=before.lufs,
        before_true_peak_dbtp=before.true_peak_dbtp,
        gain_db=float(gain_db),
        after_lufs=after.lufs,
        after_true_peak_dbtp=after.true_peak_dbtp,
        peak_limited=limited,
        silent=silent,
    )


def describe(record: LoudnessMatch) -> str:
    """One line for the UI: before -> after, and why when the target was not reached."""
    if record.silent:
        return "loudness: silent clip, played unchanged"
    text = (
        f"loudness {record.before_lufs:.1f} → {record.after_lufs:.1f} LUFS "
        f"(gain {record.gain_db:+.1f} dB, true peak {record.after_true_peak_dbtp:.1f} dBTP)"
    )
    if record.peak_limited:
        text += f"; held below the {record.ceiling_dbtp:.0f} dBTP ceiling, so quieter than {record.target_lufs:.0f} LUFS"
    return text
