"""Pipeline.stream / streaming=True on a tiny random-weight model in the official layout.

Truths: the official streaming contract (every token's frames once; streamed and offline audio
of the same tokens have the same length, as in the reference run: 220800 samples both), the
chunks stitched equal the result, the same seed gives the same audio whichever API streams it
(the calls depend on token counts only), and the eager flow for the CUDA-graph chunk calls.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import tts_core.streaming.session as session_module
from tts_core import SynthesisOptions, load_pipeline
from tts_core.config_id import ConfigId
from tts_core.flow.cuda_graph import CudaGraphFlow
from tts_core.model.factory import write_random_model
from tts_core.streaming.render import ChunkRenderer
from tts_core.streaming.schedule import OVERLAP_SAMPLES, first_call_tokens, plan_stream_calls

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "prompts"
SAMPLES_PER_TOKEN = 2 * 480
STREAM = SynthesisOptions(flow_steps=2, seed=7, fixed_tokens=120, streaming=True)
PRODUCER_THREAD = "tts-stream-llm"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(model_dir):
    return load_pipeline(model_dir, device="cpu", require_frontend=True)


@pytest.fixture(scope="module")
def prompt(pipe):
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    entry = next(p for p in manifest["prompts"] if p["language"] == "en")
    wav, sr = sf.read(ASSETS / entry["file"], dtype="float32")
    return pipe.prepare_prompt(wav, sr, entry["transcript"])


def _producers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PRODUCER_THREAD and t.is_alive()]


def test_stream_yields_chunks_that_stitch_to_the_result(pipe, prompt):
    stream = pipe.stream("Hello world.", prompt, STREAM)
    chunks = list(stream)
    result = stream.result
    assert np.array_equal(np.concatenate([c.audio for c in chunks]), result.audio)
    assert [c.info for c in chunks] == list(result.chunks)
    n_tokens = result.speech_tokens[0].numel()
    assert n_tokens == 120
    calls = plan_stream_calls(prompt.speech_tokens.numel(), n_tokens)
    assert len(chunks) == len(calls) >= 3
    assert [(c.info.token_start, c.info.final) for c in chunks] == [(c.token_offset, c.final) for c in calls]
    assert all(len(c.audio) == c.info.samples for c in chunks)
    assert result.audio.shape == (n_tokens * SAMPLES_PER_TOKEN,)  # as long as the offline audio
    assert result.mel.shape == (80, 2 * n_tokens)
    assert all(
        c.samples == (c.vocoder_frames * 480 - (0 if c.final else OVERLAP_SAMPLES)) for c in result.chunks
    )
    report = result.stream
    assert report.llm_overlapped and report.first_chunk_latency > 0
    ready = [c.ready_seconds for c in result.chunks]
    assert ready == sorted(ready) and report.wall_seconds >= ready[-1]
    assert len(report.chunk_intervals) == len(chunks) - 1 and min(report.chunk_intervals) >= 0
    assert result.rtf == pytest.approx(report.wall_seconds / result.duration)
    assert result.timings.llm > 0 and result.llm_backend == "eager" and result.backend == "torch"
    with pytest.raises(RuntimeError, match="only once"):
        iter(stream)
    assert not _producers_alive()


def test_llm_waits_for_the_first_chunk(pipe, prompt, monkeypatch):
    producers, seen = [], []

    class Spy(session_module._TokenProducer):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            producers.append(self)

    render = ChunkRenderer.render

    def spying_render(self, segment, call, tokens):
        if (segment, call.index) == (0, 0):  # what the LLM has handed over by the first render
            seen.append((tokens.shape[1], producers[-1].items.qsize(), producers[-1].resume.is_set()))
        return render(self, segment, call, tokens)

    monkeypatch.setattr(session_module, "_TokenProducer", Spy)
    monkeypatch.setattr(ChunkRenderer, "render", spying_render)
    result = pipe.synthesize("Hello world.", prompt, STREAM)
    # exactly the first call's tokens, nothing queued after them, the LLM held until the chunk is out
    assert seen == [(first_call_tokens(prompt.speech_tokens.numel()), 0, False)]
    assert result.speech_tokens[0].numel() == STREAM.fixed_tokens


def test_stream_equals_tokens_to_audio_of_the_same_tokens(pipe, prompt):
    streamed = pipe.synthesize("Hello world.", prompt, STREAM)
    tokens = pipe.generate_tokens("Hello world.", prompt, STREAM)
    assert all(torch.equal(a, b) for a, b in zip(tokens.segments, streamed.speech_tokens))
    rendered = pipe.tokens_to_audio(tokens, prompt, STREAM)
    assert np.array_equal(rendered.audio, streamed.audio)  # same calls, same seeded noise
    assert [(c.token_start, c.samples) for c in rendered.chunks] == [
        (c.token_start, c.samples) for c in streamed.chunks
    ]
    assert not rendered.stream.llm_overlapped
    offline = pipe.tokens_to_audio(tokens, prompt, STREAM.replace(streaming=False))
    assert offline.stream is None and offline.chunks == () and offline.first_chunk_latency is None
    assert offline.audio.shape == rendered.audio.shape and not np.array_equal(offline.audio, rendered.audio)


def test_stream_of_several_segments(pipe, prompt):
    text = " ".join(["This sentence is here to make the paragraph long enough to split."] * 12)
    result = pipe.synthesize(text, prompt, STREAM.replace(fixed_tokens=40))
    n_segments = len(result.speech_tokens)
    segments = [c.segment for c in result.chunks]
    assert n_segments >= 2 and segments == sorted(segments) and set(segments) == set(range(n_segments))
    assert [c.call for c in result.chunks if c.segment == 1][0] == 0  # the schedule restarts
    ends = [c.sample_start + c.samples for c in result.chunks]
    assert [c.sample_start for c in result.chunks][1:] == ends[:-1] and ends[-1] == len(result.audio)


def test_abandoned_stream_stops_the_llm_and_frees_the_pipeline(pipe, prompt):
    stream = iter(pipe.stream("Hello world.", prompt, STREAM.replace(fixed_tokens=400)))
    next(stream)
    stream.close()
    assert not _producers_alive()
    assert pipe.synthesize("Hi.", prompt, STREAM.replace(fixed_tokens=30)).duration > 0  # lock released


def test_stream_errors(pipe, prompt):
    with pytest.raises(ValueError, match="streaming=True"):
        pipe.stream("Hello.", prompt, STREAM.replace(streaming=False))
    with pytest.raises(ValueError, match="empty"):
        pipe.stream("  ", prompt, STREAM)
    with pytest.raises(ValueError, match="text token ids"):  # raised in the LLM thread, re-raised here
        list(pipe.stream([10**6], prompt, STREAM))
    assert not _producers_alive()


@pytest.mark.requires_cuda
def test_cuda_graph_chunk_calls_match_eager(pipe):
    flow32 = pipe._copies.get("float32").flow
    flow = copy.deepcopy(flow32).to("cuda")
    backend = CudaGraphFlow(flow)
    g = torch.Generator().manual_seed(0)
    for n_prompt, n_new in ((75, 28), (75, 78), (40, 191), (13, 300)):
        inp = {
            "tokens": torch.randint(0, 6561, (1, n_new), generator=g).cuda(),
            "prompt_tokens": torch.randint(0, 6561, (1, n_prompt), generator=g).cuda(),
            "prompt_mel": (torch.randn(1, 2 * n_prompt, 80, generator=g) * 2 - 5).cuda(),
            "embedding": torch.randn(1, 192, generator=g).cuda(),
        }
        want = flow.inference(**inp, n_steps=5, streaming=True, lookahead=True)
        got = backend.run_chunk(flow, **inp, n_steps=5)
        assert got.shape == want.shape == (1, 80, 2 * (n_new - 3))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert all(key[3] for key in backend.graph_keys()) and all(r.chunk for r in backend.captures)


@pytest.mark.requires_cuda
def test_stream_on_cuda_uses_graphs_and_matches_rendering(model_dir, prompt):
    gpu = load_pipeline(model_dir, device="cuda")
    options = STREAM.replace(dtype="bfloat16", flow_steps=5, fixed_tokens=300)
    n_total = prompt.speech_tokens.numel() + 300
    gpu.warmup([ConfigId("bfloat16", 5, streaming=True)], max_tokens=n_total)
    streamed = gpu.synthesize("Hello world.", prompt, options)
    # every chunk graph was captured by the warm-up; the prefill graph of this length is new
    assert [w.what.split(":")[0] for w in streamed.one_time] == ["LLM prefill graph capture"]
    assert gpu.synthesize("Hello world.", prompt, options).one_time == ()
    rendered = gpu.tokens_to_audio(streamed.speech_tokens, prompt, options)
    assert streamed.backend == "torch-cudagraph" and streamed.llm_backend.startswith("cuda-graph")
    assert np.isfinite(streamed.audio).all() and streamed.audio.shape == rendered.audio.shape
    torch.testing.assert_close(streamed.mel, rendered.mel, rtol=0, atol=1e-3)


def test_one_time_work_is_reported_apart(pipe, prompt):
    options = STREAM.replace(dtype="bfloat16", fixed_tokens=40)
    first = pipe.synthesize("Hello world.", prompt, options)
    again = pipe.synthesize("Hello world.", prompt, options)
    assert any("bfloat16 copy" in w.what for w in first.one_time)  # the dtype copy, built on first use
    assert again.one_time == () and np.isfinite(again.audio).all()
