"""Spectrogram figures and objective distances for an A/B pair (matplotlib, no pyplot state).

The figures are built with ``matplotlib.figure.Figure`` directly (the Agg canvas), so concurrent
sessions never share pyplot's global current figure.
"""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.figure import Figure

from eval.screen import objective
from tts_core.constants import MEL_HOP, SAMPLE_RATE

log = logging.getLogger(__name__)

FRAME_SECONDS = MEL_HOP / SAMPLE_RATE  # 20 ms per mel frame
COLOR_PERCENTILES = (1.0, 99.5)  # robust shared colour range of A and B
FIG_WIDTH_IN = 11.0
ROW_HEIGHT_IN = 2.1
BOUNDARY_HALF_WIDTH_FRAMES = 8  # frames each side of a chunk edge counted as "near" it (160 ms)
BOUNDARY_STYLE = {"color": "cyan", "lw": 0.8, "ls": "--"}


def _as_mel(mel: object) -> np.ndarray:
    """(80, T) float array from a tensor or array (a leading batch axis of 1 is dropped)."""
    arr = mel.detach().cpu().float().numpy() if hasattr(mel, "detach") else np.asarray(mel, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a mel spectrogram must be (bins, frames), got shape {arr.shape}")
    return arr


def pair_figure(
    mel_a: object,
    mel_b: object,
    title_a: str = "A",
    title_b: str = "B",
    edges_a: tuple[int, ...] = (),
    edges_b: tuple[int, ...] = (),
) -> Figure:
    """Three rows: A and B on one colour scale, then B minus A on a symmetric scale.

    mel_a, mel_b: (80, T_a), (80, T_b) natural-log mel at 50 frames/s. When the lengths differ
    (separate LLM runs) the difference covers the common first ``min(T_a, T_b)`` frames.
    edges_a, edges_b: mel frames where a streamed side's chunks begin (dashed lines on its row and
    on the difference).
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
        (a, f"{title_a}", "magma", vmin, vmax, "log mel (ln)", edges_a),
        (b, f"{title_b}", "magma", vmin, vmax, "log mel (ln)", edges_b),
        (diff, f"{title_b} minus {title_a}", "RdBu_r", -dmax, dmax, "difference (ln)", (*edges_a, *edges_b)),
    )
    for ax, (data, title, cmap, lo, hi, unit, edges) in zip(axes, rows):
        extent = (0.0, data.shape[1] * FRAME_SECONDS, 0, data.shape[0])
        image = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, extent=extent)
        for frame in sorted(set(edges)):
            ax.axvline(frame * FRAME_SECONDS, **BOUNDARY_STYLE)
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


def edge_mel_l1(a: np.ndarray, b: np.ndarray, edges: tuple[int, ...]) -> tuple[float, float, int]:
    """(mean |B - A| within BOUNDARY_HALF_WIDTH_FRAMES of a chunk edge, elsewhere, frames near).

    a, b: (80, T) log mel of the same tokens (equal T); NaN where a region has no frames.
    """
    near = np.zeros(a.shape[1], dtype=bool)
    for edge in edges:
        near[max(0, edge - BOUNDARY_HALF_WIDTH_FRAMES) : edge + BOUNDARY_HALF_WIDTH_FRAMES] = True
    per_frame = np.abs(b - a).mean(axis=0)
    mean = lambda m: float(per_frame[m].mean()) if m.any() else float("nan")  # noqa: E731
    return mean(near), mean(~near), int(near.sum())


def distances_markdown(
    audio_a: np.ndarray,
    audio_b: np.ndarray,
    mel_a: object,
    mel_b: object,
    sample_rate: int,
    edges: tuple[int, ...] = (),
) -> str:
    """Objective distances of B from A (the reference), as Markdown; with chunk ``edges`` (a streamed
    side) the mel L1 near them and elsewhere too."""
    a, b = _as_mel(mel_a), _as_mel(mel_b)
    n = min(a.shape[1], b.shape[1])
    if a.shape[1] != b.shape[1]:
        return "\n".join(
            [
                f"- mel L1 over {n} common frames: {np.abs(b[:, :n] - a[:, :n]).mean():.4f}",
                f"- A lasts {a.shape[1] * FRAME_SECONDS:.2f} s and B {b.shape[1] * FRAME_SECONDS:.2f} s: "
                "frame-aligned distances need the same speech tokens on both sides (choose 'Same speech tokens')",
            ]
        )
    try:
        result = objective.compare(audio_a, audio_b, sample_rate, mel_a=a, mel_b=b).to_dict()
    except Exception as err:  # noqa: BLE001 - the distances are extra information; never fail the pair
        log.exception("eval.screen.objective.compare failed")
        return f"- mel L1: {np.abs(b - a).mean():.4f}\n- other distances unavailable: {err}"
    lines = []
    for name, value in result.items():
        label, fmt = DISTANCE_LABELS.get(name, (name, ""))
        if value is None:
            continue
        lines.append(f"- {label}: {format(value, fmt) if isinstance(value, (int, float)) else value}")
    if edges:
        near, far, frames = edge_mel_l1(a, b, edges)
        lines.append(
            f"- mel L1 within {BOUNDARY_HALF_WIDTH_FRAMES * FRAME_SECONDS * 1000:.0f} ms of the "
            f"{len(edges)} chunk edges ({frames} frames): {near:.4f}; elsewhere: {far:.4f}"
        )
    return "\n".join(lines)
