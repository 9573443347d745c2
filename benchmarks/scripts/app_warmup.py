"""The app's GPU start-up and live timings, through the app's own code (no browser).

    python benchmarks/scripts/app_warmup.py MODEL_DIR --out warmup.json

1. ``app.warm_up``'s work: ``Pipeline.warmup`` over ``app.warmup_configs`` (every step count of the
   presets and the example plan, in every dtype the device runs), with its time and GPU memory;
2. the playground's ``render_pair`` for the default pair (float16-n10 vs bfloat16-n5, same tokens)
   on three texts, each rendered twice: flow times, RTF as the UI prints it, one-time work.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from abapp.synthesis import make_options, render_pair, result_markdown  # noqa: E402
from abapp.ui import make_context  # noqa: E402
from app import warmup_configs  # noqa: E402
from eval.serving.ratings import RatingsStore  # noqa: E402
from eval.serving.trials import load_plan  # noqa: E402
from tts_core import load_pipeline  # noqa: E402

TEXT_IDS = ("en_02", "en_07", "en_13")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    t0 = time.perf_counter()
    pipe = load_pipeline(args.model_dir, device="cuda")
    load_s = time.perf_counter() - t0
    plan = load_plan(ROOT / "assets" / "plans" / "example.json")
    configs = warmup_configs(pipe.info.dtypes, plan.configs)
    report = pipe.warmup(configs)
    print(report.summary(), flush=True)
    by_kind: dict[str, float] = {}
    for w in report.work:
        kind = w.what.split(":")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + w.seconds
    ctx = make_context(pipe, RatingsStore(Path(tempfile.mkdtemp()) / "r.csv"), Path(tempfile.mkdtemp()))
    asset = ctx.prompts["en_flite_slt"]
    renders = []
    for text_id in TEXT_IDS:
        for attempt in (1, 2):
            a, b = make_options(10, "float16", 0, "A"), make_options(5, "bfloat16", 0, "B")
            out = render_pair(
                ctx,
                ctx.texts[text_id].text,
                str(asset.path),
                asset.transcript,
                a,
                b,
                "same",
                lambda f, m: None,
            )
            for side, res, opts in (("A", out.result_a, a), ("B", out.result_b, b)):
                shown = float(re.search(r"RTF \*\*([0-9.]+)\*\*", result_markdown(side, res, opts, True))[1])
                renders.append(
                    {
                        "text_id": text_id,
                        "attempt": attempt,
                        "config": opts.config.label,
                        "tokens": sum(int(s.numel()) for s in res.speech_tokens),
                        "audio_s": res.duration,
                        "flow_ms": 1000 * res.timings.flow,
                        "vocoder_ms": 1000 * res.timings.vocoder,
                        "llm_ms": 1000 * res.timings.llm,
                        "rtf_core": res.rtf,
                        "rtf_shown": shown,
                        "one_time_s": res.one_time_seconds,
                        "one_time": [w.what for w in res.one_time],
                        "backend": res.backend,
                        "llm_backend": res.llm_backend,
                    }
                )
                print(json.dumps(renders[-1]), flush=True)
    doc = {
        "device": pipe.info.device,
        "load_s": load_s,
        "configs": [c.label for c in configs],
        "warmup_s": report.seconds,
        "warmup_memory_mb": report.device_memory_mb,
        "warmup_pieces": len(report.work),
        "warmup_seconds_by_kind": by_kind,
        "renders": renders,
    }
    args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
