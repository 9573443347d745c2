"""Streamed requests of sentences the warm-up never saw: is any one-time work left in them?

    PYTHONPATH=. python benchmarks/scripts/stream_new_lengths.py MODEL_DIR [--device cuda] \
        [--configs bfloat16-n5 float16-n10] [--prompt_seconds 3] [--fixed_tokens 250] [--out X.json]

Loads the pipeline, runs the app's warm-up (``Pipeline.warmup``) for the streamed configurations
(flow and chunk graphs up to prompt + ``fixed_tokens`` + a margin), then streams one request per
text of the shipped sentences (each a new prefill length) and prints, per request, the first-chunk
latency and the one-time work it still paid (should be none: the prefill graphs of every length
bucket are captured by the warm-up). The same path as ``eval.performance.bench --streaming``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from eval.serving.trials import load_prompts, load_texts
from tts_core import load_pipeline
from tts_core.config_id import ConfigId
from tts_core.options import SynthesisOptions

PROMPT_ID = "en_flite_slt"
MARGIN_TOKENS = 32  # flow buckets warmed beyond prompt + fixed tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--device", default=None)
    parser.add_argument("--configs", nargs="+", default=["bfloat16-n5", "float16-n10"])
    parser.add_argument("--prompt_seconds", type=float, default=3.0)
    parser.add_argument("--fixed_tokens", type=int, default=250)
    parser.add_argument("--texts", type=int, default=12, help="how many shipped English sentences")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    pipe = load_pipeline(args.model_dir, device=args.device)
    asset = load_prompts()[PROMPT_ID]
    audio, rate = asset.load()
    prompt = pipe.prepare_prompt(audio[: int(round(args.prompt_seconds * rate))], rate, asset.transcript)
    configs = [dataclasses.replace(ConfigId.parse(c), streaming=True) for c in args.configs]
    report = pipe.warmup(configs, max_tokens=prompt.speech_tokens.numel() + args.fixed_tokens + MARGIN_TOKENS)
    print(report.summary())
    texts = [t.text for t in load_texts().values() if t.language == "en"][: args.texts]
    rows = []
    for config in configs:
        options = SynthesisOptions(fixed_tokens=args.fixed_tokens).with_config(config)
        for text in texts:
            result = pipe.synthesize(text, prompt, options)
            rows.append(
                {
                    "config": config.label,
                    "text_chars": len(text),
                    "first_chunk_ms": 1e3 * result.stream.first_chunk_latency,
                    "rtf": result.rtf,
                    "one_time": [f"{w.what} ({w.seconds:.3f} s)" for w in result.one_time],
                }
            )
            r = rows[-1]
            print(
                f"{r['config']:<22} {r['text_chars']:>4} chars  first chunk {r['first_chunk_ms']:6.1f} ms  "
                f"RTF {r['rtf']:.4f}  one-time: {'; '.join(r['one_time']) or 'none'}"
            )
    for config in configs:
        mine = [r["first_chunk_ms"] for r in rows if r["config"] == config.label]
        paid = sum(bool(r["one_time"]) for r in rows if r["config"] == config.label)
        print(
            f"{config.label}: first chunk median {statistics.median(mine):.1f} ms, max {max(mine):.1f} ms over "
            f"{len(mine)} new sentences; {paid} paid one-time work"
        )
    if args.out:
        args.out.write_text(json.dumps({"warmup": report.summary(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
