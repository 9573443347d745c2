"""The configuration identity: one label, one parser, and the rule for labels in old or odd logs."""

from __future__ import annotations

import csv

import pytest

from eval.serving.ratings import RatingsFileError, RatingsStore
from eval.serving.ratings_schema import V1_COLUMNS
from eval.serving.trials import plan_from_dict
from eval.statistics import analysis, report
from eval.statistics.ratings_io import counted_label, read_ratings
from tts_core.config_id import ConfigId
from tts_core.options import SynthesisOptions


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("bfloat16-n5", "bfloat16-n5"),
        ("  Float16-N10 ", "float16-n10"),
        ("bf16-n5", "bfloat16-n5"),
        ("fp32-n1", "float32-n1"),
        ("fp16-n50", "float16-n50"),
        ("bf16-n5-stream", "bfloat16-n5-stream"),
    ],
)
def test_parse_gives_the_canonical_label(text, label):
    assert ConfigId.parse(text).label == label
    assert ConfigId.parse(label) == ConfigId.parse(text)


@pytest.mark.parametrize(
    "text",
    ["float16", "float16-10", "float16:10", "float8-n5", "float16-n0", "float16-n51", "bfloat16-n5-torch"],
)
def test_parse_refuses_anything_else_showing_the_form(text):
    with pytest.raises(ValueError, match="DTYPE-nSTEPS"):
        ConfigId.parse(text)


def test_identity_validates_and_becomes_options():
    with pytest.raises(ValueError, match="dtype must be one of"):
        ConfigId("float8", 5)
    with pytest.raises(ValueError, match="flow_steps must be an integer"):
        ConfigId("float16", True)
    base = SynthesisOptions(seed=7, top_k=10)
    opts = base.with_config(ConfigId("bfloat16", 5))
    assert (opts.dtype, opts.flow_steps, opts.seed, opts.top_k) == ("bfloat16", 5, 7, 10)
    assert opts.config == ConfigId("bfloat16", 5)
    streamed = base.with_config(ConfigId.parse("bfloat16-n5-stream"))
    assert streamed.streaming and streamed.config.label == "bfloat16-n5-stream"


@pytest.mark.parametrize(
    ("logged", "dtype_ran", "counted", "why"),
    [
        ("float16-n10", "float16", "float16-n10", ""),
        ("float16-n10-torch-cudagraph", "float16", "float16-n10", "backend 'torch-cudagraph' dropped"),
        ("bfloat16-n5-tensorrt", "bfloat16", "bfloat16-n5", "backend 'tensorrt' dropped"),
        ("fp16-n10", "float16", "float16-n10", "canonically"),
        ("bfloat16-n5", "float32", "float32-n5", "asked for bfloat16, ran float32"),
        ("bfloat16-n5-stream", "float32", "float32-n5-stream", "asked for bfloat16, ran float32"),
        ("lighttts-trt-n5", "", "lighttts-trt-n5", ""),  # another system's clips: kept as named
    ],
)
def test_counted_label_rule(logged, dtype_ran, counted, why):
    label, note = counted_label(logged, dtype_ran)
    assert label == counted
    assert (why in note) if why else note == ""


def _v1_row(trial: str, listener: str, text: str, score_a: int, score_b: int, backend: str) -> dict:
    """One judgement as the first release wrote it on a GPU: labels carry the flow backend."""
    suffix = "" if backend == "torch" else f"-{backend}"
    return {
        "schema_version": "1",
        "timestamp_utc": "2026-11-27T10:00:00.000Z",
        "listener_id": listener,
        "session_id": "s",
        "trial_id": trial,
        "mode": "blind",
        "text_id": text,
        "text": "Hello.",
        "prompt_id": "en_flite_slt",
        "a_config": f"float16-n10{suffix}",
        "a_flow_steps": "10",
        "a_dtype": "float16",
        "a_backend": backend,
        "a_seed": "0",
        "a_clip_id": f"a{trial}",
        "b_config": f"bfloat16-n5{suffix}",
        "b_flow_steps": "5",
        "b_dtype": "bfloat16",
        "b_backend": backend,
        "b_seed": "0",
        "b_clip_id": f"b{trial}",
        "shown_first": "A",
        "score_a": str(score_a),
        "score_b": str(score_b),
        "preference": "none",
        "model_id": "m",
        "model_hash": "h",
        "app_version": "0.1.0",
    }


@pytest.fixture
def v1_log(tmp_path):
    """A schema-1 log with rows from a GPU run (suffixed labels) and a CPU run (plain labels)."""
    path = tmp_path / "ratings-v1.csv"
    rows = [
        _v1_row(
            f"t{i}-{j}", f"L{i}", f"en_{j:02d}", 4 + (i + j) % 2, 4, "torch-cudagraph" if i % 2 else "torch"
        )
        for i in range(4)
        for j in range(6)
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=V1_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_old_log_reads_under_the_plan_labels(v1_log):
    before = v1_log.read_bytes()
    table = read_ratings(v1_log)
    assert set(table["a_config"]) == {"float16-n10"} and set(table["b_config"]) == {"bfloat16-n5"}
    assert set(table["a_llm_backend"]) == {""}  # a column version 1 did not have
    plan = plan_from_dict(
        {
            "texts": ["en_01"],
            "prompts": ["en_flite_slt"],
            "configs": ["float16-n10", "bfloat16-n5"],
            "trials_per_listener": 1,
        }
    )
    summary = analysis.summarize(v1_log, baseline=plan.baseline)
    assert [c.config for c in summary.configs] == ["float16-n10", "bfloat16-n5"]
    assert summary.config("float16-n10").n_ratings == 24  # CPU and GPU rows are one configuration
    assert any("'float16-n10-torch-cudagraph' counted as 'float16-n10'" in w for w in summary.warnings)
    assert v1_log.read_bytes() == before  # never rewritten


def test_report_cli_takes_the_plan_baseline_on_an_old_log(v1_log, capsys):
    assert report.main([str(v1_log), "--baseline", "float16-n10"]) == 0
    assert report.main([str(v1_log), "--baseline", "fp16-n10"]) == 0  # the same configuration
    out = capsys.readouterr().out
    assert "counted as 'bfloat16-n5'" in out


def test_fallback_rows_count_as_what_was_heard(v1_log, tmp_path):
    table = read_ratings(v1_log)
    table.loc[:5, "b_dtype"] = "float32"  # six clips asked bfloat16 but ran float32
    summary = analysis.summarize(
        table.drop(columns=[c for c in table if c.endswith(("_logged", "_note"))]), baseline="float16-n10"
    )
    assert summary.config("float32-n5").n_ratings == 6
    assert summary.config("bfloat16-n5").n_ratings == 18
    assert any("asked for bfloat16, ran float32" in w for w in summary.warnings)


def test_store_refuses_to_append_to_an_old_log_and_leaves_it(v1_log):
    before = v1_log.read_bytes()
    with pytest.raises(RatingsFileError, match="schema 1.*--ratings NEW.csv"):
        RatingsStore(v1_log)
    assert v1_log.read_bytes() == before
