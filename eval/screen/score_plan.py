"""Batch objective scorer: every configuration of a test plan against the reference rendering.

Command line::

    python -m eval.screen.score_plan PLAN --model_dir DIR | --demo [--reference float32-n10]
        [--device cuda] [--backend auto] [--fixed_tokens N] [--out scores.csv]

For every (text, prompt) stimulus of the plan (``eval.serving.trials`` format) the LLM runs ONCE, in the
reference configuration (dtype and the plan's seed); the reference rendering and every
configuration of the plan are rendered from those SAME tokens, and each rendering is scored
against the reference with :func:`eval.screen.objective.compare` (mel L1, LSD, MCD, F0 RMSE; PESQ/STOI
when installed). So the scores isolate the FLOW setting (steps, flow dtype): a configuration whose
LLM dtype differs from the reference's is not tested on its LLM here, and its rows say so.

A plan configuration equal to the reference is rendered a second time, not reused: its distances
(0 on CPU) are the noise floor of rendering itself.

Writes one CSV row per text x prompt x config, a JSON summary beside it, and prints the mean and
median per configuration, telling the experimenter which configurations are measurably different
before anyone listens.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.performance.runinfo import EXIT_BAD_INPUT, ROOT, add_model_args, environment_info, model_source
from eval.serving.clipbank import stimulus_options
from eval.serving.trials import TestPlan, load_plan, load_prompts, load_texts
from tts_core.config_id import ConfigId

DEFAULT_REFERENCE = "float32-n10"
DISTANCES = ("mel_l1", "lsd_db", "mcd_db", "f0_rmse_hz", "pesq", "stoi")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScoreRow:
    """Distances of one rendering from the reference rendering of the same tokens."""

    text_id: str
    prompt_id: str
    config: str  # plan label, e.g. "bfloat16-n5"
    dtype: str
    flow_steps: int
    dtype_ran: str
    backend: str
    reference: str  # label of the reference configuration the tokens and the reference audio come from
    is_reference: bool  # the configuration equals the reference (its distances are the noise floor)
    n_tokens: int
    audio_s: float
    flow_s: float
    mel_l1: float | None
    lsd_db: float
    mcd_db: float
    f0_rmse_hz: float | None
    f0_frames: int
    pesq: float | None
    stoi: float | None
    note: str


def score_plan(
    plan: TestPlan,
    pipeline,
    reference: ConfigId,
    *,
    fixed_tokens: int | None = None,
    texts: dict | None = None,
    prompts: dict | None = None,
    progress: Progress | None = None,
) -> list[ScoreRow]:
    """Score every configuration of ``plan`` against ``reference`` (rows in plan order per stimulus).

    fixed_tokens: force this many speech tokens per sentence (quick runs, random-weight models);
        None lets the model stop by itself.
    """
    from eval.screen.objective import compare

    texts = texts if texts is not None else load_texts()
    prompts = prompts if prompts is not None else load_prompts()
    ref_opts = stimulus_options(plan, reference).replace(fixed_tokens=fixed_tokens)
    features: dict = {}
    rows: list[ScoreRow] = []
    for text_id, prompt_id in plan.stimuli(texts, prompts):
        if prompt_id not in features:
            asset = prompts[prompt_id]
            audio, rate = asset.load()
            features[prompt_id] = pipeline.prepare_prompt(audio, rate, asset.transcript)
        prompt = features[prompt_id]
        tokens = pipeline.generate_tokens(texts[text_id].text, prompt, ref_opts)
        ref = pipeline.tokens_to_audio(tokens, prompt, ref_opts)
        for config in plan.configs:
            # Same seed as the reference: the vocoder's excitation noise is identical too.
            opts = stimulus_options(plan, config).replace(fixed_tokens=fixed_tokens)
            res = pipeline.tokens_to_audio(tokens, prompt, opts)
            d = compare(ref.audio, res.audio, ref.sample_rate, ref.mel, res.mel)
            notes = list(res.warnings)
            if config.dtype != reference.dtype:
                notes.append(f"LLM not tested: tokens from {reference.label}; flow in {res.dtype_ran}")
            rows.append(
                ScoreRow(
                    text_id=text_id,
                    prompt_id=prompt_id,
                    config=config.label,
                    dtype=config.dtype,
                    flow_steps=config.flow_steps,
                    dtype_ran=res.dtype_ran,
                    backend=res.backend,
                    reference=reference.label,
                    is_reference=config == reference,
                    n_tokens=tokens.n_tokens,
                    audio_s=res.duration,
                    flow_s=res.timings.flow,
                    mel_l1=d.mel_l1,
                    lsd_db=d.lsd_db,
                    mcd_db=d.mcd_db,
                    f0_rmse_hz=d.f0_rmse_hz,
                    f0_frames=d.f0_frames,
                    pesq=d.pesq,
                    stoi=d.stoi,
                    note="; ".join(notes),
                )
            )
            if progress is not None:
                progress(f"{text_id} / {prompt_id} / {config.label}")
    return rows


def summarize_scores(rows: Sequence[ScoreRow]) -> list[dict]:
    """Per configuration (first-seen order): n and mean / median of every distance (None skipped)."""
    out = []
    for label in dict.fromkeys(r.config for r in rows):
        mine = [r for r in rows if r.config == label]
        entry: dict = {"config": label, "n": len(mine), "is_reference": mine[0].is_reference}
        for name in DISTANCES:
            values = [getattr(r, name) for r in mine if getattr(r, name) is not None]
            entry[f"{name}_mean"] = float(np.mean(values)) if values else None
            entry[f"{name}_median"] = float(np.median(values)) if values else None
        out.append(entry)
    return out


def format_summary(summary: list[dict]) -> str:
    def cell(entry: dict, name: str) -> str:
        mean, med = entry[f"{name}_mean"], entry[f"{name}_median"]
        return "-" if mean is None else f"{mean:.4f} / {med:.4f}"

    shown = [n for n in DISTANCES if any(e[f"{n}_mean"] is not None for e in summary)]
    head = ["config", "n", *[f"{n} mean / median" for n in shown]]
    rows = [head]
    for e in summary:
        label = e["config"] + (" (= reference)" if e["is_reference"] else "")
        rows.append([label, str(e["n"]), *[cell(e, n) for n in shown]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def write_scores(path: Path, rows: Sequence[ScoreRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(ScoreRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.screen.score_plan",
        description="Objective distances of every configuration of a test plan from the reference rendering.",
    )
    parser.add_argument("plan", type=Path, help="test plan (.json/.yaml), e.g. assets/plans/example.json")
    add_model_args(parser)
    parser.add_argument("--backend", default="auto", help="flow backend, passed to load_pipeline")
    parser.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help="configuration label of the reference rendering, e.g. float32-n10"
    )
    parser.add_argument(
        "--fixed_tokens", type=int, default=None, help="force N speech tokens per sentence (quick runs)"
    )
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default results/scores/<plan>.csv)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        reference = ConfigId.parse(args.reference)
        plan = load_plan(args.plan)
        texts, prompts = load_texts(), load_prompts()
        n_items = len(plan.stimuli(texts, prompts)) * len(plan.configs)  # checks the ids before loading
        from tqdm import tqdm

        from tts_core import load_pipeline

        pipe = load_pipeline(model_source(args), device=args.device, backend=args.backend)
        with tqdm(total=n_items, desc="score", unit="clip") as bar:

            def step(message: str) -> None:
                bar.set_postfix_str(message)
                bar.update()

            rows = score_plan(
                plan,
                pipe,
                reference,
                fixed_tokens=args.fixed_tokens,
                texts=texts,
                prompts=prompts,
                progress=step,
            )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or ROOT / "results" / "scores" / f"{args.plan.stem}.csv"
    write_scores(out, rows)
    summary = summarize_scores(rows)
    doc = {
        "plan": plan.name,
        "plan_digest": plan.digest(),
        "reference": reference.label,
        "fixed_tokens": args.fixed_tokens,
        "model": asdict(pipe.info),
        "environment": environment_info(pipe.info.device, "eval.screen.score_plan", argv),
        "method": "tokens from the reference configuration; every configuration rendered from them with "
        "the plan's seed and compared to the reference rendering (eval.screen.objective.compare)",
        "configs": summary,
    }
    summary_path = out.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(
        f"plan {plan.name!r}: {len(rows)} renderings scored against {reference.label} ({pipe.info.model_id})"
    )
    if pipe.info.random_weights:
        print("random-weight model: the distances exercise the tools, they say nothing about speech")
    if any(c.dtype != reference.dtype for c in plan.configs):
        print(
            f"note: every configuration renders tokens of the {reference.dtype} LLM: only the flow setting differs"
        )
    print(format_summary(summary))
    print(f"wrote {out} and {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
