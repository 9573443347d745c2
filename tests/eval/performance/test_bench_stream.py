"""eval.performance.bench --streaming, run as a user would on the demo model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.performance.bench_stream import quantiles

ROOT = Path(__file__).resolve().parents[3]
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FIXED_TOKENS = 60  # 2.4 s at 25 tokens/s: enough for a first hop, another call and a final one
TOKEN_RATE_HZ = 25


@pytest.fixture(scope="module")
def doc_and_out(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench_stream") / "results.json"
    cmd = [
        sys.executable, "-m", "eval.performance.bench", "--demo", "--device", "cpu", "--flow_steps", "5", "10",
        "--dtype", "float32", "--runs", "2", "--warmup", "0", "--fixed_tokens", str(FIXED_TOKENS),
        "--streaming", "--prompt_seconds", "3", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), out, proc.stdout


def test_streaming_block_is_consistent_with_its_runs(doc_and_out):
    doc, _, stdout = doc_and_out
    assert doc["settings"]["streaming"] is True
    assert doc["settings"]["prompt_tokens"] == 75  # 3 s at 25 tokens/s: no first-hop pad
    for config in doc["configs"]:
        block = config["streaming"]
        runs = block["runs"]
        assert len(runs) == 2 and block["nonfinite_samples"] == 0
        for r in runs:
            assert r["n_tokens"] == FIXED_TOKENS and r["n_chunks"] >= 2
            assert r["audio_s"] == pytest.approx(FIXED_TOKENS / TOKEN_RATE_HZ)
            assert r["stream_rtf"] == pytest.approx(r["stream_wall_s"] / r["audio_s"])
            assert 0 < r["first_chunk_s"] <= r["stream_wall_s"]
            assert len(r["chunk_intervals_s"]) == r["n_chunks"] - 1
            total = r["stream_llm_s"] + r["stream_flow_s"] + r["stream_vocoder_s"]
            assert r["overlap_s"] == pytest.approx(total - r["stream_wall_s"])
        first = [r["first_chunk_s"] for r in runs]
        assert block["stats"]["first_chunk_s"]["median"] == pytest.approx(float(np.median(first)))
        pooled = [i for r in runs for i in r["chunk_intervals_s"]]
        assert block["chunk_interval_s"]["max"] == max(pooled)
        assert config["label"] in stdout
    ratio = doc["streaming_flow_ratio_n5_over_n10"]["float32-auto"]
    flows = {c["flow_steps"]: c["streaming"]["stats"]["stream_flow_s"]["median"] for c in doc["configs"]}
    assert ratio == pytest.approx(flows[5] / flows[10])
    assert "first chunk ms" in stdout and "streaming flow time, 5 / 10 steps" in stdout


def test_summary_csv_has_the_streaming_columns(doc_and_out):
    _, out, _ = doc_and_out
    with out.with_suffix(".csv").open() as f:
        rows = list(csv.DictReader(f))
    for name in ("stream_first_chunk_s_p90", "stream_chunk_interval_s_median", "stream_stream_rtf_median"):
        assert all(float(r[name]) > 0 for r in rows), name


def test_quantiles_on_a_hand_computed_sample():
    q = quantiles([4.0, 1.0, 3.0, 2.0, 5.0])
    # numpy linear quantiles: p90 at position 0.9 * 4 = 3.6 between 4 and 5
    assert q == {"median": 3.0, "p90": pytest.approx(4.6), "min": 1.0, "max": 5.0}
    assert all(np.isnan(v) for v in quantiles([]).values())
