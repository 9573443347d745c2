"""eval.performance.soak: the growth detector on synthetic traces, a CPU soak of the demo model, an injected leak."""

from __future__ import annotations

import csv
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.performance import soak

ROOT = Path(__file__).resolve().parents[3]
# One thread: OpenMP's spinning threads slow to a crawl on a small machine shared with other jobs.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
N = 200
NOISE_MB = 2.0


def _trace(slope: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 600.0 + slope * np.arange(N) + rng.normal(0.0, NOISE_MB, N)


def test_flat_trace_passes():
    v = soak.detect_growth(_trace(0.0), threshold_mb=50, warmup=40)
    assert v.passed and abs(v.growth_mb) < 10


def test_leak_of_one_mb_per_iteration_fails():
    v = soak.detect_growth(_trace(1.0), threshold_mb=50, warmup=40)
    assert not v.passed
    # least squares recovers the true slope; growth is slope x (160 fitted samples - 1)
    assert v.slope_mb_per_iteration == pytest.approx(1.0, abs=0.05)
    assert v.growth_mb == pytest.approx(159, abs=8)
    assert "GROWING" in v.message()


def test_warm_up_ramp_is_left_out():
    trace = _trace(0.0)
    trace[:30] -= np.linspace(150, 0, 30)  # allocator pools filling during the first iterations
    assert soak.detect_growth(trace, threshold_mb=50, warmup=40).passed
    assert not soak.detect_growth(trace, threshold_mb=50, warmup=0).passed


def test_threshold_is_on_explained_growth():
    trace = 600.0 + 0.5 * np.arange(N)  # exactly 0.5 MB/iteration, 99.5 MB over the fitted part
    assert soak.detect_growth(trace, threshold_mb=100, warmup=0).passed
    assert not soak.detect_growth(trace, threshold_mb=99, warmup=0).passed


def test_warm_up_count_and_too_few_samples():
    assert soak.warmup_count(100, 0.2, pool_size=10) == 20
    assert soak.warmup_count(30, 0.2, pool_size=10) == 10
    with pytest.raises(ValueError, match="at least 5 are needed"):
        soak.detect_growth([1.0] * 12, warmup=8)


def test_cpu_soak_of_the_demo_model_passes(tmp_path):
    cmd = [
        sys.executable, "-m", "eval.performance.soak", "--demo", "--device", "cpu", "--iterations", "30",
        "--pool", "10", "--dtype", "float32", "bfloat16", "--fixed_tokens", "15", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "PASS" in proc.stdout
    with (tmp_path / "trace.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    assert len({r["text_id"] for r in rows}) > 3 and len({r["config_a"] for r in rows}) > 3
    assert all(float(r["rss_mb"]) > 0 for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] == "pass" and summary["growth"][0]["warmup"] == 10
    assert (tmp_path / "trace.png").read_bytes()[:4] == b"\x89PNG"


LEAK_BYTES_PER_RENDER = 3 * 1024 * 1024


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_injected_leak_fails(tmp_path, monkeypatch, capsys, one_thread):
    from tts_core.pipeline import Pipeline

    leaked: list[mmap.mmap] = []
    render = Pipeline.tokens_to_audio

    def leaky(self, tokens, prompt, options):
        # Fresh anonymous pages from the kernel, every page touched: unlike a heap allocation, no
        # allocator can serve it from memory an earlier render freed, so RSS grows by what leaked.
        block = mmap.mmap(-1, LEAK_BYTES_PER_RENDER)
        block.write(b"\x01" * LEAK_BYTES_PER_RENDER)
        leaked.append(block)
        return render(self, tokens, prompt, options)

    monkeypatch.setattr(Pipeline, "tokens_to_audio", leaky)
    argv = ["--demo", "--device", "cpu", "--iterations", "20", "--pool", "5", "--dtype", "float32"]
    code = soak.main([*argv, "--fixed_tokens", "10", "--max_steps", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == soak.EXIT_FAIL, out
    assert "FAIL: memory keeps growing (rss_mb)" in out
    # two renders per iteration: 6 MiB per iteration leaked; the rest of the process may add a little
    slope = json.loads((tmp_path / "summary.json").read_text())["growth"][0]["slope_mb_per_iteration"]
    injected = 2 * LEAK_BYTES_PER_RENDER / 2**20
    assert injected * 0.9 <= slope <= injected + 2.0
