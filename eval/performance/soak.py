"""Soak test: synthesise continuously and fail when memory keeps growing.

Command line::

    python -m eval.performance.soak --demo | --model_dir DIR [--minutes 5 | --iterations N] [--device cuda]
        [--backend auto] [--dtype float32 bfloat16] [--max_steps 10] [--fixed_tokens N]
        [--pool 24] [--threshold_mb 50] [--warmup_fraction 0.2] [--seed 0] [--out DIR]

Work: a seeded pool of ``--pool`` items, each a text (assets/texts), a prompt of its language
(assets/prompts) and two random configurations (flow steps 1..max_steps, a dtype), is cycled.
Each iteration does what the A/B app does for one trial: prepare the prompt from its audio,
generate tokens with configuration A, render them with A and again with B. After each iteration
it samples the process RSS (psutil if installed, else /proc/self/statm) and, on CUDA, the device
memory allocated/reserved.

Verdict: the warm-up, max(ceil(warmup_fraction x iterations), one pass over the pool), is left
out (allocator pools, dtype copies, per-shape kernel caches); a least-squares line is fitted to
the rest of each trace against the iteration index; the run FAILS (exit 1) when slope x
(iterations fitted - 1), the growth the trend explains over the measured part, exceeds
``threshold_mb`` for RSS or for device memory allocated. Otherwise it prints PASS (exit 0). Bad
input exits 2. A short run can only catch a fast leak: the summary also gives the slope per hour.

Writes ``trace.csv``, ``trace.png`` and ``summary.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eval.performance.runinfo import (
    EXIT_BAD_INPUT,
    MB,
    ROOT,
    add_model_args,
    cuda_index,
    environment_info,
    model_source,
    rss_mb,
)
from eval.serving.trials import PromptAsset, TextItem, load_prompts, load_texts
from tts_core.config_id import MAX_FLOW_STEPS, check_dtype

if TYPE_CHECKING:  # the core is heavy to import; only type checkers need it here
    from tts_core import SynthesisOptions

DEFAULT_THRESHOLD_MB = 50.0
DEFAULT_WARMUP_FRACTION = 0.2
DEFAULT_MINUTES = 5.0
DEFAULT_MAX_STEPS = 10
DEFAULT_POOL = 24  # distinct (text, prompt, A/B configuration) work items, cycled
MIN_FIT_POINTS = 5  # fewer post-warm-up samples than this cannot show a trend
EXIT_FAIL = 1
SECONDS_PER_HOUR = 3600.0


# ----------------------------------------------------------------------------- growth detector


@dataclass(frozen=True)
class GrowthVerdict:
    """Linear trend of one memory trace after warm-up."""

    metric: str
    n_samples: int
    warmup: int  # leading samples left out of the fit
    slope_mb_per_iteration: float
    growth_mb: float  # slope x (fitted samples - 1)
    threshold_mb: float
    passed: bool

    def message(self) -> str:
        verdict = "ok" if self.passed else "GROWING"
        return (
            f"{self.metric}: {verdict}, trend {self.slope_mb_per_iteration:+.3f} MB/iteration = "
            f"{self.growth_mb:+.1f} MB over {self.n_samples - self.warmup} iterations after "
            f"{self.warmup} warm-up (threshold {self.threshold_mb:g} MB)"
        )


def warmup_count(n_samples: int, warmup_fraction: float, pool_size: int = 0) -> int:
    """Leading samples left out of the fit: ceil(fraction x n), and at least one pass over the pool."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    return max(math.ceil(warmup_fraction * n_samples), pool_size)


def detect_growth(
    values_mb: Sequence[float],
    threshold_mb: float = DEFAULT_THRESHOLD_MB,
    warmup: int = 0,
    metric: str = "rss_mb",
) -> GrowthVerdict:
    """Fit a least-squares line to ``values_mb[warmup:]`` against the iteration index; the trace
    fails when slope x (fitted samples - 1) > threshold_mb.

    ValueError when fewer than MIN_FIT_POINTS samples remain after the ``warmup`` leading ones.
    """
    if threshold_mb <= 0:
        raise ValueError(f"threshold_mb must be positive, got {threshold_mb}")
    if warmup < 0:
        raise ValueError(f"warmup must not be negative, got {warmup}")
    y = np.asarray(values_mb, dtype=np.float64)
    skip = warmup
    fitted = y[skip:]
    if fitted.size < MIN_FIT_POINTS:
        raise ValueError(
            f"{y.size} samples leave {fitted.size} after warm-up; at least {MIN_FIT_POINTS} are needed "
            "(run more iterations or minutes)"
        )
    x = np.arange(skip, y.size, dtype=np.float64)
    slope = float(np.polyfit(x, fitted, 1)[0])
    growth = slope * (fitted.size - 1)
    return GrowthVerdict(
        metric, int(y.size), skip, slope, growth, float(threshold_mb), growth <= threshold_mb
    )


# ----------------------------------------------------------------------------- soak loop


@dataclass(frozen=True)
class TraceRow:
    iteration: int
    elapsed_s: float
    iteration_s: float
    text_id: str
    prompt_id: str
    config_a: str
    config_b: str
    n_tokens: int
    audio_s: float
    rss_mb: float
    device_allocated_mb: float | None
    device_reserved_mb: float | None


def _device_memory(index: int | None) -> tuple[float | None, float | None]:
    if index is None:
        return None, None
    import torch

    torch.cuda.synchronize(index)
    return torch.cuda.memory_allocated(index) / MB, torch.cuda.memory_reserved(index) / MB


@dataclass(frozen=True)
class WorkItem:
    """One iteration's work: a text, a prompt of its language and two configurations (A/B)."""

    text: TextItem
    prompt: PromptAsset
    options_a: SynthesisOptions
    options_b: SynthesisOptions


def make_pool(
    size: int, dtypes: Sequence[str], max_steps: int, fixed_tokens: int | None, seed: int
) -> list[WorkItem]:
    """``size`` random work items (seeded): texts, prompts, flow steps 1..max_steps and dtypes vary."""
    from tts_core import SynthesisOptions

    texts, prompts = list(load_texts().values()), list(load_prompts().values())
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        text = rng.choice(texts)
        prompt = rng.choice([p for p in prompts if p.language == text.language] or prompts)
        sampling_seed = rng.randrange(2**31)  # A and B share it, as in the app's trials
        a, b = (
            SynthesisOptions(
                flow_steps=rng.randint(1, max_steps),
                dtype=rng.choice(list(dtypes)),
                seed=sampling_seed,
                fixed_tokens=fixed_tokens,
            )
            for _ in range(2)
        )
        pool.append(WorkItem(text, prompt, a, b))
    return pool


def run_soak(
    pipe, pool: Sequence[WorkItem], *, iterations: int | None, seconds: float | None
) -> list[TraceRow]:
    """Run the pool's items in a cycle until ``iterations`` are done or ``seconds`` have passed.

    NOTE: the work is a fixed pool, cycled, not fresh random draws. CPU kernel libraries cache code
    and buffers per tensor shape (e.g. oneDNN bf16 kernels: a few MB per new prompt length), so
    RSS grows while new shapes keep appearing and plateaus once they have all been seen. After one
    pass over the pool every shape has been seen: growth after that is a leak.
    """
    from tqdm import tqdm

    index = cuda_index(pipe.info.device)
    rows: list[TraceRow] = []
    start = time.monotonic()
    if iterations is not None:
        bar = tqdm(total=iterations, desc="soak", unit="it")
    else:
        bar = tqdm(
            total=round(seconds),
            desc="soak",
            unit="s",
            bar_format="{l_bar}{bar}| {n:.0f}/{total} s {postfix}",
        )
    while True:
        elapsed = time.monotonic() - start
        if (iterations is not None and len(rows) >= iterations) or (
            seconds is not None and elapsed >= seconds
        ):
            break
        t0 = time.monotonic()
        item = pool[len(rows) % len(pool)]
        audio, rate = item.prompt.load()
        prompt = pipe.prepare_prompt(audio, rate, item.prompt.transcript)
        tokens = pipe.generate_tokens(item.text.text, prompt, item.options_a)
        res_a = pipe.tokens_to_audio(tokens, prompt, item.options_a)
        res_b = pipe.tokens_to_audio(tokens, prompt, item.options_b)
        n_tokens, audio_s = tokens.n_tokens, res_a.duration + res_b.duration
        del tokens, res_a, res_b, prompt, audio  # sample memory with nothing of this iteration held
        allocated, reserved = _device_memory(index)
        now = time.monotonic()
        rows.append(
            TraceRow(
                iteration=len(rows),
                elapsed_s=now - start,
                iteration_s=now - t0,
                text_id=item.text.id,
                prompt_id=item.prompt.id,
                config_a=item.options_a.config.label,
                config_b=item.options_b.config.label,
                n_tokens=n_tokens,
                audio_s=audio_s,
                rss_mb=rss_mb(),
                device_allocated_mb=allocated,
                device_reserved_mb=reserved,
            )
        )
        bar.set_postfix_str(f"RSS {rows[-1].rss_mb:.0f} MB")
        if iterations is not None:
            bar.update()
        else:
            bar.update(min(now - start, seconds) - bar.n)
    bar.close()
    return rows


def verdicts(rows: Sequence[TraceRow], threshold_mb: float, warmup: int) -> list[GrowthVerdict]:
    """RSS always; device memory allocated when it was sampled (CUDA)."""
    out = [detect_growth([r.rss_mb for r in rows], threshold_mb, warmup, "rss_mb")]
    if rows and rows[0].device_allocated_mb is not None:
        allocated = [r.device_allocated_mb for r in rows]
        out.append(detect_growth(allocated, threshold_mb, warmup, "device_allocated_mb"))
    return out


# ----------------------------------------------------------------------------- output


def plot_trace(rows: Sequence[TraceRow], found: Sequence[GrowthVerdict]):
    """Memory against iteration, warm-up shaded, fitted trend drawn (matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.array([r.iteration for r in rows])
    series = {"rss_mb": [r.rss_mb for r in rows]}
    if rows[0].device_allocated_mb is not None:
        series["device_allocated_mb"] = [r.device_allocated_mb for r in rows]
        series["device_reserved_mb"] = [r.device_reserved_mb for r in rows]
    for name, values in series.items():
        ax.plot(x, values, lw=1.2, label=name)
    for v in found:
        y = np.asarray(series[v.metric])
        xs = x[v.warmup :]
        intercept = float(np.mean(y[v.warmup :]) - v.slope_mb_per_iteration * np.mean(xs))
        ax.plot(xs, intercept + v.slope_mb_per_iteration * xs, "--", color="black", lw=1)
    warm = found[0].warmup
    ax.axvspan(-0.5, warm - 0.5, color="lightgray", alpha=0.5, label="warm-up (not fitted)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("MB")
    status = "PASS" if all(v.passed for v in found) else "FAIL"
    ax.set_title(
        f"soak {status}: " + "; ".join(f"{v.metric} {v.growth_mb:+.1f} MB" for v in found), fontsize=10
    )
    ax.legend(fontsize=8)
    return fig


def write_trace(out_dir: Path, rows: Sequence[TraceRow]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = out_dir / "trace.csv"
    with trace.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(TraceRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return trace


def write_outputs(
    out_dir: Path, rows: Sequence[TraceRow], found: Sequence[GrowthVerdict], doc: dict
) -> list[Path]:
    """trace.png and summary.json (trace.csv is written first, by :func:`write_trace`)."""
    png, summary = out_dir / "trace.png", out_dir / "summary.json"
    plot_trace(rows, found).savefig(png, dpi=110)
    summary.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return [png, summary]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.performance.soak", description="Synthesise continuously; fail when memory keeps growing."
    )
    add_model_args(parser)
    parser.add_argument("--backend", default="auto", help="flow backend, passed to load_pipeline")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help=f"run time (default {DEFAULT_MINUTES:g})")
    length.add_argument("--iterations", type=int, default=None)
    parser.add_argument(
        "--dtype", nargs="+", default=None, help="dtypes to draw from (default: all that run)"
    )
    parser.add_argument("--max_steps", type=int, default=DEFAULT_MAX_STEPS, help="flow steps drawn from 1..N")
    parser.add_argument("--fixed_tokens", type=int, default=None, help="force N speech tokens per sentence")
    parser.add_argument(
        "--pool", type=int, default=DEFAULT_POOL, help="distinct work items, cycled (warm-up covers one pass)"
    )
    parser.add_argument("--threshold_mb", type=float, default=DEFAULT_THRESHOLD_MB)
    parser.add_argument("--warmup_fraction", type=float, default=DEFAULT_WARMUP_FRACTION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/soak/<UTC>)")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")
    if not 1 <= args.max_steps <= MAX_FLOW_STEPS:
        raise ValueError(f"--max_steps must be between 1 and {MAX_FLOW_STEPS}")
    if args.pool < 1:
        raise ValueError("--pool must be at least 1")
    if args.iterations is not None and args.iterations < args.pool + MIN_FIT_POINTS:
        raise ValueError(
            f"--iterations must be at least --pool + {MIN_FIT_POINTS} = {args.pool + MIN_FIT_POINTS}: "
            "the first pass over the pool is warm-up"
        )
    if args.threshold_mb <= 0 or not 0 <= args.warmup_fraction < 1:
        raise ValueError("--threshold_mb must be positive and --warmup_fraction in [0, 1)")
    for dtype in args.dtype or ():
        check_dtype(dtype)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.minutes is None and args.iterations is None:
        args.minutes = DEFAULT_MINUTES
    try:
        _check_args(args)
        from tts_core import load_pipeline

        pipe = load_pipeline(model_source(args), device=args.device, backend=args.backend)
        dtypes = args.dtype or list(pipe.info.dtypes)
        pool = make_pool(args.pool, dtypes, args.max_steps, args.fixed_tokens, args.seed)
        seconds = None if args.minutes is None else args.minutes * 60.0
        rows = run_soak(pipe, pool, iterations=args.iterations, seconds=seconds)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or ROOT / "results" / "soak" / stamp
    trace = write_trace(out_dir, rows)
    warmup = warmup_count(len(rows), args.warmup_fraction, len(pool))
    if len(rows) - warmup < MIN_FIT_POINTS:
        print(
            f"error: {len(rows)} iterations ran and the warm-up takes {warmup} (one pass over the pool of "
            f"{len(pool)} at least); {MIN_FIT_POINTS} more are needed to fit a trend: run longer or use a "
            f"smaller --pool (trace in {trace})",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    found = verdicts(rows, args.threshold_mb, warmup)
    passed = all(v.passed for v in found)
    mean_iteration_s = float(np.mean([r.iteration_s for r in rows]))
    doc = {
        "verdict": "pass" if passed else "fail",
        "growth": [
            {**asdict(v), "slope_mb_per_hour": v.slope_mb_per_iteration * SECONDS_PER_HOUR / mean_iteration_s}
            for v in found
        ],
        "iterations": len(rows),
        "seconds": rows[-1].elapsed_s,
        "mean_iteration_s": mean_iteration_s,
        "dtypes": dtypes,
        "max_steps": args.max_steps,
        "fixed_tokens": args.fixed_tokens,
        "pool": args.pool,
        "seed": args.seed,
        "model": asdict(pipe.info),
        "environment": environment_info(pipe.info.device, "eval.performance.soak", argv),
        "rule": "least-squares trend after warm-up (max(warmup_fraction x iterations, one pass over the "
        "pool)); fail when slope x (fitted iterations - 1) > threshold_mb",
    }
    paths = [trace, *write_outputs(out_dir, rows, found, doc)]
    for v in found:
        print(v.message())
    print("wrote " + ", ".join(str(p) for p in paths))
    iters = f"{len(rows)} iterations in {rows[-1].elapsed_s:.0f} s"
    if passed:
        print(f"PASS: no memory growth above {args.threshold_mb:g} MB after warm-up ({iters})")
        return 0
    grown = ", ".join(v.metric for v in found if not v.passed)
    print(f"FAIL: memory keeps growing ({grown}) past {args.threshold_mb:g} MB after warm-up ({iters})")
    return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
