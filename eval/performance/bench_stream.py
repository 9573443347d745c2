"""Streaming figures for ``eval.performance.bench --streaming``: first-chunk latency, time between chunks, RTF.

Each streamed run is one ``Pipeline.stream`` request: the LLM decodes in its own thread (its own
CUDA stream) while the calling thread renders chunks as soon as the schedule allows, so

* first chunk = request start -> first chunk's samples on the host (device synchronised);
* chunk interval = time between consecutive chunks' arrival (pooled over the timed runs);
* streaming RTF = request start -> last chunk, per second of audio;
* overlap = LLM + flow + vocoder seconds - wall seconds: the work that ran side by side;
* non-finite = NaN/inf samples of the streamed audio (must be 0; 1500 tokens in float16).

The offline figures of the same configuration come from the same benchmark call (``eval.performance.bench``),
so the two sit side by side in its table and JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

P90 = 0.9  # the upper quantile reported beside the median
# Per-run streaming metrics; each is summarised by median / p90 / min / max over the timed runs.
STREAM_METRICS = (
    "first_chunk_s",
    "stream_rtf",
    "stream_wall_s",
    "stream_flow_s",
    "stream_vocoder_s",
    "stream_llm_tokens_per_s",
    "overlap_s",
    "n_chunks",
)


@dataclass(frozen=True)
class StreamRunRecord:
    """One streamed request, as ``eval.performance.bench`` writes it to JSON / CSV."""

    config: str
    run: int
    n_tokens: int
    first_chunk_s: float
    chunk_intervals_s: tuple[float, ...]
    stream_wall_s: float
    stream_rtf: float
    stream_flow_s: float  # all chunk calls' flow time (each re-runs the prompt and all tokens so far)
    stream_vocoder_s: float
    stream_llm_s: float
    stream_llm_tokens_per_s: float
    overlap_s: float
    n_chunks: int
    nonfinite_samples: int
    audio_s: float
    backend_ran: str


def stream_run(pipe, options, text: str, prompt, config: str, run: int) -> StreamRunRecord:
    """Stream ``text`` once with ``options`` (``streaming=True``) and record the figures."""
    stream = pipe.stream(text, prompt, options)
    for _ in stream:  # chunks are consumed as they come, as a player would
        pass
    res = stream.result
    t, report = res.timings, res.stream
    n_tokens = sum(int(s.numel()) for s in res.speech_tokens)
    return StreamRunRecord(
        config=config,
        run=run,
        n_tokens=n_tokens,
        first_chunk_s=report.first_chunk_latency,
        chunk_intervals_s=report.chunk_intervals,
        stream_wall_s=report.wall_seconds,
        stream_rtf=res.rtf,
        stream_flow_s=t.flow,
        stream_vocoder_s=t.vocoder,
        stream_llm_s=t.llm,
        stream_llm_tokens_per_s=n_tokens / t.llm if t.llm > 0 else float("inf"),
        overlap_s=t.llm + t.flow + t.vocoder - report.wall_seconds,
        n_chunks=len(report.chunks),
        nonfinite_samples=int((~np.isfinite(res.audio)).sum()),
        audio_s=res.duration,
        backend_ran=res.backend,
    )


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """median, p90, min, max of ``values`` (numpy's linear quantiles); NaN when empty."""
    if not values:
        return {k: float("nan") for k in ("median", "p90", "min", "max")}
    x = np.asarray(values, dtype=np.float64)
    med, p90 = np.quantile(x, [0.5, P90])
    return {"median": float(med), "p90": float(p90), "min": float(x.min()), "max": float(x.max())}


def summarise_stream(runs: Sequence[StreamRunRecord]) -> dict:
    """The streaming block of one configuration's summary."""
    return {
        "stats": {m: quantiles([float(getattr(r, m)) for r in runs]) for m in STREAM_METRICS},
        "chunk_interval_s": quantiles([i for r in runs for i in r.chunk_intervals_s]),
        "nonfinite_samples": sum(r.nonfinite_samples for r in runs),
        "backend_ran": "+".join(sorted({r.backend_ran for r in runs})),
    }


def flow_step_ratios(summaries: Sequence[dict], fewer: int = 5, more: int = 10) -> dict[str, float]:
    """Streaming flow time at ``fewer`` steps / at ``more`` steps, per (dtype, backend) measured at both."""
    by_key = {(c["dtype"], c["backend"], c["flow_steps"]): c for c in summaries if "streaming" in c}
    ratios = {}
    for (dtype, backend, steps), c in by_key.items():
        other = by_key.get((dtype, backend, more))
        if steps == fewer and other is not None:
            a = c["streaming"]["stats"]["stream_flow_s"]["median"]
            b = other["streaming"]["stats"]["stream_flow_s"]["median"]
            ratios[f"{dtype}-{backend}"] = a / b
    return ratios


def format_stream_table(summaries: Sequence[dict]) -> str:
    """Streaming beside offline: first chunk median/p90, chunk interval, streaming and offline RTF."""
    head = (
        "config", "first chunk ms (med / p90)", "interval ms (med / p90 / max)", "stream RTF",
        "offline RTF", "stream flow s", "LLM tok/s (stream / offline)", "overlap s", "chunks", "non-finite",
    )  # fmt: skip
    rows = [head]
    for c in summaries:
        s = c["streaming"]
        st, iv, off = s["stats"], s["chunk_interval_s"], c["stats"]
        rows.append(
            (
                c["label"],
                f"{1e3 * st['first_chunk_s']['median']:.1f} / {1e3 * st['first_chunk_s']['p90']:.1f}",
                f"{1e3 * iv['median']:.1f} / {1e3 * iv['p90']:.1f} / {1e3 * iv['max']:.1f}",
                f"{st['stream_rtf']['median']:.4f}",
                f"{off['rtf']['median']:.4f}",
                f"{st['stream_flow_s']['median']:.3f}",
                f"{st['stream_llm_tokens_per_s']['median']:.0f} / {off['llm_tokens_per_s']['median']:.0f}",
                f"{st['overlap_s']['median']:.3f}",
                f"{st['n_chunks']['median']:.0f}",
                str(s["nonfinite_samples"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
