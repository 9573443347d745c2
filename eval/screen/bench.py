"""What the screen costs per 10 s clip, per measure, and whether it slows synthesis running beside it.

Command line::

    python -m eval.screen.bench [--clip_s 10] [--runs 5] [--warmup 1] [--asr-model DIR --asr-device cuda]
        [--asr-in-worker] [--model_dir DIR | --demo] [--synthesis [--device cuda] [--fixed_tokens 250]]
        [--out results/screen_bench.json]

``--model_dir`` adds the model's campplus.onnx to the similarity set (NOTE: a random-weight model
from ``tts_core.model.factory`` carries a tiny CAM++ stand-in, not the released network's cost).

The clip is real speech: the English flite/espeak-ng prompt clips of ``assets/prompts`` joined
(with 0.3 s pauses) and repeated up to ``clip_s`` seconds at 24 kHz (the pipeline's rate), with their
transcripts as the text, so pocketsphinx decodes speech, not noise. For each measure set
(flags only; DNSMOS; speaker similarity; ASR; everything) a screener is loaded (load time
recorded), ``warmup`` screens run untimed, then ``runs`` are timed; a measure's cost is its set's
median minus the flags-only median. The voice prompt's embeddings are made once, outside the timing
(the app and the CLI embed each prompt once).

It also measures how fast a pure-Python thread runs while the whole screen works, against idle:
pocketsphinx holds the GIL for a whole decode unless ``--asr-in-worker`` moves it to a worker process
(what the app does), and a server's other threads (the UI, the next synthesis) need the GIL.

``--synthesis`` also times ``runs`` syntheses of the model alone and then with a thread screening
the clip in a loop beside them, the playground's situation (the screen starts when the clips are
out, and the next pair may be requested while it runs): the ratio says whether the screen slows the
clips.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eval.performance.runinfo import EXIT_BAD_INPUT, ROOT, environment_info, model_source
from eval.serving.trials import load_prompts
from tts_core.constants import SAMPLE_RATE
from tts_core.frontend.audio import resample

from .options import ScreenOptions
from .screener import CampplusSource, ClipInput, Screener, load_screener

MEASURE_SETS: dict[str, tuple[str, ...]] = {
    "flags": ("flags",),
    "dnsmos": ("dnsmos", "flags"),
    "similarity": ("similarity", "flags"),
    "asr": ("asr", "flags"),
    "all": ("dnsmos", "similarity", "asr", "flags"),
}
PAUSE_S = 0.3
BENCH_TEXT = "The weather forecast says it will rain tomorrow afternoon, so bring an umbrella."


@dataclass(frozen=True)
class SetTiming:
    name: str
    load_s: float
    median_s: float
    low_s: float
    high_s: float
    cost_s: float  # median minus the flags-only median (the measure's own cost)


def speech_clip(clip_s: float) -> tuple[np.ndarray, str, tuple[np.ndarray, int]]:
    """(clip (N,) float32 at 24 kHz of ``clip_s`` seconds, its text, one voice prompt (audio, rate))."""
    prompts = [p for p in load_prompts().values() if p.language == "en"]
    pieces, words, total = [], [], 0
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    while total < clip_s * SAMPLE_RATE:
        for p in prompts:
            audio, rate = p.load()
            pieces += [resample(audio, rate, SAMPLE_RATE), pause]
            words.append(p.transcript)
            total += pieces[-2].size + pause.size
            if total >= clip_s * SAMPLE_RATE:
                break
    clip = np.concatenate(pieces)[: int(clip_s * SAMPLE_RATE)]
    # The text of what the clip says (the last piece may be cut: its words count as deletions).
    return clip, " ".join(words), prompts[0].load()


def thread_progress(work, seconds_idle: float) -> float:
    """How far a pure-Python thread gets while ``work()`` runs, relative to an idle stretch of
    ``seconds_idle``: 1.0 means the work left it alone, near 0 that the work held the GIL."""

    def rate(during) -> float:
        stop, counts = threading.Event(), []

        def count() -> None:
            n = 0
            while not stop.is_set():
                n += 1
            counts.append(n)

        thread = threading.Thread(target=count)
        thread.start()
        start = time.perf_counter()
        during()
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join()
        return counts[0] / elapsed

    return rate(work) / rate(lambda: time.sleep(seconds_idle))


def time_set(
    measures: tuple[str, ...],
    clip: ClipInput,
    prompt: tuple[np.ndarray, int],
    runs: int,
    warmup: int,
    asr_model: Path | None,
    asr_device: str,
    asr_in_worker: bool,
    campplus: CampplusSource | None,
) -> tuple[float, list[float], Screener]:
    """(load seconds, per-run screen seconds, the screener) of one measure set on ``clip``."""
    start = time.perf_counter()
    screener = load_screener(ScreenOptions(measures=measures), campplus, asr_model, asr_device, asr_in_worker)
    load_s = time.perf_counter() - start
    reference = screener.speaker_reference(*prompt)
    item = ClipInput(clip.audio, clip.sample_rate, clip.text, reference, None, "en")
    for _ in range(warmup):
        screener.screen(item)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        screener.screen(item)
        times.append(time.perf_counter() - start)
    return load_s, times, screener


def synthesis_beside_screen(args, screener: Screener, clip: ClipInput, prompt) -> dict:
    """Median synthesis seconds alone and with a screening thread beside it."""
    from tts_core import SynthesisOptions, load_pipeline

    pipe = load_pipeline(model_source(args), device=args.device)
    features = pipe.prepare_prompt(*prompt, load_prompts()["en_flite_slt"].transcript)
    opts = SynthesisOptions(
        flow_steps=5, dtype="float32" if pipe.info.device == "cpu" else "bfloat16", seed=0
    )
    opts = opts.replace(fixed_tokens=args.fixed_tokens)
    if pipe.info.device != "cpu":  # compile and capture first: one-time costs are not the screen's
        from tts_core.config_id import ConfigId

        pipe.warmup([ConfigId(opts.dtype, opts.flow_steps)])
    reference = screener.speaker_reference(*prompt)
    item = ClipInput(clip.audio, clip.sample_rate, clip.text, reference, None, "en")

    def synth_times() -> list[float]:
        for _ in range(args.warmup):
            pipe.synthesize(BENCH_TEXT, features, opts)
        out = []
        for _ in range(args.runs):
            result = pipe.synthesize(BENCH_TEXT, features, opts)
            out.append(result.timings.total)
        return out

    alone = synth_times()
    stop = threading.Event()
    screens = []

    def screen_loop() -> None:
        while not stop.is_set():
            screener.screen(item)
            screens.append(1)

    worker = threading.Thread(target=screen_loop, daemon=True)
    worker.start()
    beside = synth_times()
    stop.set()
    worker.join()
    return {
        "model": pipe.info.model_id,
        "device": pipe.info.device,
        "options": asdict(opts),
        "synthesis_alone_s": alone,
        "synthesis_beside_screen_s": beside,
        "slowdown": statistics.median(beside) / statistics.median(alone),
        "screens_during": len(screens),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.screen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--clip_s", type=float, default=10.0, help="seconds of speech per screened clip")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--asr-model", dest="asr_model", type=Path, default=None, help="local Whisper directory"
    )
    parser.add_argument("--asr-device", dest="asr_device", default="cpu")
    parser.add_argument(
        "--asr-in-worker",
        dest="asr_in_worker",
        action="store_true",
        help="pocketsphinx in a worker process (as the app)",
    )
    parser.add_argument(
        "--synthesis", action="store_true", help="also time synthesis alone and beside the screen"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model_dir", default=None, help="model for --synthesis; its campplus.onnx is timed too"
    )
    source.add_argument("--demo", action="store_true", help="the random-weight demo model for --synthesis")
    parser.add_argument("--device", default=None, help="synthesis device (default: CUDA when available)")
    parser.add_argument(
        "--fixed_tokens", type=int, default=250, help="speech tokens per synthesis (250 = 10 s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "screen_bench.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.clip_s <= 1:
        print("error: need --runs >= 1, --warmup >= 0 and --clip_s > 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.synthesis and not (args.model_dir or args.demo):
        print("error: --synthesis needs --model_dir DIR or --demo", file=sys.stderr)
        return EXIT_BAD_INPUT
    load_before = os.getloadavg()  # a shared machine: say how busy it was
    audio, text, prompt = speech_clip(args.clip_s)
    clip = ClipInput(audio, SAMPLE_RATE, text)
    campplus = None
    if args.model_dir or args.demo:  # the model's CAM++ joins the similarity set
        from tts_core.frontend.speech_frontend import CAMPPLUS_FILE

        path = Path(model_source(args)) / CAMPPLUS_FILE
        campplus = CampplusSource(path, bool(args.demo)) if path.is_file() else None
    sets, raw, screener_all = [], {}, None
    for name, measures in MEASURE_SETS.items():
        load_s, times, screener = time_set(
            measures,
            clip,
            prompt,
            args.runs,
            args.warmup,
            args.asr_model,
            args.asr_device,
            args.asr_in_worker,
            campplus,
        )
        raw[name] = times
        base = statistics.median(raw["flags"])
        med = statistics.median(times)
        sets.append(
            SetTiming(name, load_s, med, min(times), max(times), med - base if name != "flags" else med)
        )
        screener_all = screener
        print(
            f"{name:10s} load {load_s:6.2f} s   screen median {med:6.3f} s [{min(times):.3f}, {max(times):.3f}]"
        )
    # The last set screens everything: how much of the GIL does it leave to the app's other threads?
    item = ClipInput(
        clip.audio, clip.sample_rate, clip.text, screener_all.speaker_reference(*prompt), None, "en"
    )
    thread_speed = thread_progress(lambda: screener_all.screen(item), statistics.median(raw["all"]))
    print(f"a Python thread beside the screen runs at {thread_speed:.0%} of its idle speed")
    doc = {
        "clip_s": args.clip_s,
        "asr_in_worker": args.asr_in_worker,
        "runs": args.runs,
        "warmup": args.warmup,
        "measures": [asdict(m) for m in screener_all.measures()],
        "sets": [asdict(s) for s in sets],
        "python_thread_speed_beside_screen": thread_speed,
        "raw_s": raw,
        "environment": environment_info("cpu", "eval.screen.bench", argv),
    }
    if args.synthesis:
        doc["synthesis"] = synthesis_beside_screen(args, screener_all, clip, prompt)
        s = doc["synthesis"]
        print(
            f"synthesis median alone {statistics.median(s['synthesis_alone_s']):.3f} s, beside the screen "
            f"{statistics.median(s['synthesis_beside_screen_s']):.3f} s (x{s['slowdown']:.2f}, {s['screens_during']} screens)"
        )
    doc["load_average_1_5_15_min"] = {"before": load_before, "after": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
