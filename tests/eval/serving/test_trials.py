"""Test plans, the content-addressed clip bank and balanced, resumable blind assignment."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from eval.serving.assignment import assign_trials, next_trial
from eval.serving.clipbank import ClipBank, build_bank, clip_key
from eval.serving.ratings import RatingsStore
from eval.serving.trials import load_plan, plan_from_dict
from tts_core.options import SynthesisOptions
from tts_core.results import GeneratedTokens, SynthesisResult, Timings

ROOT = Path(__file__).resolve().parents[3]
PLANS = ROOT / "assets" / "plans"


def small_plan(**changes) -> dict:
    doc = {
        "name": "t",
        "texts": ["en_01", "en_02", "en_03", "zh_01", "zh_02"],
        "prompts": ["en_flite_slt", "en_us_espeak_m", "zh_espeak_m"],
        "configs": [
            {"dtype": "float32", "flow_steps": 10},
            {"dtype": "float32", "flow_steps": 5},
            {"dtype": "bfloat16", "flow_steps": 5},
        ],
        "trials_per_listener": 6,
    }
    doc.update(changes)
    return doc


def test_example_plans_load(texts, prompts) -> None:
    for name in ("example.json", "example.yaml"):
        plan = load_plan(PLANS / name)
        assert len(plan.stimuli(texts, prompts)) * len(plan.pairs) >= plan.trials_per_listener
    plan = load_plan(PLANS / "example.yaml")
    assert set(plan.text_ids) == {t.id for t in texts.values() if t.language == "en"}
    assert plan.baseline == "float32-n10"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trials_per_listener": None}, "trials_per_listener"),
        ({"baseline": "float16-n3"}, "baseline"),
        ({"configs": [{"dtype": "float32", "flow_steps": 10}]}, "two configurations"),
        ({"configs": [{"dtype": "float32"}, {"dtype": "float32", "flow_steps": 5}]}, "flow_steps"),
        ({"comparisons": "some"}, "comparisons"),
        ({"colour": "red"}, "colour"),
        ({"texts": []}, "text_ids"),
    ],
)
def test_bad_plans_name_the_problem(change: dict, message: str) -> None:
    doc = small_plan(**change)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        plan_from_dict(doc)


def test_unknown_ids_and_unparsable_file(tmp_path: Path, texts, prompts) -> None:
    plan = plan_from_dict(small_plan(texts=["en_01", "nope"]))
    with pytest.raises(ValueError, match="nope"):
        plan.stimuli(texts, prompts)
    bad = tmp_path / "plan.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="plan.yaml"):
        load_plan(bad)


def test_assignment_is_balanced_deterministic_and_language_matched(texts, prompts) -> None:
    plan = plan_from_dict(small_plan(trials_per_listener=13))
    trials = assign_trials(plan, "alice", texts, prompts)
    assert trials == assign_trials(plan, "alice", texts, prompts)  # a reload gets the same list
    assert [t.trial_id for t in trials] != [t.trial_id for t in assign_trials(plan, "bob", texts, prompts)]
    assert len(trials) == 13 and len({t.trial_id for t in trials}) == 13
    assert [t.index for t in trials] == list(range(13))
    pairs = Counter((t.config_a.label, t.config_b.label) for t in trials)
    assert set(pairs) == {("float32-n10", "float32-n5"), ("float32-n10", "bfloat16-n5")}
    assert max(pairs.values()) - min(pairs.values()) <= 1
    for pair in pairs:
        sides = Counter(t.shown_first for t in trials if (t.config_a.label, t.config_b.label) == pair)
        assert abs(sides["A"] - sides["B"]) <= 1
    overall = Counter(t.shown_first for t in trials)
    assert abs(overall["A"] - overall["B"]) <= 1
    assert len({(t.text_id, t.prompt_id, t.config_b.label) for t in trials}) == 13
    for t in trials:
        assert texts[t.text_id].language == prompts[t.prompt_id].language
    # 5 texts over 13 trials: each text 2 or 3 times.
    uses = Counter(t.text_id for t in trials)
    assert set(uses) == set(plan.text_ids) and max(uses.values()) - min(uses.values()) <= 1


def test_sides_balance_over_many_listeners(texts, prompts) -> None:
    plan = plan_from_dict(small_plan(trials_per_listener=4, comparisons="all"))
    assert len(plan.pairs) == 3
    firsts = Counter(t.shown_first for k in range(50) for t in assign_trials(plan, f"l{k}", texts, prompts))
    assert firsts["A"] == firsts["B"] == 100


def test_too_many_trials_refused(texts, prompts) -> None:
    plan = plan_from_dict(small_plan(texts=["en_01"], prompts=["en_flite_slt"], trials_per_listener=3))
    with pytest.raises(ValueError, match="distinct"):
        assign_trials(plan, "alice", texts, prompts)


def test_resume_from_ratings_csv(tmp_path: Path, texts, prompts) -> None:
    from tests.conftest import judgement

    plan = plan_from_dict(small_plan())
    trials = assign_trials(plan, "alice", texts, prompts)
    store = RatingsStore(tmp_path / "r.csv")
    for t in trials[:2]:
        store.append(judgement(t.trial_id, listener="alice"))
    store.append(judgement(assign_trials(plan, "bob", texts, prompts)[2].trial_id, listener="bob"))
    reopened = RatingsStore(tmp_path / "r.csv")  # as after an app restart
    assert next_trial(trials, reopened.rated_trial_ids("alice")) == trials[2]
    assert next_trial(trials, {t.trial_id for t in trials}) is None


def test_clip_key_covers_every_input() -> None:
    base = SynthesisOptions(flow_steps=10, dtype="float32", seed=0)
    args = ("m1", "Hello.", "p1", "d1", base)
    key = clip_key(*args)
    assert len(key) == 64 and key == clip_key(*args)
    variants = [
        ("m2", "Hello.", "p1", "d1", base),
        ("m1", "Hello!", "p1", "d1", base),
        ("m1", "Hello.", "p2", "d1", base),
        ("m1", "Hello.", "p1", "d2", base),
        ("m1", "Hello.", "p1", "d1", base.replace(seed=1)),
        ("m1", "Hello.", "p1", "d1", base.replace(flow_steps=5)),
        ("m1", "Hello.", "p1", "d1", base.replace(dtype="bfloat16")),
        ("m1", "Hello.", "p1", "d1", base.replace(top_p=0.7)),
    ]
    assert len({clip_key(*v) for v in variants} | {key}) == len(variants) + 1


@dataclass
class _Info:
    model_id: str = "fake"
    model_hash: str = "hash1"


class FakePipeline:
    """Counts calls; audio length depends on the flow steps so renders are distinguishable."""

    def __init__(self) -> None:
        self.info = _Info()
        self.calls = Counter()

    def prepare_prompt(self, audio, sample_rate, transcript=None):
        assert audio.ndim == 1 and sample_rate in (16_000, 22_050, 24_000) and transcript
        self.calls["prompt"] += 1
        return object()

    def generate_tokens(self, text, prompt, options):
        self.calls["llm"] += 1
        return GeneratedTokens((torch.arange(5),), (text,), 0.1, options.dtype, options, "eager")

    def tokens_to_audio(self, tokens, prompt, options):
        self.calls["flow"] += 1
        audio = (0.5 * np.sin(np.arange(2400 * options.flow_steps) / 10)).astype(np.float32)
        return SynthesisResult(
            audio,
            torch.zeros(80, 10),
            tokens.segments,
            Timings(0.1, 0.2, 0.3),
            options,
            options.dtype,
            "torch",
            "eager",
            "cpu",
        )


def test_bank_generates_once_and_shares_tokens(tmp_path: Path, texts, prompts) -> None:
    plan = plan_from_dict(small_plan(texts=["en_01", "zh_01"]))
    pipe = FakePipeline()
    seen = []
    clips = build_bank(
        plan, pipe, ClipBank(tmp_path / "bank"), texts, prompts, lambda d, n, m: seen.append((d, n))
    )
    n_combos = 3  # en_01 x two English prompts + zh_01 x one Chinese prompt
    assert len(clips) == n_combos * 3 and seen[-1] == (9, 9)
    # float32-n10 and float32-n5 share one LLM run; bfloat16-n5 has its own.
    assert pipe.calls == Counter(prompt=3, llm=n_combos * 2, flow=n_combos * 3)
    clip = clips[("en_01", "en_flite_slt", "float32-n5")]
    audio, rate = sf.read(clip.wav_path, dtype="float32")
    assert rate == 24_000 and len(audio) == 2400 * 5 and sf.info(clip.wav_path).subtype == "PCM_16"
    meta = json.loads(clip.wav_path.with_suffix(".json").read_text())
    assert (
        meta["text_id"] == "en_01" and meta["config"] == "float32-n5" and meta["options"]["flow_steps"] == 5
    )
    assert meta["model_hash"] == "hash1" and meta["timings"]["flow"] == 0.2

    again = FakePipeline()  # a restart: a new process with the same bank folder
    clips2 = build_bank(plan, again, ClipBank(tmp_path / "bank"), texts, prompts)
    assert sum(again.calls.values()) == 0
    assert {k: c.key for k, c in clips2.items()} == {k: c.key for k, c in clips.items()}

    other_model = FakePipeline()
    other_model.info.model_hash = "hash2"
    build_bank(plan, other_model, ClipBank(tmp_path / "bank"), texts, prompts)
    assert other_model.calls["flow"] == 9


def test_half_written_clip_is_regenerated(tmp_path: Path, texts, prompts) -> None:
    plan = plan_from_dict(small_plan(texts=["zh_01"]))
    bank = ClipBank(tmp_path / "bank")
    clips = build_bank(plan, FakePipeline(), bank, texts, prompts)
    victim = next(iter(clips.values()))
    victim.wav_path.with_suffix(".json").unlink()  # as if the process died before the sidecar
    pipe = FakePipeline()
    build_bank(plan, pipe, bank, texts, prompts)
    assert pipe.calls["flow"] == 1
