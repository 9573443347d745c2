"""Screen every clip of a test plan's clip bank before anyone listens, per configuration.

Command line::

    python -m eval.screen.plan PLAN --model_dir DIR | --demo [--device cuda] [--bank data/clips]
        [--asr-model WHISPER_DIR] [--asr-device cuda] [--measures dnsmos similarity asr flags]
        [--out results/screen/<plan>]

Clips missing from the bank (``eval.serving.clipbank``, the app's ``DATA/clips``) are synthesised first,
exactly as the app's "Pre-generate clips" does, so the screened clips are the ones listeners hear.
Each clip is screened against its text and its voice prompt (:mod:`eval.screen.screener`).

Writes into ``--out``: ``clips.csv`` (one row per clip), ``summary.csv`` (per configuration: mean,
sd, min, max of each measure, flagged count per flag, the flagged clips), ``summary.json`` (the same
plus every measure's model and version or why it did not run, the options and the environment) and
``summary.png``; prints the table. Exit code 2 for a bad plan or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.performance.runinfo import EXIT_BAD_INPUT, ROOT, add_model_args, environment_info, model_source
from eval.serving.clipbank import Clip, ClipBank, build_bank
from eval.serving.trials import PromptAsset, TestPlan, TextItem, load_plan, load_prompts, load_texts
from eval.statistics.summary import format_number

from .options import MEASURES, ScreenOptions
from .screener import CampplusSource, ClipInput, Screener, load_screener
from .summary import (
    ClipRow,
    ConfigScreen,
    clip_row,
    plot_summary,
    summarize,
    summary_table,
    write_rows,
    write_table,
)

DEFAULT_BANK = ROOT / "data" / "clips"  # the app's default (app.py: DATA/clips)
Progress = Callable[[str], None]


def clip_tokens(clip: Clip) -> list[int] | None:
    """The LLM's speech tokens of a bank clip (all segments), or None for clips made before they were kept."""
    segments = clip.meta.get("speech_tokens")
    return None if segments is None else [int(t) for seg in segments for t in seg]


def bank_clips(
    plan: TestPlan,
    bank: ClipBank,
    model_hash: str,
    texts: Mapping[str, TextItem],
    prompts: Mapping[str, PromptAsset],
) -> tuple[dict[tuple[str, str, str], Clip], int]:
    """({(text id, prompt id, config label): clip} of the plan's clips already in ``bank``, clips missing)."""
    from eval.serving.clipbank import stimulus_keys

    keys = stimulus_keys(plan, model_hash, dict(texts), dict(prompts))
    found = {stimulus: bank.get(key) for stimulus, key in keys.items()}
    return {s: c for s, c in found.items() if c is not None}, sum(c is None for c in found.values())


def screen_bank(
    plan: TestPlan,
    clips: Mapping[tuple[str, str, str], Clip],
    screener: Screener,
    texts: Mapping[str, TextItem],
    prompts: Mapping[str, PromptAsset],
    progress: Progress | None = None,
) -> list[ClipRow]:
    """Screen ``clips`` ({(text id, prompt id, config label): clip}) in plan order; prompts embedded once."""
    references = {}
    rows = []
    for (text_id, prompt_id, label), clip in clips.items():
        if prompt_id not in references:
            references[prompt_id] = screener.speaker_reference(*prompts[prompt_id].load())
        audio, rate = sf.read(clip.wav_path, dtype="float32", always_2d=False)
        text = texts[text_id]
        result = screener.screen(
            ClipInput(audio, int(rate), text.text, references[prompt_id], clip_tokens(clip), text.language)
        )
        rows.append(clip_row(text_id, prompt_id, label, clip.key, result))
        if progress is not None:
            progress(f"{text_id} / {prompt_id} / {label}")
    return rows




def format_summary(summary: Sequence[ConfigScreen]) -> str:
    """A fixed-width table: per configuration the mean +- sd of each measure and the flagged count."""
    shown = [("dnsmos_ovrl", "OVRL"), ("dnsmos_p808", "P.808"), ("sim_campplus", "sim CAM++"),
             ("sim_resemblyzer", "sim resemblyzer"), ("error_rate", "WER/CER")]  # fmt: skip
    head = ["config", "clips", *[name for _, name in shown], "flagged"]
    lines = [head]
    for s in summary:
        cells = [s.config, str(s.n_clips)]
        for key, _ in shown:
            st = s.stat(key)
            cells.append("-" if st is None else f"{st.mean:.3f} +- {format_number(st.sd, '.3f')}")
        cells.append(str(s.n_flagged))
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    text = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in lines)
    flagged = [f"  {s.config}: {f.text_id} / {f.prompt_id}: {f.details}" for s in summary for f in s.flagged]
    return text + ("\nflagged clips:\n" + "\n".join(flagged) if flagged else "\nno clip flagged")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.screen.plan",
        description="Screen every clip of a test plan (predicted MOS, speaker similarity, WER/CER, failure flags).",
    )
    parser.add_argument("plan", type=Path, help="test plan (.json/.yaml), e.g. assets/plans/example.json")
    add_model_args(parser)
    parser.add_argument(
        "--bank", type=Path, default=DEFAULT_BANK, help=f"clip bank folder (default {DEFAULT_BANK})"
    )
    parser.add_argument(
        "--asr-model", dest="asr_model", type=Path, default=None, help="local Whisper model directory"
    )
    parser.add_argument("--asr-device", dest="asr_device", default="cpu", help="device of the Whisper model")
    parser.add_argument(
        "--measures", nargs="+", choices=MEASURES, default=list(MEASURES), help="what to compute"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default results/screen/<plan>)"
    )
    return parser


def write_outputs(out: Path, rows: Sequence[ClipRow], summary: Sequence[ConfigScreen], doc: dict) -> list[Path]:
    """clips.csv, summary.csv, summary.json (``doc``, see :func:`summary_document`) and summary.png in ``out``."""
    written = [write_rows(out / "clips.csv", rows), write_table(out / "summary.csv", summary_table(summary))]
    (out / "summary.json").write_text(
        json.dumps(doc, indent=1, ensure_ascii=False, default=str), encoding="utf-8"
    )
    fig = plot_summary(rows, summary)
    fig.savefig(out / "summary.png", dpi=120)
    return [*written, out / "summary.json", out / "summary.png"]


def summary_document(
    plan: TestPlan,
    bank: Path,
    model_info,
    screener: Screener,
    summary: Sequence[ConfigScreen],
    environment: dict,
) -> dict:
    """What summary.json holds: the plan, the model (a :class:`tts_core.results.ModelInfo`), the screen's
    options and measures (model and version, or why not), the environment and the per-configuration summary."""
    return _json_safe(
        {
            "plan": plan.name,
            "plan_digest": plan.digest(),
            "bank": str(bank),
            "model": asdict(model_info),
            "options": asdict(screener.options),
            "measures": [asdict(m) for m in screener.measures()],
            "environment": environment,
            "configs": [asdict(s) for s in summary],
        }
    )


def _json_safe(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    try:
        options = ScreenOptions(measures=tuple(dict.fromkeys(args.measures)))
        plan = load_plan(args.plan)
        texts, prompts = load_texts(), load_prompts()
        n_clips = len(plan.stimuli(texts, prompts)) * len(plan.configs)  # checks the ids before loading
        from tts_core import load_pipeline
        from tts_core.frontend.speech_frontend import CAMPPLUS_FILE

        pipe = load_pipeline(model_source(args), device=args.device)
        with tqdm(total=n_clips, desc="clips", unit="clip") as bar:
            clips = build_bank(
                plan, pipe, ClipBank(args.bank), texts, prompts, lambda d, t, m: bar.update(d - bar.n)
            )
        campplus = Path(pipe.info.model_dir) / CAMPPLUS_FILE
        screener = load_screener(
            options,
            CampplusSource(campplus, pipe.info.random_weights) if campplus.is_file() else None,
            args.asr_model,
            args.asr_device,
        )
        with tqdm(total=n_clips, desc="screen", unit="clip") as bar:

            def step(message: str) -> None:
                bar.set_postfix_str(message)
                bar.update()

            rows = screen_bank(plan, clips, screener, texts, prompts, step)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    summary = summarize(rows, [c.label for c in plan.configs])
    environment = environment_info(pipe.info.device, "eval.screen.plan", argv)
    doc = summary_document(plan, args.bank, pipe.info, screener, summary, environment)
    out = args.out or ROOT / "results" / "screen" / args.plan.stem
    written = write_outputs(out, rows, summary, doc)
    print(f"plan {plan.name!r}: {len(rows)} clips screened ({pipe.info.model_id})")
    if pipe.info.random_weights:
        print("random-weight model: its clips are noise, so the screen exercises the tools only")
    for m in screener.measures():
        print(f"  {m.name}: {m.model or '-'} {m.version}" + (f" ({m.reason})" if m.reason else ""))
    print(format_summary(summary))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
