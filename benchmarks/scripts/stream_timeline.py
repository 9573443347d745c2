"""Where the first chunk of ``Pipeline.stream`` spends its time: a timeline of one request.

    python benchmarks/scripts/stream_timeline.py MODEL_DIR [--device cuda] \
        [--configs bfloat16-n5 float16-n10] [--prompt_seconds 3] [--fixed_tokens 250] \
        [--runs 5] [--warmup 2] [--variants base switch prio check2] [--out timeline.json]

For each configuration and variant it streams ``runs`` requests (after ``warmup`` untimed ones)
and records, on one clock that starts at the request's start (device times from CUDA events,
converted to that clock; host times from ``time.perf_counter``):

* ``prefill``: the LLM prefill's end (device); ``tokens``: each decode step's end (device);
* ``handovers``: each piece the producer thread queued (host time, tokens so far);
* per chunk: the consumer entering ``render`` (host), flow start / flow end / vocoder end (device),
  the chunk on the host (``ready``, what first-chunk latency is).

Then the same pieces alone, nothing else on the device: prefill and decoding to the first
hop's tokens (stop check every 1 and every 8 tokens), one first-hop flow call, one first-hop
vocoder call (f0, excitation, decode split) and one whole first-hop render.

Variants (diagnostics, monkeypatched here, never in the core): ``base`` (the code as it is),
``switch`` (``sys.setswitchinterval(2e-4)``: is the GIL hand-over slow?), ``prio`` (the consumer
renders on a high-priority CUDA stream: does the flow fight the LLM for the GPU?), ``check2``
(stop check every 2 tokens), ``all`` (the three together).
Prints one table per configuration; ``--out`` writes every run's timeline as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tts_core.pipeline as pipeline_module  # noqa: E402
import tts_core.streaming.session as session_module  # noqa: E402
from tts_core import SynthesisOptions, load_pipeline  # noqa: E402
from tts_core.config_id import ConfigId  # noqa: E402
from tts_core.devices import DeviceInfo  # noqa: E402
from tts_core.llm.speech_lm import SpeechLM  # noqa: E402
from tts_core.llm.static_decoder import StaticDecoder  # noqa: E402
from tts_core.lru import LruCache  # noqa: E402
from tts_core.streaming.render import ChunkRenderer, DrawnExcitation  # noqa: E402
from tts_core.streaming.schedule import plan_stream_calls  # noqa: E402
from tts_core.streaming.session import llm_prompt_tokens  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "prompts"
TEXT = "The weather forecast says it will rain tomorrow afternoon, so bring an umbrella."  # eval.performance.bench's
PROMPT_ID = "en_flite_slt"
VARIANTS = ("base", "switch", "prio", "check2", "all")
ALONE_REPEATS = 10


class Clock:
    """Marks on one timeline starting at ``origin`` (host seconds): device events or host times."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.origin = time.perf_counter()
        self.ref: torch.cuda.Event | None = None
        self.ref_host = self.origin
        self.marks: list[tuple[str, object, dict]] = []

    def start(self, origin: float) -> None:
        """Restart the timeline at host time ``origin`` (just after a device sync)."""
        self.origin, self.marks = origin, []
        if self.cuda:
            self.ref = torch.cuda.Event(enable_timing=True)
            self.ref.record()
        self.ref_host = time.perf_counter()

    def device(self, name: str, **extra) -> None:
        """A device-side mark on the calling thread's current stream."""
        if not self.cuda:
            self.marks.append((name, time.perf_counter(), extra))
            return
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.marks.append((name, event, extra))

    def host(self, name: str, **extra) -> None:
        self.marks.append((name, time.perf_counter(), extra))

    def resolve(self) -> list[dict]:
        """Every mark as {"name", "ms", ...} on the host clock since ``origin`` (syncs the device)."""
        if self.cuda:
            torch.cuda.synchronize()
        out = []
        for name, mark, extra in list(self.marks):
            if isinstance(mark, float):
                ms = 1e3 * (mark - self.origin)
            else:
                ms = 1e3 * (self.ref_host - self.origin) + self.ref.elapsed_time(mark)  # type: ignore[union-attr]
            out.append({"name": name, "ms": ms, **extra})
        return sorted(out, key=lambda m: m["ms"])


CLOCK: Clock | None = None  # the active timeline; None: probes record nothing


def _mark_device(name: str, **extra) -> None:
    if CLOCK is not None:
        CLOCK.device(name, **extra)


def _mark_host(name: str, **extra) -> None:
    if CLOCK is not None:
        CLOCK.host(name, **extra)


class _TimedQueue(queue.Queue):
    """The producer's queue, marking each hand-over (host time, tokens so far)."""

    def __init__(self) -> None:
        super().__init__()
        self.n_tokens = 0

    def put(self, item, block=True, timeout=None):  # noqa: ANN001 - queue.Queue's signature
        if isinstance(item, session_module._Piece):
            self.n_tokens += len(item.tokens)
            _mark_host("handover", tokens=self.n_tokens)
        super().put(item, block, timeout)


class _TimedProducer(session_module._TokenProducer):
    def __init__(self, job, start: float) -> None:  # noqa: ANN001
        super().__init__(job, start)
        self.items = _TimedQueue()

    def run(self) -> None:
        _mark_host("producer_start")
        super().run()


class _TimedRenderer(ChunkRenderer):
    """Marks the consumer entering render, and flow start/end and vocoder end on the device."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - ChunkRenderer's
        super().__init__(*args, **kwargs)
        if CLOCK is not None:
            CLOCK.start(self.request_start)

    def render(self, segment, call, tokens):  # noqa: ANN001, ANN201
        _mark_host("render_enter", call=call.index)
        _mark_device("flow_start", call=call.index)
        samples = super().render(segment, call, tokens)
        _mark_host("render_exit", call=call.index)
        return samples

    def _vocode(self, new_mel, final):  # noqa: ANN001, ANN201
        _mark_device("flow_end", call=self._vocoder_calls)
        out = super()._vocode(new_mel, final)
        _mark_device("vocoder_end", call=self._vocoder_calls - 1)
        return out


class _TimedGraph:
    """Wraps a captured graph of the decoder: a device mark after each replay."""

    def __init__(self, graph: torch.cuda.CUDAGraph, name: str) -> None:
        self.graph = graph
        self.name = name

    def replay(self) -> None:
        self.graph.replay()
        _mark_device(self.name)


def install_probes() -> None:
    """Swap in the timed producer and renderer; mark the end of every prefill.

    The prefill probe patches the class: dtype copies are deep copies of the float32 model, so
    an instance attribute would be copied along with the model it belongs to.
    """
    session_module._TokenProducer = _TimedProducer  # type: ignore[misc]
    pipeline_module.ChunkRenderer = _TimedRenderer  # type: ignore[misc]
    inner = SpeechLM.forward_hidden
    inner_embeds = SpeechLM.prefill_embeddings

    def forward_hidden(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = inner(self, *args, **kwargs)
        _mark_device("prefill")
        return out

    def prefill_embeddings(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        _mark_host("prefill_start")
        return inner_embeds(self, *args, **kwargs)

    SpeechLM.forward_hidden = forward_hidden  # type: ignore[method-assign]
    SpeechLM.prefill_embeddings = prefill_embeddings  # type: ignore[method-assign]


def probe_decode_graphs(models) -> None:  # noqa: ANN001
    """Mark every decode step and graph prefill of the decoder's graphs (made by the warm-up)."""
    decoder = getattr(models.generate_pieces, "__self__", None)
    states = decoder._states._items.values() if isinstance(decoder, StaticDecoder) else ()
    for st in states:
        if st.graph is not None and not isinstance(st.graph, _TimedGraph):
            st.graph = _TimedGraph(st.graph, "token")
        for entry in st.prefills._items.values():
            if not isinstance(entry.graph, _TimedGraph):
                entry.graph = _TimedGraph(entry.graph, "prefill")


@contextlib.contextmanager
def variant(name: str, device: DeviceInfo) -> Iterator[None]:
    """Apply a diagnostic variant around the stream runs (see the module docstring)."""
    before_switch = sys.getswitchinterval()
    before_check = DeviceInfo.stop_check_every
    ctx: contextlib.AbstractContextManager = contextlib.nullcontext()
    if name in ("switch", "all"):
        sys.setswitchinterval(2e-4)
    if name in ("check2", "all"):
        DeviceInfo.stop_check_every = property(lambda self: 2)  # type: ignore[assignment, method-assign]
    if name in ("prio", "all") and device.is_cuda:
        ctx = torch.cuda.stream(torch.cuda.Stream(priority=-1))  # lower numbers run first
    try:
        with ctx:
            yield
    finally:
        sys.setswitchinterval(before_switch)
        DeviceInfo.stop_check_every = before_check  # type: ignore[method-assign]


@dataclass
class RunTimeline:
    variant: str
    first_chunk_ms: float
    marks: list[dict]
    summary: dict = field(default_factory=dict)


def summarise_marks(marks: list[dict], hop_tokens: int) -> dict:
    """The figures that say where the first chunk's time went (ms on the request's clock)."""
    tokens = [m["ms"] for m in marks if m["name"] == "token"]
    handovers = [(m["ms"], m["tokens"]) for m in marks if m["name"] == "handover"]
    by_call: dict[str, dict[int, float]] = {}
    for m in marks:
        if "call" in m:
            by_call.setdefault(m["name"], {})[m["call"]] = m["ms"]
    first = lambda name: by_call.get(name, {}).get(0, float("nan"))  # noqa: E731
    prefill = next((m["ms"] for m in marks if m["name"] == "prefill"), float("nan"))
    hand = next((t for t, n in handovers if n >= hop_tokens), float("nan"))
    out = {
        "producer_start": next((m["ms"] for m in marks if m["name"] == "producer_start"), float("nan")),
        "prefill_start": next((m["ms"] for m in marks if m["name"] == "prefill_start"), float("nan")),
        "prefill_end": prefill,
        "token_hop_end": tokens[hop_tokens - 1] if len(tokens) >= hop_tokens else float("nan"),
        "handover_hop": hand,
        "render_enter": first("render_enter"),
        "flow_start": first("flow_start"),
        "flow_end": first("flow_end"),
        "vocoder_end": first("vocoder_end"),
        "render_exit": first("render_exit"),
        "n_handovers_before_hop": sum(1 for _, n in handovers if n < hop_tokens),
    }
    out["first_flow_ms"] = out["flow_end"] - out["flow_start"]
    out["first_vocoder_ms"] = out["vocoder_end"] - out["flow_end"]
    out["decode_ms_per_token_before_hop"] = _per_token(tokens[:hop_tokens])
    busy = [t for t in tokens if out["flow_start"] <= t <= out["vocoder_end"]]
    out["decode_ms_per_token_during_first_render"] = _per_token(busy)
    out["decode_ms_per_token_overall"] = _per_token(tokens)
    gaps = np.diff(tokens[:hop_tokens]) if len(tokens) >= hop_tokens else np.zeros(1)
    out["max_token_gap_before_hop"] = float(gaps.max()) if len(gaps) else float("nan")
    return out


def _per_token(times: list[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else float("nan")


def stream_once(pipe, options: SynthesisOptions, prompt) -> tuple[float, list[dict]]:  # noqa: ANN001
    global CLOCK
    CLOCK = Clock(pipe._device.is_cuda)
    try:
        stream = pipe.stream(TEXT, prompt, options)
        for _ in stream:
            pass
        marks = CLOCK.resolve()
    finally:
        CLOCK = None
    return 1e3 * stream.result.stream.first_chunk_latency, marks


def timed_alone(fn: Callable[[], object], cuda: bool, repeats: int = ALONE_REPEATS) -> float:
    """Median ms of ``fn`` alone on an idle device (synchronised around each call)."""
    times = []
    for _ in range(repeats + 2):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times[2:])


@torch.inference_mode()
def llm_alone(pipe, options: SynthesisOptions, prompt, hop_tokens: int, check_every: int) -> dict:  # noqa: ANN001
    """Prefill and decoding to ``hop_tokens`` with nothing else running (as the producer does it)."""
    global CLOCK
    models = pipe._copies.get(options.dtype)
    ids = torch.tensor(pipe._segment_text(TEXT)[0][0], dtype=torch.long)
    p_text, p_speech = llm_prompt_tokens(prompt)
    results = []
    for _ in range(3):
        pipe_device = pipe._device
        if pipe_device.is_cuda:
            torch.cuda.synchronize()
        CLOCK = Clock(pipe_device.is_cuda)
        CLOCK.start(time.perf_counter())
        generator = torch.Generator(device=pipe_device.torch).manual_seed(options.seed)
        n = 0
        for piece in models.generate_pieces(
            ids, p_text, p_speech, options, generator, stop_check_every=check_every
        ):
            n += len(piece.cpu().tolist())
            _mark_host("handover", tokens=n)
            if n >= hop_tokens:
                break
        marks = CLOCK.resolve()
        CLOCK = None
        s = summarise_marks(marks, hop_tokens)
        results.append(
            {
                k: s[k]
                for k in ("prefill_end", "token_hop_end", "handover_hop", "decode_ms_per_token_before_hop")
            }
        )
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


@torch.inference_mode()
def pieces_alone(pipe, options: SynthesisOptions, prompt, first_tokens: torch.Tensor) -> dict:  # noqa: ANN001
    """The first hop's flow call, vocoder call and whole render, each alone."""
    dev, cuda = pipe._device.torch, pipe._device.is_cuda
    models = pipe._copies.get(options.dtype)
    renderer = pipe._renderer(models, prompt, options, None, time.perf_counter())
    call = plan_stream_calls(prompt.speech_tokens.numel(), 250)[0]
    tokens = first_tokens[: call.n_tokens].to(dev).unsqueeze(0)
    p = renderer.prompt
    chunked, flow, steps = models.chunk_backend, models.flow, options.flow_steps

    def flow_call() -> torch.Tensor:
        return chunked.run_chunk(flow, tokens, p.tokens, p.mel, p.embedding, steps)

    mel = flow_call()[:, :, : 2 * call.token_end].float()
    hift = pipe._models.hift
    excitation = DrawnExcitation(hift, torch.Generator(device=dev).manual_seed(0))
    f0 = hift.predict_f0(mel)
    source = excitation(0, f0)

    def vocoder_call() -> None:
        renderer.start_segment()
        renderer._vocode(mel, False)

    def render_call() -> None:
        renderer.start_segment()
        renderer.render(0, call, tokens)

    with pipeline_module.tf32_convolutions(pipe._device):
        return {
            "flow_chunk_ms": timed_alone(flow_call, cuda),
            "vocoder_ms": timed_alone(vocoder_call, cuda),
            "vocoder_f0_ms": timed_alone(lambda: hift.predict_f0(mel), cuda),
            "vocoder_excitation_ms": timed_alone(lambda: excitation(0, f0), cuda),
            "vocoder_decode_ms": timed_alone(lambda: hift.decode(mel, source), cuda),
            "render_ms": timed_alone(render_call, cuda),
            "first_call_tokens": call.n_tokens,
            "first_call_frames": 2 * call.token_end,
        }


def same_tokens(pipe, options: SynthesisOptions, prompt, offline: torch.Tensor) -> dict:  # noqa: ANN001
    """Streamed tokens vs offline ones (same seed), and offline with the eager prefill vs the graph."""
    stream = pipe.stream(TEXT, prompt, options)
    for _ in stream:
        pass
    decoder = getattr(pipe._copies.get(options.dtype).generate_pieces, "__self__", None)
    states = list(decoder._states._items.values()) if isinstance(decoder, StaticDecoder) else []
    saved = [st.prefills for st in states]
    for st in states:
        st.prefills = LruCache(1)  # no prefill graph: generate_pieces runs the eager prefill
    try:
        eager = pipe.generate_tokens(TEXT, prompt, options).segments[0]
    finally:
        for st, prefills in zip(states, saved):
            st.prefills = prefills
    return {
        "stream_vs_offline": bool(torch.equal(stream.result.speech_tokens[0], offline)),
        "eager_prefill_vs_graph": bool(torch.equal(eager, offline)),
    }


def load_prompt(pipe, seconds: float | None):  # noqa: ANN001, ANN201
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    entry = next(p for p in manifest["prompts"] if p["id"] == PROMPT_ID)
    audio, rate = sf.read(ASSETS / entry["file"], dtype="float32", always_2d=False)
    if seconds is not None:
        audio = audio[: int(round(seconds * rate))]
    return pipe.prepare_prompt(audio, rate, entry["transcript"])


def run_config(pipe, label: str, args: argparse.Namespace, prompt) -> dict:  # noqa: ANN001
    config = ConfigId.parse(label)
    options = SynthesisOptions(fixed_tokens=args.fixed_tokens).with_config(config).replace(streaming=True)
    n_prompt = prompt.speech_tokens.numel()
    hop_tokens = plan_stream_calls(n_prompt, args.fixed_tokens)[0].n_tokens
    for _ in range(args.warmup):  # dtype copy, decoder and chunk graphs
        pipe.synthesize(TEXT, prompt, options)
    probe_decode_graphs(pipe._copies.get(options.dtype))
    out: dict = {"config": label, "hop_tokens": hop_tokens, "variants": {}}
    for name in args.variants:
        runs = []
        with variant(name, pipe._device):
            stream_once(pipe, options, prompt)  # untimed: the variant's first use
            for _ in range(args.runs):
                first_ms, marks = stream_once(pipe, options, prompt)
                runs.append(RunTimeline(name, first_ms, marks, summarise_marks(marks, hop_tokens)))
        out["variants"][name] = [asdict(r) for r in runs]
    tokens = pipe.generate_tokens(TEXT, prompt, options).segments[0]
    out["tokens_equal"] = same_tokens(pipe, options, prompt, tokens)
    out["alone"] = {
        "llm_check1": llm_alone(pipe, options, prompt, hop_tokens, 1),
        "llm_check8": llm_alone(pipe, options, prompt, hop_tokens, 8),
        **pieces_alone(pipe, options, prompt, tokens),
    }
    return out


SUMMARY_KEYS = (
    "producer_start", "prefill_start", "prefill_end", "token_hop_end", "handover_hop", "render_enter", "flow_start",
    "flow_end", "vocoder_end", "render_exit", "first_flow_ms", "first_vocoder_ms",
    "decode_ms_per_token_before_hop", "decode_ms_per_token_during_first_render", "decode_ms_per_token_overall",
    "max_token_gap_before_hop",
)  # fmt: skip


def print_config(doc: dict) -> None:
    print(f"\n== {doc['config']} (first hop {doc['hop_tokens']} tokens); ms since request start, medians")
    names = list(doc["variants"])
    rows = [
        ("first chunk", [statistics.median(r["first_chunk_ms"] for r in doc["variants"][n]) for n in names])
    ]
    for key in SUMMARY_KEYS:
        rows.append((key, [statistics.median(r["summary"][key] for r in doc["variants"][n]) for n in names]))
    print(f"{'':42s}" + "".join(f"{n:>10s}" for n in names))
    for key, values in rows:
        print(f"{key:42s}" + "".join(f"{v:10.2f}" for v in values))
    print(f"tokens equal: {doc['tokens_equal']}")
    alone = doc["alone"]
    for key in ("llm_check1", "llm_check8"):
        print(f"alone {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in alone[key].items()))
    print("alone: " + ", ".join(f"{k} {v:.2f}" for k, v in alone.items() if not isinstance(v, dict)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--device", default=None)
    parser.add_argument("--configs", nargs="+", default=["bfloat16-n5", "float16-n10"])
    parser.add_argument("--prompt_seconds", type=float, default=3.0)
    parser.add_argument("--fixed_tokens", type=int, default=250)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["base"], choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    pipe = load_pipeline(args.model_dir, device=args.device)
    install_probes()
    prompt = load_prompt(pipe, args.prompt_seconds)
    print(
        f"{pipe.info.device}; prompt {prompt.speech_tokens.numel()} speech tokens; torch {torch.__version__}"
    )
    docs = []
    for label in args.configs:
        doc = run_config(pipe, label, args, prompt)
        print_config(doc)
        docs.append(doc)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": pipe.info.device, "configs": docs}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
