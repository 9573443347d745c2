"""eval.performance.bench: run as a user would on the demo model, and its memory probe."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.performance import bench, runinfo

ROOT = Path(__file__).resolve().parents[3]
# One thread: OpenMP's spinning threads slow to a crawl on a small machine shared with other jobs.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FIXED_TOKENS = 20
# 25 speech tokens per second of audio (CosyVoice2's token rate): 20 tokens are 0.8 s.
TOKEN_RATE_HZ = 25
ENV_KEYS = (
    "date_utc",
    "command",
    "device",
    "card",
    "driver_version",
    "cuda_version",
    "torch_version",
    "cpu_model",
    "python_version",
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    cmd = [
        sys.executable, "-m", "eval.performance.bench", "--demo", "--device", "cpu",
        "--flow_steps", "1", "2", "--dtype", "float32", "bfloat16",
        "--runs", "2", "--warmup", "1", "--fixed_tokens", str(FIXED_TOKENS), "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV)
    return proc, out


def test_bench_cli_writes_every_output(bench_run):
    proc, out = bench_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    for key in ENV_KEYS:
        assert key in doc["environment"], key
    assert doc["environment"]["command"].startswith("python -m eval.performance.bench --demo")
    assert doc["settings"]["fixed_tokens"] == FIXED_TOKENS
    labels = [c["label"] for c in doc["configs"]]
    # backends outermost, then dtypes, then steps, in the order given
    assert labels == ["float32-n1", "float32-n2", "bfloat16-n1", "bfloat16-n2"]
    for label in labels:
        assert label in proc.stdout
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with out.with_suffix(".csv").open() as f:
        summary = list(csv.DictReader(f))
    assert [r["label"] for r in summary] == labels
    with out.with_name(out.stem + "_runs.csv").open() as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 2 * len(labels)


def test_bench_numbers_are_consistent(bench_run):
    _, out = bench_run
    doc = json.loads(out.read_text())
    runs = doc["runs"]
    for config in doc["configs"]:
        assert config["dtype_ran"] == config["dtype"]  # both dtypes run on a CPU
        assert config["backend_ran"] == "torch"
        mine = [r for r in runs if r["config"] == config["label"]]
        for r in mine:
            assert r["n_tokens"] == FIXED_TOKENS
            assert r["audio_s"] == pytest.approx(FIXED_TOKENS / TOKEN_RATE_HZ)
            assert r["total_s"] == pytest.approx(r["llm_s"] + r["flow_s"] + r["vocoder_s"])
            assert r["rtf"] == pytest.approx(r["total_s"] / r["audio_s"])
            assert r["llm_tokens_per_s"] == pytest.approx(FIXED_TOKENS / r["llm_s"])
        for metric in ("rtf", "flow_s", "llm_tokens_per_s"):
            values = [r[metric] for r in mine]
            stat = config["stats"][metric]
            assert stat["median"] == pytest.approx(float(np.median(values)))
            assert stat["min"] == min(values) and stat["max"] == max(values)
        memory = config["memory"]
        assert memory["peak_mb"] >= memory["resident_mb"] > 0
    first = doc["configs"][0]
    assert first["speedup"] == 1.0 and first["rtf_reduction"] == 0.0
    for config in doc["configs"]:
        ratio = first["stats"]["rtf"]["median"] / config["stats"]["rtf"]["median"]
        assert math.isfinite(config["speedup"]) and config["speedup"] == pytest.approx(ratio)
        assert config["rtf_reduction"] == pytest.approx(1 - 1 / ratio)


def test_spread_on_a_hand_computed_sample():
    s = bench.spread([4, 1, 100, 3, 2])
    assert s == {"median": 3.0, "q25": 2.0, "q75": 4.0, "min": 1.0, "max": 100.0}


def test_cpu_peak_memory_is_reset_per_stretch():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak RSS cannot be reset on this system")
    probe = runinfo.MemoryProbe(cuda_index=None)
    probe.reset()
    block = np.ones(200 * runinfo.MB // 8)  # 200 MiB, touched
    del block
    assert probe.peak_mb() - probe.resident_mb >= 190
    probe.reset()
    assert probe.peak_mb() - probe.resident_mb < 50


def test_cuda_index_from_device_label():
    assert runinfo.cuda_index("cpu") is None
    assert runinfo.cuda_index("cuda:1 (NVIDIA H100 80GB HBM3)") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "float8"], "dtype must be one of"),
        (["--flow_steps", "0"], "flow_steps must be between 1 and"),
        (["--runs", "0"], "--runs must be at least 1"),
        (["--dtype", "float32", "float32"], "repeats a value"),
    ],
)
def test_bad_arguments_exit_2(args, message, capsys):
    assert bench.main(["--demo", "--device", "cpu", *args]) == bench.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
