"""eval.screen.score_plan on a tiny plan with the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from eval.screen import score_plan

FIXED_TOKENS = 20
PLAN = {
    "name": "tiny scorer plan",
    "texts": ["en_02", "zh_02"],
    "prompts": ["en_flite_slt", "zh_espeak_m"],
    "configs": [
        {"dtype": "float32", "flow_steps": 10},
        {"dtype": "float32", "flow_steps": 1},
        {"dtype": "float32", "flow_steps": 5},
        {"dtype": "bfloat16", "flow_steps": 10},
    ],
    "trials_per_listener": 2,
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[int, Path]:
    # One thread: OpenMP's spinning threads slow to a crawl on a small machine shared with other jobs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _run_scorer(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _run_scorer(tmp_path_factory) -> tuple[int, Path]:
    folder = tmp_path_factory.mktemp("score")
    plan = folder / "plan.json"
    plan.write_text(json.dumps(PLAN))
    out = folder / "scores.csv"
    argv = [str(plan), "--demo", "--device", "cpu", "--fixed_tokens", str(FIXED_TOKENS), "--out", str(out)]
    return score_plan.main(argv), out


def test_one_row_per_text_prompt_config(scored):
    code, out = scored
    assert code == 0
    rows = pd.read_csv(out)
    # match_language: en_02 with the English prompt, zh_02 with the Mandarin one
    assert len(rows) == 2 * 4
    assert set(zip(rows.text_id, rows.prompt_id)) == {("en_02", "en_flite_slt"), ("zh_02", "zh_espeak_m")}
    assert (rows.n_tokens == FIXED_TOKENS).all()
    assert (rows.reference == "float32-n10").all()
    for column in ("mel_l1", "lsd_db", "mcd_db", "f0_rmse_hz", "dtype_ran", "backend", "note"):
        assert column in rows.columns


def test_reference_against_itself_is_zero(scored):
    rows = pd.read_csv(scored[1])
    ref = rows[rows.config == "float32-n10"]
    assert ref.is_reference.all() and not rows[rows.config != "float32-n10"].is_reference.any()
    assert (ref[["mel_l1", "lsd_db", "mcd_db"]] == 0).all().all()


def test_fewer_ode_steps_are_further_from_the_reference(scored):
    # Euler discretisation error shrinks with the step count: 1 step is further from the
    # 10-step solution than 5 steps, on every stimulus.
    rows = pd.read_csv(scored[1]).set_index(["text_id", "config"])
    for text in ("en_02", "zh_02"):
        one, five = rows.loc[(text, "float32-n1"), "mel_l1"], rows.loc[(text, "float32-n5"), "mel_l1"]
        assert one > 2 * five > 0


def test_other_llm_dtype_is_flagged(scored):
    rows = pd.read_csv(scored[1])
    bf16 = rows[rows.config == "bfloat16-n10"]
    assert bf16.note.str.contains("LLM not tested: tokens from float32-n10").all()
    assert (bf16.dtype_ran == "bfloat16").all() and (bf16.mel_l1 > 0).all()


def test_summary_matches_the_rows(scored):
    out = scored[1]
    rows = pd.read_csv(out)
    doc = json.loads(out.with_suffix(".summary.json").read_text())
    assert [c["config"] for c in doc["configs"]] == [
        "float32-n10",
        "float32-n1",
        "float32-n5",
        "bfloat16-n10",
    ]
    means = rows.groupby("config").mel_l1.mean()
    for entry in doc["configs"]:
        assert entry["n"] == 2
        assert entry["mel_l1_mean"] == pytest.approx(means[entry["config"]])
    assert doc["environment"]["command"].startswith("python -m eval.screen.score_plan")


@pytest.mark.parametrize("spec", ["float32", "float32:10", "float8-n10", "float32-n0"])
def test_bad_reference_exits_2(spec, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    assert score_plan.main([str(plan), "--demo", "--device", "cpu", "--reference", spec]) == 2
    assert "DTYPE-nSTEPS" in capsys.readouterr().err


def test_unknown_text_id_exits_2(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**PLAN, "texts": ["no_such_text"]}))
    assert score_plan.main([str(plan), "--demo", "--device", "cpu"]) == 2
    assert "unknown text ids" in capsys.readouterr().err
