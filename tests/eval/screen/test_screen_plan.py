"""Screening a plan's clip bank: a bank of real speech where one configuration is broken, and the CLI.

The clips are flite speech of the plan's own sentences (clean for the baseline) and the same speech
degraded for the other configuration (white noise, silence, a cut, a token loop), so the expected
table is known without running the screen.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from abapp.bank_screen import BankScreener
from abapp.blind_runner import BlindTestRunner
from abapp.screen_view import PlaygroundScreen, plan_summary_markdown
from eval.screen import plan as screen_plan
from eval.screen.options import ScreenOptions
from eval.screen.screener import load_screener
from eval.screen.summary import read_rows, summarize, summary_table
from eval.serving.clipbank import Clip, ClipBank
from eval.serving.trials import TestPlan, load_plan, load_prompts, load_texts
from tests.screen_audio import flite, needs_speech_tools, trim_silence, with_white_noise
from tts_core import load_pipeline
from tts_core.config_id import ConfigId
from tts_core.model.factory import demo_model_dir

TEXTS, PROMPTS = load_texts(), load_prompts()
TEXT_IDS = ("en_07", "en_09", "en_10")
BASE, FAST = ConfigId("float16", 10), ConfigId("bfloat16", 5)
PLAN = TestPlan("screen test", TEXT_IDS, ("en_flite_slt",), (BASE, FAST), BASE.label, 3)


def _loop(n_seconds: float) -> list[int]:
    rng = np.random.default_rng(1)
    return [int(t) for t in rng.integers(0, 6561, 40)] + [7, 8, 9] * int(n_seconds * 25 / 3)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """{(text, prompt, config): Clip}; FAST: en_07 noisy, en_09 cut to a fifth, en_10 with a token loop."""
    folder = tmp_path_factory.mktemp("bank")
    clips = {}
    rng = np.random.default_rng(0)
    for text_id in TEXT_IDS:
        audio, rate = flite(TEXTS[text_id].text, "slt")
        audio = trim_silence(audio)
        broken = {
            "en_07": with_white_noise(audio, 5.0),
            "en_09": audio[: audio.size // 5],
            "en_10": audio,
        }[text_id]
        tokens = {"en_10": [_loop(3.0)]}.get(text_id, [list(rng.integers(0, 6561, 100).tolist())])
        for config, wav in ((BASE, audio), (FAST, broken)):
            key = f"{text_id}-{config.label}"
            path = folder / f"{key}.wav"
            sf.write(path, wav, rate, subtype="PCM_16")
            meta_tokens = tokens if config == FAST else [list(rng.integers(0, 6561, 100).tolist())]
            clips[(text_id, "en_flite_slt", config.label)] = Clip(key, path, {"speech_tokens": meta_tokens})
    return clips


@needs_speech_tools
def test_the_broken_configuration_is_flagged_and_scores_lower(bank):
    screener = load_screener(ScreenOptions(measures=("dnsmos", "similarity", "flags")))
    rows = screen_plan.screen_bank(PLAN, bank, screener, TEXTS, PROMPTS)
    assert len(rows) == 6
    base, fast = summarize(rows, [BASE.label, FAST.label])
    assert base.n_flagged == 0, [f.details for f in base.flagged]
    flagged = {f.text_id: f.flags for f in fast.flagged}
    # 5 dB white noise is no failure flag (it shows in DNSMOS below); the cut and the loop are.
    assert flagged == {"en_09": ("implausible_duration",), "en_10": ("repeated_tokens",)}
    assert dict(fast.flag_counts)["repeated_tokens"] == 1 and fast.n_flagged == 2
    noisy = next(r for r in rows if r.text_id == "en_07" and r.config == FAST.label)
    clean = next(r for r in rows if r.text_id == "en_07" and r.config == BASE.label)
    assert clean.dnsmos_ovrl > noisy.dnsmos_ovrl + 0.3 and clean.dnsmos_bak > noisy.dnsmos_bak + 1.0
    assert base.mean("dnsmos_bak") > fast.mean("dnsmos_bak")
    assert base.stat("sim_resemblyzer").n == 3 and base.stat("sim_campplus") is None  # no model dir
    table = summary_table([base, fast])
    assert table[1]["n_flagged"] == 2 and "en_10/en_flite_slt[repeated_tokens]" in table[1]["flagged_clips"]


def test_cli_on_the_demo_model_writes_every_output(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "name": "tiny",
                "texts": ["en_02"],
                "prompts": ["en_flite_slt"],
                "configs": [{"dtype": "float32", "flow_steps": 2}, {"dtype": "float32", "flow_steps": 1}],
                "trials_per_listener": 1,
            }
        )
    )
    out = tmp_path / "out"
    argv = [str(plan), "--demo", "--device", "cpu", "--bank", str(tmp_path / "bank"), "--out", str(out),
            "--measures", "dnsmos", "flags"]  # fmt: skip
    assert screen_plan.main(argv) == 0
    rows = read_rows(out / "clips.csv")
    assert [r.config for r in rows] == ["float32-n2", "float32-n1"]
    assert all(r.dnsmos_ovrl is not None and r.sim_resemblyzer is None for r in rows)
    doc = json.loads((out / "summary.json").read_text())
    assert [c["config"] for c in doc["configs"]] == ["float32-n2", "float32-n1"]
    assert doc["model"]["random_weights"] and any(m["name"] == "dnsmos" for m in doc["measures"])
    assert (out / "summary.png").stat().st_size > 1000 and (out / "summary.csv").is_file()
    # The bank now holds the clips with their tokens: a second run generates nothing and agrees.
    assert screen_plan.main(argv) == 0
    assert [r.clip_key for r in read_rows(out / "clips.csv")] == [r.clip_key for r in rows]
    # The blind tab's screen of the same bank (abapp/bank_screen.py) screens the same clips.
    runner = BlindTestRunner(
        load_pipeline(demo_model_dir(), device="cpu"), ClipBank(tmp_path / "bank"), TEXTS, PROMPTS, tmp_path / "app"
    )
    runner.set_plan(load_plan(plan))
    view = PlaygroundScreen(tmp_path, random_weights=True, options=ScreenOptions(measures=("dnsmos", "flags")))
    screen = BankScreener(view, tmp_path / "app").run(runner)
    assert [r.clip_key for r in screen.rows] == [r.clip_key for r in rows]
    text = plan_summary_markdown(screen.summary)
    assert "| `float32-n2` | 1 |" in text and "| `float32-n1` | 1 |" in text
    assert read_rows(tmp_path / "app" / "screen" / "tiny" / "clips.csv") == list(screen.rows)
