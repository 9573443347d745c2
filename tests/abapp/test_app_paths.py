"""The app's own paths (playground pair, clip bank, blind trial, results) through its real code,
without Gradio's UI: labels in the CSV are the plan's, the report takes the plan's baseline, and
the RTF shown is the core's, with one-time work (graph capture) reported apart.

On a CPU the flow runs behind a stand-in backend with another name and a per-shape "capture", so
that a label can never again depend on the machine. On CUDA (``requires_cuda``) the same paths run
on a full-size random-weight model with the real fast backends, after the app's warm-up.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch

from abapp.blind_handlers import BlindSession, load_trial
from abapp.playback import ClipPlayback
from abapp.state import Judgement, rating_row
from abapp.synthesis import make_options, read_prompt_audio, render_pair, result_markdown
from abapp.ui import make_context
from app import warmup_configs
from eval.serving.assignment import assign_trials
from eval.serving.ratings import RatingsStore
from eval.serving.trials import plan_from_dict
from eval.statistics import analysis, report
from tts_core import load_pipeline
from tts_core.flow.backends import TorchEstimator
from tts_core.model.factory import demo_model_dir, write_random_model
from tts_core.results import OneTimeWork

STAND_IN_NAME = "stand-in-cudagraph"
PLAN = {
    "name": "app paths",
    "texts": ["en_01", "en_02"],
    "prompts": ["en_flite_slt"],
    "configs": ["float16-n10", "bfloat16-n5"],
    "baseline": "float16-n10",
    "trials_per_listener": 2,
}
TEXT = "The quick brown fox jumps over the lazy dog."
WARM_DTYPES = ("float16", "bfloat16")  # the dtypes these tests render on CUDA
WARM_MAX_TOKENS = 256
CAPTURE_TICKS = 100.0  # fake seconds a stand-in capture costs
FLOW_TICKS = 1.0  # fake seconds a stand-in flow call costs


class FakeClock:
    """``time.perf_counter`` that only moves when the stand-in backend says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class StandInGraphBackend:
    """A flow backend for a CPU under another name, paying a one-time "capture" per new shape."""

    name = STAND_IN_NAME

    def __init__(self, flow, clock: FakeClock | None) -> None:
        self._eager = TorchEstimator(flow.decoder.estimator)
        self._clock = clock
        self.shapes: set[tuple[int, int]] = set()

    def __call__(self, *args):
        return self._eager(*args)

    def run_flow(self, flow, tokens, prompt_tokens, prompt_mel, embedding, n_steps):
        if self._clock is not None:
            self._clock.now += FLOW_TICKS
        return self._eager.run_flow(flow, tokens, prompt_tokens, prompt_mel, embedding, n_steps)

    def prepare(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        if (n_total_tokens, n_steps) in self.shapes:
            return None
        self.shapes.add((n_total_tokens, n_steps))
        if self._clock is not None:
            self._clock.now += CAPTURE_TICKS
        return OneTimeWork(f"stand-in capture {n_total_tokens} x {n_steps}", CAPTURE_TICKS)


def _cpu_pipeline():
    pipe = load_pipeline(demo_model_dir(), device="cpu")
    for dtype in pipe.info.dtypes:
        models = pipe._copies.get(dtype)  # test seam: swap in the stand-in backend
        models.flow_backend = StandInGraphBackend(models.flow, None)
    return pipe


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.requires_cuda)])
def app(request, tmp_path_factory):
    """(context, is_cuda) of an app over a random-weight model, ratings in a fresh CSV."""
    root = tmp_path_factory.mktemp(f"app-{request.param}")
    if request.param == "cpu":
        pipe = _cpu_pipeline()
    else:
        pipe = load_pipeline(write_random_model(root / "model", size="full"), device="cuda")
        report_ = pipe.warmup(warmup_configs(WARM_DTYPES, ()), max_tokens=WARM_MAX_TOKENS)
        print(report_.summary())
    ctx = make_context(pipe, RatingsStore(root / "ratings.csv"), root / "data")
    return ctx, request.param == "cuda"


def _prompt(ctx):
    asset = ctx.prompts["en_flite_slt"]
    return str(asset.path), asset.transcript


def _heard(seconds: float) -> ClipPlayback:
    return ClipPlayback(seconds).started(0.0).ended(seconds)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_playground_pair_is_logged_under_the_plan_labels(app):
    ctx, _ = app
    path, transcript = _prompt(ctx)
    a, b = make_options(10, "float16", 0, "A"), make_options(5, "bfloat16", 0, "B")
    out = render_pair(ctx, TEXT, path, transcript, a, b, "auto", lambda f, m: None)
    heard = _heard(out.result_a.duration), _heard(out.result_b.duration)
    ctx.store.append(
        rating_row(out.pair, heard, Judgement(4, 3, "first"), listener_id="alice", session_id="s1", app_version="t")
    )
    row = _csv_rows(ctx.store.path)[-1]
    assert (row["a_config"], row["b_config"]) == ("float16-n10", "bfloat16-n5")
    assert row["a_backend"] == out.result_a.backend != "" and row["a_llm_backend"] == out.result_a.llm_backend
    for name, res, opts in (("A", out.result_a, a), ("B", out.result_b, b)):
        text = result_markdown(name, res, opts, out.shared_tokens)
        assert f"RTF **{res.rtf:.3f}**" in text  # the core's own number
        assert f"{name}: {opts.config.label}" in text


def test_capture_is_reported_apart_from_the_stage_times(app, monkeypatch):
    ctx, is_cuda = app
    if is_cuda:
        pytest.skip("the fake clock is for the stand-in backend")
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    models = ctx.pipeline._copies.get("float32")
    monkeypatch.setattr(models, "flow_backend", StandInGraphBackend(models.flow, clock))
    path, transcript = _prompt(ctx)
    a, b = make_options(10, "float32", 0, "A"), make_options(5, "float32", 0, "B")
    first = render_pair(ctx, TEXT, path, transcript, a, b, "auto", lambda f, m: None)
    n_segments = len(first.result_a.speech_tokens)
    for res in (first.result_a, first.result_b):
        assert res.timings.flow == pytest.approx(FLOW_TICKS * n_segments)  # no capture inside
        assert res.one_time_seconds >= CAPTURE_TICKS * n_segments
        assert "first use of this shape" in result_markdown("A", res, a, True)
    again = render_pair(ctx, TEXT, path, transcript, a, b, "auto", lambda f, m: None)
    assert not again.result_a.one_time and not again.result_b.one_time
    assert "first use" not in result_markdown("A", again.result_a, a, True)


def test_blind_trial_and_report_use_the_plan_labels(app):
    ctx, _ = app
    plan = plan_from_dict(PLAN, ctx.texts)
    ctx.blind.set_plan(plan)
    ready, total = ctx.blind.generate(lambda done, n, msg: None)
    assert ready == total == 4
    for listener in ("bob", "carol"):
        trials = assign_trials(plan, listener, ctx.texts, ctx.prompts)
        session = BlindSession(listener, plan, tuple(trials), trials[0])
        for trial in trials:
            pair, first, second, seconds = load_trial(ctx, session, trial)
            assert Path(first).is_file() and Path(second).is_file()
            heard = _heard(seconds), _heard(seconds)
            row = rating_row(pair, heard, Judgement(4, 4, "none"), listener_id=listener, session_id="s2", app_version="t")
            ctx.store.append(row)
    blind_rows = [r for r in _csv_rows(ctx.store.path) if r["mode"] == "blind"]
    assert {r["a_config"] for r in blind_rows} | {r["b_config"] for r in blind_rows} == {
        c.label for c in plan.configs
    }
    summary = analysis.summarize(ctx.store.rows(), baseline=plan.baseline, modes=["blind"])
    assert [c.config for c in summary.configs] == ["float16-n10", "bfloat16-n5"]
    assert report.main([str(ctx.store.path), "--baseline", plan.baseline, "--mode", "blind"]) == 0


@pytest.mark.requires_cuda
def test_after_warmup_fewer_steps_are_faster_on_every_call(app):
    ctx, is_cuda = app
    if not is_cuda:
        pytest.skip("timings are compared on the GPU only")
    path, transcript = _prompt(ctx)
    prompt = ctx.prompt_features(*read_prompt_audio(path), transcript)
    for dtype in WARM_DTYPES:
        # a fixed length keeps prompt + tokens inside the warmed-up buckets (WARM_MAX_TOKENS)
        opts10 = make_options(10, dtype, 0, "A").replace(fixed_tokens=100)
        opts5 = opts10.replace(flow_steps=5)
        tokens = ctx.pipeline.generate_tokens(TEXT, prompt, opts10)
        for _ in range(3):
            r10 = ctx.pipeline.tokens_to_audio(tokens, prompt, opts10)
            r5 = ctx.pipeline.tokens_to_audio(tokens, prompt, opts5)
            assert not r10.one_time and not r5.one_time  # warm-up captured these shapes
            assert r5.timings.flow < r10.timings.flow
            assert torch.isfinite(r5.mel).all()
