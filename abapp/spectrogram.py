"""Spectrogram figures and objective distances for an A/B pair (matplotlib, no pyplot state).

The figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas), so concurrent
sessions never share pyplot's global current figure.
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.figure import Figure

from tts_core.constants import MEL_HOP, SAMPLE_RATE

log = logging.getLogger(__name__)

FRAME_SECONDS = MEL_HOP / SAMPLE_RATE  # 20 ms per mel frame
COLOR_PERCENTILES = (1.0, 99.5)  # robust shared colour range of A and B
FIG_WIDTH_IN = 11.0
ROW_HEIGHT_IN = 2.1


def _as_mel(mel: object) -> np.ndarray:
    """(80, T) float array from a tensor or array (a leading batch axis of 1 is dropped)."""
    arr = mel.detach().cpu().float().numpy() if hasattr(mel, "detach") else np.asarray(mel, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a mel spectrogram must be (bins, frames), got shape {arr.shape}")
    return arr


def pair_figure(mel_a: object, mel_b: object, title_a: str = "A", title_b: str = "B") -> Figure:
    """Three rows: A and B on one colour scale, then B minus A on a symmetric scale.

    mel_a, mel_b: (80, T_a), (80, T_b) natural-log mel at 50 frames/s. When the lengths differ
    (separate LLM runs) the difference covers the common first ``min(T_a, T_b)`` frames.
    """
    a, b = _as_mel(mel_a), _as_mel(mel_b)
    both = np.concatenate([a.ravel(), b.ravel()])
    vmin, vmax = np.percentile(both, COLOR_PERCENTILES)
    n = min(a.shape[1], b.shape[1])
    diff = b[:, :n] - a[:, :n]
    dmax = float(np.percentile(np.abs(diff), 99.5)) if n else 1.0
    dmax = dmax if dmax > 0 else 1.0

    fig = Figure(figsize=(FIG_WIDTH_IN, 3 * ROW_HEIGHT_IN), layout="constrained")
    axes = fig.subplots(3, 1)
    t_end = max(a.shape[1], b.shape[1]) * FRAME_SECONDS
    rows = (
        (a, f"{title_a}", "magma", vmin, vmax, "log mel (ln)"),
        (b, f"{title_b}", "magma", vmin, vmax, "log mel (ln)"),
        (diff, f"{title_b} minus {title_a}", "RdBu_r", -dmax, dmax, "difference (ln)"),
    )
    for ax, (data, title, cmap, lo, hi, unit) in zip(axes, rows):
        extent = (0.0, data.shape[1] * FRAME_SECONDS, 0, data.shape[0])
        image = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, extent=extent)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel("mel bin")
        ax.set_xlim(0.0, t_end)
        fig.colorbar(image, ax=ax, label=unit, pad=0.01)
    axes[-1].set_xlabel("time (s)")
    if a.shape[1] != b.shape[1]:
        axes[-1].set_title(
            f"{title_b} minus {title_a} (first {n * FRAME_SECONDS:.2f} s; lengths differ)",
            fontsize=10,
            loc="left",
        )
    return fig


DISTANCE_LABELS = {
    "mel_l1": ("mel L1 (mean abs. log-mel difference)", ".4f"),
    "lsd_db": ("log-spectral distance (dB)", ".2f"),
    "mcd_db": ("mel-cepstral distortion (dB)", ".2f"),
    "f0_rmse_hz": ("F0 RMSE (Hz)", ".1f"),
    "f0_frames": ("frames voiced in both", "d"),
    "pesq": ("PESQ wide-band (MOS-LQO)", ".2f"),
    "stoi": ("STOI", ".3f"),
}


def distances_markdown(
    audio_a: np.ndarray, audio_b: np.ndarray, mel_a: object, mel_b: object, sample_rate: int
) -> str:
    """Objective distances of B from A (the reference), as Markdown.

    Uses ``eval.objective.compare`` when that module exists; otherwise shows the mel L1 distance
    only (mean |B - A| over the common frames) and says so.
    """
    a, b = _as_mel(mel_a), _as_mel(mel_b)
    n = min(a.shape[1], b.shape[1])
    fallback = [f"- mel L1 over {n} common frames: {np.abs(b[:, :n] - a[:, :n]).mean():.4f}"]
    try:
        from eval import objective
    except ImportError:
        fallback.append("- more distances (LSD, MCD, F0 RMSE) appear here once `eval/objective.py` exists")
        return "\n".join(fallback)
    if a.shape[1] != b.shape[1]:
        fallback.append(
            f"- A lasts {a.shape[1] * FRAME_SECONDS:.2f} s and B {b.shape[1] * FRAME_SECONDS:.2f} s: frame-aligned "
            "distances need the same speech tokens on both sides (choose 'Same speech tokens')"
        )
        return "\n".join(fallback)
    try:
        result = objective.compare(audio_a, audio_b, sample_rate, mel_a=a, mel_b=b).to_dict()
    except Exception as err:  # noqa: BLE001 - the distances are extra information; never fail the pair
        log.exception("eval.objective.compare failed")
        fallback.append(f"- other distances unavailable: {err}")
        return "\n".join(fallback)
    lines = []
    for name, value in result.items():
        label, fmt = DISTANCE_LABELS.get(name, (name, ""))
        if value is None:
            continue
        lines.append(f"- {label}: {format(value, fmt) if isinstance(value, (int, float)) else value}")
    return "\n".join(lines)
