"""The app's Markdown views of the screen: a flag cannot be missed, unavailable measures say why."""

from __future__ import annotations

import pytest

from abapp.screen_view import PlaygroundScreen, plan_summary_markdown, screen_markdown
from eval.screen.options import ScreenOptions
from eval.screen.screener import ClipInput, load_screener
from eval.screen.summary import clip_row, summarize
from eval.serving.trials import load_prompts

PROMPT = load_prompts()["en_flite_slt"]


@pytest.fixture(scope="module")
def results():
    screener = load_screener(ScreenOptions(measures=("flags",)))
    audio, rate = PROMPT.load()
    clean = screener.screen(ClipInput(audio, rate, PROMPT.transcript))
    silent = screener.screen(ClipInput(audio * 1e-5, rate, PROMPT.transcript))
    return clean, silent


def test_a_flagged_clip_opens_with_a_banner(results):
    _, silent = results
    banner, findings, measures = screen_markdown("B", silent).split("\n\n")
    assert banner.startswith("### ⚠️ Clip B FLAGGED:") and "silent" in banner
    assert findings.startswith("> **silent**: RMS") and "rule" in findings
    assert measures.startswith("Predicted MOS")


def test_a_clean_clip_says_so_and_names_what_did_not_run(results):
    clean, _ = results
    text = screen_markdown("A", clean)
    assert "no failure flag" in text and "FLAGGED" not in text
    assert "Predicted MOS: unavailable (switched off" in text


def test_plan_summary_lists_the_flagged_clips(results):
    clean, silent = results
    rows = [
        clip_row("en_07", PROMPT.id, "float16-n10", "k1", clean),
        clip_row("en_07", PROMPT.id, "bfloat16-n5", "k2", silent),
    ]
    text = plan_summary_markdown(summarize(rows))
    assert "| `float16-n10` | 1 |" in text and "⚠️ **1**" in text
    assert "- `bfloat16-n5` en_07 / en_flite_slt: silent:" in text


def test_playground_screen_without_a_pair_shows_nothing(tmp_path):
    screen = PlaygroundScreen(tmp_path, random_weights=True)  # no campplus.onnx there: similarity says so
    assert list(screen.markdown_pair(None)) == [("", "")]
