"""eval.performance.bench_kernels: candidate shapes are valid tunings, clear refusal without a GPU, a GPU smoke run."""

from __future__ import annotations

import json

import pytest
import torch

from eval.performance import bench_kernels

pytest.importorskip("triton", reason="Triton is not installed (it comes with requirements-test.txt)")

from tts_core.llm.triton_backbone import KernelTuning  # noqa: E402


@pytest.mark.parametrize("quick", [True, False])
def test_every_candidate_makes_a_valid_tuning(quick):
    grid = bench_kernels.candidates(quick)
    assert set(grid) == {"qkv", "attention", "o", "gate_up", "down", "head"}
    for i in range(max(len(v) for v in grid.values())):
        shapes = {k: v[i % len(v)] for k, v in grid.items()}
        KernelTuning(**bench_kernels.tuning_fields(shapes))  # raises on a non-power-of-two shape


def test_defaults_are_among_the_candidates():
    fields = KernelTuning().__dict__
    grid = bench_kernels.candidates(quick=False)
    for kernel, shapes in grid.items():
        default = tuple(v for k, v in fields.items() if k in bench_kernels.tuning_fields({kernel: shapes[0]}))
        assert default in shapes, kernel


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_gpu(capsys, tmp_path):
    assert bench_kernels.main(["--out", str(tmp_path / "k.json")]) == bench_kernels.EXIT_BAD_INPUT
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()


@pytest.mark.requires_cuda
def test_small_sweep_on_gpu():
    sweep = bench_kernels.KernelSweep(torch.bfloat16)
    grid = {"qkv": [(2, 256, 4)], "attention": [(64, 8, 4)], "o": [(4, 512, 2)], "down": [(1, 512, 8)]}
    out = bench_kernels.sweep(sweep, grid, log=lambda _: None)
    assert out["attention"]["cublas_us"] is None and out["o"]["cublas_us"] > 0
    assert all(0 < r["best_us"] < 1000 for r in out.values())
    json.dumps(out)
