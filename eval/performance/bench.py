"""RTF benchmark: per-stage timings of every (backend, dtype, flow steps) configuration.

Command line::

    python -m eval.performance.bench --model_dir DIR | --demo [--device cuda] --flow_steps 10 5
        --dtype float32 float16 bfloat16 [--backend auto torch] [--runs 5] [--warmup 2]
        [--fixed_tokens 250] [--text TEXT] [--prompt ID] [--streaming] [--out results/bench.json]

For each configuration (backends outermost: each backend's pipeline is loaded once, then freed)
it runs ``warmup`` untimed syntheses, resets the peak-memory counter, then times ``runs``
syntheses. Every run generates its own tokens (``generate_tokens`` with ``fixed_tokens``, so a
random-weight model emits exactly that many and configurations do the same work) and renders them
(``tokens_to_audio``); the stage times are the core's device-synchronised timings. It prints the
median and [min, max] of each metric and the speed-up against the FIRST configuration, and writes
JSON (environment, settings, per-run rows), a summary CSV and a per-run CSV beside it, and a PNG of
the median stage times.

``--streaming`` also streams every timed (and warm-up) run through ``Pipeline.stream`` right after
its offline run and reports first-chunk latency (median, p90), time between chunks, streaming RTF
and the streaming flow time beside the offline figures (:mod:`eval.performance.bench_stream`).

Speed-up = RTF_first / RTF (above 1 is faster); rtf_reduction = 1 - RTF / RTF_first (the seed's
"RTF 30-50% better" is rtf_reduction 0.3-0.5). LLM tokens/s includes the prompt prefill.

The run-environment helpers (model arguments, memory probe, environment record) live in
``eval.performance.runinfo``, shared with ``eval.performance.soak`` and ``eval.screen.score_plan``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.performance.bench_stream import flow_step_ratios, format_stream_table, stream_run, summarise_stream
from eval.performance.runinfo import (
    EXIT_BAD_INPUT,
    ROOT,
    MemoryProbe,
    add_model_args,
    cuda_index,
    environment_info,
    model_source,
)
from tts_core.config_id import ConfigId

BENCH_VERSION = 1
DEFAULT_TEXT = "The weather forecast says it will rain tomorrow afternoon, so bring an umbrella."
DEFAULT_PROMPT = "en_flite_slt"
DEFAULT_FIXED_TOKENS = 250  # 10 s of audio at 25 tokens/s
DEFAULT_RUNS = 5
DEFAULT_WARMUP = 2
# Per-run metrics; each is summarised by median, quartiles, min and max.
METRICS = ("llm_tokens_per_s", "llm_s", "flow_s", "vocoder_s", "total_s", "rtf", "audio_s")
STAGES = ("llm_s", "flow_s", "vocoder_s")


# ----------------------------------------------------------------------------- summary statistics


def spread(values: Sequence[float]) -> dict[str, float]:
    """median, q25, q75, min, max of ``values`` (numpy's linear quantiles)."""
    x = np.asarray(values, dtype=np.float64)
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    return {
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(x.min()),
        "max": float(x.max()),
    }


# ----------------------------------------------------------------------------- benchmark


@dataclass(frozen=True)
class BenchConfig:
    backend: str  # flow backend as requested ("auto", "torch", ...); what ran is recorded per run
    config: ConfigId  # the configuration, named as in the app, plans and reports

    @property
    def label(self) -> str:
        """The configuration's label; a flow backend asked for explicitly is shown beside it."""
        return self.config.label if self.backend == "auto" else f"{self.config.label} ({self.backend})"


@dataclass(frozen=True)
class RunRecord:
    config: str
    run: int
    n_tokens: int
    llm_tokens_per_s: float
    llm_s: float
    flow_s: float
    vocoder_s: float
    total_s: float
    rtf: float
    audio_s: float
    dtype_ran: str
    backend_ran: str
    llm_backend_ran: str


def _one_run(pipe, config: BenchConfig, text: str, prompt, fixed_tokens: int | None, run: int) -> RunRecord:
    from tts_core import SynthesisOptions

    opts = SynthesisOptions(fixed_tokens=fixed_tokens).with_config(config.config)
    tokens = pipe.generate_tokens(text, prompt, opts)
    res = pipe.tokens_to_audio(tokens, prompt, opts)
    t = res.timings
    return RunRecord(
        config=config.label,
        run=run,
        n_tokens=tokens.n_tokens,
        llm_tokens_per_s=tokens.n_tokens / t.llm if t.llm > 0 else float("inf"),
        llm_s=t.llm,
        flow_s=t.flow,
        vocoder_s=t.vocoder,
        total_s=t.total,
        rtf=res.rtf,
        audio_s=res.duration,
        dtype_ran=res.dtype_ran,
        backend_ran=res.backend,
        llm_backend_ran=res.llm_backend,
    )


def _stream_once(pipe, config: BenchConfig, text: str, prompt, fixed_tokens: int | None, run: int):
    from tts_core import SynthesisOptions

    # The same configuration as the offline run, streamed (whatever the configuration says).
    opts = SynthesisOptions(fixed_tokens=fixed_tokens).with_config(config.config).replace(streaming=True)
    return stream_run(pipe, opts, text, prompt, config.label, run)


def _summarise(config: BenchConfig, runs: list[RunRecord], probe: MemoryProbe, peak: float) -> dict:
    return {
        "label": config.label,
        "backend": config.backend,
        "backend_ran": "+".join(sorted({r.backend_ran for r in runs})),
        "llm_backend_ran": "+".join(sorted({r.llm_backend_ran for r in runs})),
        "config": config.config.label,
        "dtype": config.config.dtype,
        "dtype_ran": "+".join(sorted({r.dtype_ran for r in runs})),
        "flow_steps": config.config.flow_steps,
        "n_tokens": runs[0].n_tokens,
        "stats": {m: spread([getattr(r, m) for r in runs]) for m in METRICS},
        "memory": {
            "kind": probe.kind,
            "peak_mb": peak,
            "resident_mb": probe.resident_mb,  # held before the timed runs: weights of every loaded dtype
            "working_mb": peak - probe.resident_mb,  # peak above that: activations, workspaces
        },
    }


def _add_speedups(configs: list[dict]) -> None:
    first = configs[0]["stats"]
    for c in configs:
        s = c["stats"]
        c["speedup"] = first["rtf"]["median"] / s["rtf"]["median"]
        c["rtf_reduction"] = 1.0 - s["rtf"]["median"] / first["rtf"]["median"]
        c["flow_speedup"] = first["flow_s"]["median"] / s["flow_s"]["median"]


def run_benchmark(
    source: str,
    configs: Sequence[BenchConfig],
    *,
    device: str | None,
    text: str,
    prompt_id: str,
    runs: int,
    warmup: int,
    fixed_tokens: int | None,
    llm_backend: str = "auto",
    streaming: bool = False,
    prompt_seconds: float | None = None,
) -> tuple[list[dict], list[RunRecord], dict]:
    """Time every configuration; returns (per-config summaries, per-run records, pipeline info).

    ``streaming``: each summary also gets a "streaming" block (its per-run rows under "runs").
    ``prompt_seconds``: use only the prompt clip's first seconds (the streaming schedule depends
    on the prompt's token count; 3 s = 75 tokens needs no first-hop pad). info gets "prompt_tokens".
    """
    from tqdm import tqdm

    from eval.serving.trials import load_prompts
    from tts_core import load_pipeline

    prompts = load_prompts()
    if prompt_id not in prompts:
        raise ValueError(f"unknown prompt id {prompt_id!r}; known: {', '.join(sorted(prompts))}")
    asset = prompts[prompt_id]
    audio, rate = asset.load()
    if prompt_seconds is not None:
        if len(audio) < prompt_seconds * rate:
            raise ValueError(f"prompt {prompt_id!r} is shorter than --prompt_seconds {prompt_seconds}")
        audio = audio[: int(round(prompt_seconds * rate))]
    summaries, records, info = [], [], {}
    backends = list(dict.fromkeys(c.backend for c in configs))
    bar = tqdm(total=len(configs) * (warmup + runs), desc="bench", unit="run")
    for backend in backends:
        pipe = load_pipeline(source, device=device, backend=backend, llm_backend=llm_backend)
        info = asdict(pipe.info)
        prompt = pipe.prepare_prompt(audio, rate, asset.transcript)
        info["prompt_tokens"] = int(prompt.speech_tokens.numel())
        probe = MemoryProbe(cuda_index(pipe.info.device))
        for config in (c for c in configs if c.backend == backend):
            bar.set_postfix_str(config.label)
            for i in range(warmup):
                _one_run(pipe, config, text, prompt, fixed_tokens, -1 - i)
                if streaming:  # captures the chunk graphs of this prompt length
                    _stream_once(pipe, config, text, prompt, fixed_tokens, -1 - i)
                bar.update()
            probe.reset()  # after warm-up: one-off dtype casts and autotuning are not counted
            timed, streamed = [], []
            for i in range(runs):
                timed.append(_one_run(pipe, config, text, prompt, fixed_tokens, i))
                if streaming:
                    streamed.append(_stream_once(pipe, config, text, prompt, fixed_tokens, i))
                bar.update()
            summary = _summarise(config, timed, probe, probe.peak_mb())
            if streaming:
                summary["streaming"] = summarise_stream(streamed)
                summary["streaming"]["runs"] = [asdict(r) for r in streamed]
            summaries.append(summary)
            records.extend(timed)
        # Free one backend's pipeline before loading the next, so they never share the device.
        del pipe, prompt
        gc.collect()
        if probe.cuda_index is not None:
            import torch

            torch.cuda.empty_cache()
    bar.close()
    _add_speedups(summaries)
    return summaries, records, info


# ----------------------------------------------------------------------------- output


def _cell(stat: dict, digits: int) -> str:
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def format_table(summaries: list[dict]) -> str:
    """Human table: median [min-max] per metric, speed-up against the first configuration."""
    head = (
        "config", "ran", "tok/s", "LLM s", "flow s", "vocoder s", "RTF", "audio s", "peak MB", "speed-up",
    )  # fmt: skip
    rows = [head]
    for c in summaries:
        s = c["stats"]
        rows.append(
            (
                c["label"],
                f"{c['dtype_ran']}/{c['llm_backend_ran']}/{c['backend_ran']}",
                _cell(s["llm_tokens_per_s"], 1),
                _cell(s["llm_s"], 3),
                _cell(s["flow_s"], 3),
                _cell(s["vocoder_s"], 3),
                _cell(s["rtf"], 3),
                f"{s['audio_s']['median']:.2f}",
                f"{c['memory']['peak_mb']:.0f}",
                f"x{c['speedup']:.2f} (RTF {0.0 - c['rtf_reduction']:+.0%})",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def _summary_rows(summaries: list[dict]) -> list[dict]:
    rows = []
    for c in summaries:
        row = {
            k: c[k]
            for k in (
                "label",
                "backend",
                "backend_ran",
                "llm_backend_ran",
                "dtype",
                "dtype_ran",
                "flow_steps",
                "n_tokens",
            )  # fmt: skip
        }
        for metric, stat in c["stats"].items():
            row.update({f"{metric}_{k}": v for k, v in stat.items()})
        row.update({f"memory_{k}": v for k, v in c["memory"].items()})
        row.update({k: c[k] for k in ("speedup", "rtf_reduction", "flow_speedup")})
        if "streaming" in c:
            block = c["streaming"]
            for metric, stat in (*block["stats"].items(), ("chunk_interval_s", block["chunk_interval_s"])):
                row.update({f"stream_{metric}_{k}": v for k, v in stat.items()})
            row["stream_nonfinite_samples"] = block["nonfinite_samples"]
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_stages(summaries: list[dict], title: str):
    """Stacked bars of the median LLM / flow / vocoder seconds per configuration (matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.3 * len(summaries) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(summaries))
    bottom = np.zeros(len(summaries))
    for stage, colour in zip(STAGES, ("tab:blue", "tab:orange", "tab:green")):
        heights = np.array([c["stats"][stage]["median"] for c in summaries])
        ax.bar(x, heights, bottom=bottom, color=colour, label=stage.removesuffix("_s"))
        bottom += heights
    for i, c in enumerate(summaries):
        note = f"RTF {c['stats']['rtf']['median']:.3f}\nx{c['speedup']:.2f}"
        ax.text(i, bottom[i], note, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [c["label"] for c in summaries], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median seconds per synthesis")
    ax.set_ylim(0, bottom.max() * 1.25 if bottom.max() > 0 else 1)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def write_outputs(out: Path, doc: dict, records: list[RunRecord]) -> list[Path]:
    """JSON at ``out``; summary CSV, per-run CSV and PNG beside it (same stem)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    csv_path, runs_path, png_path = (
        out.with_suffix(".csv"),
        out.with_name(out.stem + "_runs.csv"),
        out.with_suffix(".png"),
    )
    _write_csv(csv_path, _summary_rows(doc["configs"]))
    _write_csv(runs_path, [asdict(r) for r in records])
    env = doc["environment"]
    title = f"{doc['settings']['model_id']} on {env['card'] or env['cpu_model']} ({doc['settings']['n_tokens_note']})"
    plot_stages(doc["configs"], title).savefig(png_path, dpi=120)
    return [out, csv_path, runs_path, png_path]


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.performance.bench",
        description="Per-stage RTF benchmark of flow-step / dtype / backend settings.",
    )
    add_model_args(parser)
    parser.add_argument("--flow_steps", type=int, nargs="+", default=[10, 5])
    parser.add_argument("--dtype", nargs="+", default=["float32", "float16", "bfloat16"])
    parser.add_argument(
        "--backend", nargs="+", default=["auto"], help="flow backends, passed to load_pipeline"
    )
    parser.add_argument(
        "--llm_backend",
        default="auto",
        help="LLM decode path, passed to load_pipeline (auto, eager, cuda-graph, cuda-graph-compiled, "
        "cuda-graph-triton)",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per configuration")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed runs per configuration")
    parser.add_argument(
        "--fixed_tokens",
        type=int,
        default=DEFAULT_FIXED_TOKENS,
        help="speech tokens per sentence, forced (0: let the model stop by itself)",
    )
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt id of assets/prompts/manifest.json")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="also stream every run (Pipeline.stream): first-chunk latency, chunk intervals, streaming RTF",
    )
    parser.add_argument(
        "--prompt_seconds",
        type=float,
        default=None,
        help="cut the prompt clip to its first seconds (e.g. 3 for a 75-token prompt)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default results/bench/bench-<UTC>.json)"
    )
    return parser


def _check_args(args: argparse.Namespace) -> list[BenchConfig]:
    if args.runs < 1 or args.warmup < 0:
        raise ValueError("--runs must be at least 1 and --warmup at least 0")
    if args.prompt_seconds is not None and args.prompt_seconds <= 0:
        raise ValueError("--prompt_seconds must be positive")
    if args.fixed_tokens < 0:
        raise ValueError("--fixed_tokens must be 0 (natural stop) or a positive number of tokens")
    for name in ("flow_steps", "dtype", "backend"):
        values = getattr(args, name)
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} repeats a value: {values}")
    return [BenchConfig(b, ConfigId(d, s)) for b in args.backend for d in args.dtype for s in args.flow_steps]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        configs = _check_args(args)
        fixed = args.fixed_tokens or None
        summaries, records, info = run_benchmark(
            model_source(args),
            configs,
            device=args.device,
            text=args.text,
            prompt_id=args.prompt,
            runs=args.runs,
            warmup=args.warmup,
            fixed_tokens=fixed,
            llm_backend=args.llm_backend,
            streaming=args.streaming,
            prompt_seconds=args.prompt_seconds,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    env = environment_info(info["device"], "eval.performance.bench", argv)
    settings = {
        **{k: info[k] for k in ("model_id", "model_hash", "model_dir", "random_weights")},
        "text": args.text,
        "prompt_id": args.prompt,
        "runs": args.runs,
        "warmup": args.warmup,
        "fixed_tokens": fixed,
        "flow_steps": args.flow_steps,
        "dtypes": args.dtype,
        "backends_requested": args.backend,
        "backends_ran": sorted({c["backend_ran"] for c in summaries}),
        "llm_backend": info["llm_backend"],
        "n_tokens_note": f"{fixed} forced tokens per sentence" if fixed else "natural stop",
        "streaming": args.streaming,
        "prompt_seconds": args.prompt_seconds,
        "prompt_tokens": info["prompt_tokens"],
        "method": "every timed run generates its own tokens and renders them; stage times are the "
        "core's device-synchronised timings; speed-up = RTF_first / RTF of medians",
    }
    env["backend"] = ", ".join(settings["backends_ran"])
    doc = {"bench_version": BENCH_VERSION, "environment": env, "settings": settings, "configs": summaries}
    doc["runs"] = [asdict(r) for r in records]
    if args.streaming:
        doc["streaming_flow_ratio_n5_over_n10"] = flow_step_ratios(summaries)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "results" / "bench" / f"bench-{stamp}.json"
    paths = write_outputs(out, doc, records)
    print(
        f"{info['model_id']} on {env['device']}, torch {env['torch_version']}, {settings['n_tokens_note']}, "
        f"prompt {info['prompt_tokens']} speech tokens"
    )
    if info["random_weights"]:
        print("random-weight model: timings are meaningful, the audio is not speech")
    print(format_table(summaries))
    if args.streaming:
        print("streaming (Pipeline.stream, the LLM decoding while chunks render):")
        print(format_stream_table(summaries))
        for key, ratio in doc["streaming_flow_ratio_n5_over_n10"].items():
            print(f"streaming flow time, 5 / 10 steps, {key}: {ratio:.3f}")
    print(f"memory: {summaries[0]['memory']['kind']}; speed-up against {summaries[0]['label']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
