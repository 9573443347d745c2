"""Flow backends: padding equivalence, bucketing, the graph cache, selection, CUDA-graph parity.

Truths: the official reference vectors (estimator calls, mu, mel of the tiny model) for the
padded computations; on CUDA, the eager float32 flow (itself checked against the reference in
test_flow_parity.py). Measured on this CPU: padded estimator vs official call <= 4.7e-6, padded
mu 1.7e-6, padded mel 4.2e-6 (n5/n10); without the key mask the padded estimator is off by ~2.5.
On an H100 (torch 2.11) the CUDA-graph flow gave the eager flow's mel bit for bit (max |diff| 0).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_core.flow.backends import TorchEstimator
from tts_core.flow.cuda_graph import (
    MIN_BUCKET_TOKENS,
    CudaGraphFlow,
    bucket_tokens,
    encode_padded,
    padded_flow_mel,
)
from tts_core.flow.model import FlowConfig, FlowModel
from tts_core.flow.selection import select_estimator_backend
from tts_core.lru import LruCache
from tts_core.model.yaml_config import read_yaml

FP32_ATOL = 1e-4  # as test_flow_parity.py: a faithful fp32 implementation lands near 5e-6
PROMPT_TOKENS, NEW_TOKENS = 25, 75  # the reference inputs
MAX_TOKENS = 7500  # 15000 noise frames / 2


@pytest.fixture(scope="module")
def flow(reference_dir: Path) -> FlowModel:
    model_dir = reference_dir / "tiny" / "model"
    model = FlowModel(FlowConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["flow"]))
    model.load_state_dict(torch.load(model_dir / "flow.pt", weights_only=True), strict=True)
    return model.eval()


def _ref_inputs(load_ref) -> dict[str, torch.Tensor]:
    names = ("flow_token", "flow_prompt_token", "flow_prompt_feat", "flow_embedding")
    tok, ptok, pmel, emb = (torch.from_numpy(load_ref("fp32_n10", n)) for n in names)
    return {"tokens": tok, "prompt_tokens": ptok, "prompt_mel": pmel, "embedding": emb}


def _pad_time(a: np.ndarray, extra: int, gen: torch.Generator) -> torch.Tensor:
    """Right-pad the last axis with random garbage (never zeros: padding must not matter)."""
    pad = torch.randn(*a.shape[:-1], extra, generator=gen) * 3
    return torch.cat([torch.from_numpy(a), pad], dim=-1)


def test_padded_estimator_matches_each_official_call(flow, load_ref):
    gen = torch.Generator().manual_seed(0)
    extra = 56
    const = {n: load_ref("fp32_n10", f"flow_est_{n}")[0] for n in ("mask", "mu", "spks", "cond")}
    mask = torch.cat([torch.from_numpy(const["mask"]), torch.zeros(2, 1, extra)], dim=-1)
    mu, cond = _pad_time(const["mu"], extra, gen), _pad_time(const["cond"], extra, gen)
    spks = torch.from_numpy(const["spks"])
    xs, ts, outs = (load_ref("fp32_n10", f"flow_est_{n}") for n in ("x", "t", "out"))
    masked = TorchEstimator(flow.decoder.estimator, key_padding=True)
    plain = TorchEstimator(flow.decoder.estimator)
    with torch.inference_mode():
        for k in range(len(xs)):
            x, t = _pad_time(xs[k], extra, gen), torch.from_numpy(ts[k])
            out = masked(x, mask, mu, t, spks, cond)
            np.testing.assert_allclose(out[..., :200].numpy(), outs[k], rtol=0, atol=FP32_ATOL)
            assert not out[..., 200:].any()  # the output is masked
        # Without the key mask the padding leaks into real frames through attention.
        leaked = plain(x, mask, mu, t, spks, cond)[..., :200]
        assert float((leaked - torch.from_numpy(outs[-1])).abs().max()) > 1e-2


@pytest.mark.parametrize(("case", "n_steps", "bucket"), [("fp32_n10", 10, 128), ("fp32_n5", 5, 160)])
def test_padded_flow_matches_official_mel(flow, load_ref, case, n_steps, bucket):
    inp = _ref_inputs(load_ref)
    n = PROMPT_TOKENS + NEW_TOKENS
    tokens = torch.randint(0, 6561, (1, bucket), generator=torch.Generator().manual_seed(1))
    tokens[:, :n] = torch.cat([inp["prompt_tokens"], inp["tokens"]], dim=1)
    n_tokens = torch.tensor([n])
    cond = torch.zeros(1, 80, 2 * bucket)
    cond[:, :, : 2 * PROMPT_TOKENS] = inp["prompt_mel"].transpose(1, 2)
    with torch.inference_mode():
        mu, frame_valid = encode_padded(flow, tokens, n_tokens)
        step = TorchEstimator(flow.decoder.estimator, key_padding=True)
        x = padded_flow_mel(flow, tokens, n_tokens, cond, inp["embedding"], n_steps, step)
    assert frame_valid.shape == (1, 2 * bucket) and int(frame_valid.sum()) == 2 * n
    np.testing.assert_allclose(
        mu[0, :, : 2 * n].T.numpy(), load_ref("fp32_n10", "flow_mu")[0], rtol=0, atol=FP32_ATOL
    )
    assert x.shape == (1, 80, 2 * bucket) and bool(torch.isfinite(x).all())
    mel = x[:, :, 2 * PROMPT_TOKENS : 2 * n].numpy()
    np.testing.assert_allclose(mel, load_ref(case, "flow_mel"), rtol=0, atol=FP32_ATOL)


def test_torch_backend_run_flow_matches_official_mel(flow, load_ref):
    mel = TorchEstimator(flow.decoder.estimator).run_flow(flow, **_ref_inputs(load_ref), n_steps=10)
    np.testing.assert_allclose(mel.numpy(), load_ref("fp32_n10", "flow_mel"), rtol=0, atol=FP32_ATOL)


def test_bucket_tokens_bounds():
    buckets = set()
    for n in range(1, MAX_TOKENS + 1):
        b = bucket_tokens(n, MAX_TOKENS)
        assert n <= b <= MAX_TOKENS
        assert b - n < max(MIN_BUCKET_TOKENS, n / 8)  # padding under 32 tokens or 1/8
        buckets.add(b)
    assert len(buckets) <= 64  # a handful of graphs covers every length
    assert [bucket_tokens(n, MAX_TOKENS) for n in (1, 32, 33, 350, 600, 1500)] == [32, 32, 64, 352, 640, 1536]
    assert bucket_tokens(7400, 7500) == 7500  # capped at the limit
    for bad in (0, MAX_TOKENS + 1):
        with pytest.raises(ValueError, match="n_tokens"):
            bucket_tokens(bad, MAX_TOKENS)


def test_lru_cache_evicts_least_recently_used():
    cache: LruCache[str, int] = LruCache(2)
    assert cache.put("a", 1) == [] and cache.put("b", 2) == []
    assert cache.get("a") == 1  # "a" is now the most recent
    assert cache.put("c", 3) == ["b"]
    assert cache.keys() == ["a", "c"] and cache.get("b") is None and len(cache) == 2
    with pytest.raises(ValueError, match="max_items"):
        LruCache(0)


def test_select_backend_on_cpu(tiny_flow, caplog):
    cpu = torch.device("cpu")
    assert select_estimator_backend(tiny_flow, cpu, "torch").name == "torch"
    with caplog.at_level(logging.INFO, logger="tts_core.flow.selection"):
        auto = select_estimator_backend(tiny_flow, cpu, "auto")
    assert auto.name == "torch" and "auto: torch" in caplog.text and "CUDA" in caplog.text
    with pytest.raises(ValueError, match="torch-cudagraph.*CUDA"):
        select_estimator_backend(tiny_flow, cpu, "torch-cudagraph")
    with pytest.raises(ValueError, match="tensorrt.*cannot run.*CUDA"):
        select_estimator_backend(tiny_flow, cpu, "tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        select_estimator_backend(tiny_flow, cpu, "onnxruntime")
    with pytest.raises(ValueError, match="lives on"):
        select_estimator_backend(tiny_flow, torch.device("cuda"), "torch")
    with pytest.raises(ValueError, match="CUDA device"):
        CudaGraphFlow(tiny_flow)


def _inputs(n_new: int, n_prompt: int, seed: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inp = {
        "tokens": torch.randint(0, 6561, (1, n_new), generator=g),
        "prompt_tokens": torch.randint(0, 6561, (1, n_prompt), generator=g),
        "prompt_mel": torch.randn(1, 2 * n_prompt, 80, generator=g) * 2 - 5,
        "embedding": torch.randn(1, 192, generator=g),
    }
    return {k: v.to(device) for k, v in inp.items()}


@pytest.mark.requires_cuda
def test_cudagraph_matches_eager_fp32(tiny_flow):
    flow = copy.deepcopy(tiny_flow).to("cuda")
    backend = select_estimator_backend(flow, torch.device("cuda"), "torch-cudagraph")
    assert backend.name == "torch-cudagraph"
    # (new, prompt): three share the 128-token bucket (different prompt lengths), one does not,
    # one has no prompt at all
    cases = [(75, 25), (60, 50), (100, 28), (300, 40), (20, 0)]
    for n_steps in (1, 5, 10):
        for seed, (n_new, n_prompt) in enumerate(cases):
            inp = _inputs(n_new, n_prompt, seed, "cuda")
            want = flow.inference(**inp, n_steps=n_steps)
            got = backend.run_flow(flow, **inp, n_steps=n_steps)
            assert got.shape == want.shape and got.dtype == torch.float32
            torch.testing.assert_close(got, want, rtol=0, atol=FP32_ATOL)
    assert {(k[0], k[1]) for k in backend.graph_keys()} == {
        (b, s) for b in (32, 128, 352) for s in (1, 5, 10)
    }
    assert len(backend.captures) == 9 and all(r.seconds > 0 for r in backend.captures)


@pytest.mark.requires_cuda
def test_cudagraph_cache_is_bounded_and_recaptures(tiny_flow):
    flow = copy.deepcopy(tiny_flow).to("cuda")
    backend = CudaGraphFlow(flow, max_graphs=2)
    lengths = [(40, 10), (150, 10), (250, 10), (40, 10)]  # buckets 64, 160, 288, then 64 again
    outs = [backend.run_flow(flow, **_inputs(n, p, 7, "cuda"), n_steps=3) for n, p in lengths]
    assert [k[0] for k in backend.graph_keys()] == [288, 64]
    assert [r.bucket_tokens for r in backend.captures] == [64, 160, 288, 64]
    torch.testing.assert_close(outs[3], outs[0], rtol=0, atol=1e-6)  # recaptured graph, same result
    records = backend.warmup([260, 270], [3])  # bucket 288 x 3 steps is cached: nothing to capture
    assert records == []
    with pytest.raises(ValueError, match="another FlowModel"):
        backend.run_flow(copy.deepcopy(flow), **_inputs(5, 5, 0, "cuda"), n_steps=1)


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cudagraph_half_long_input_is_finite_and_close(tiny_flow, dtype):
    flow32 = copy.deepcopy(tiny_flow).to("cuda")
    flow = copy.deepcopy(tiny_flow).to("cuda", dtype)
    backend = CudaGraphFlow(flow)
    inp = _inputs(1450, 50, 3, "cuda")
    got = backend.run_flow(flow, **inp, n_steps=10)
    assert got.dtype == torch.float32 and bool(torch.isfinite(got).all())
    ref = flow32.inference(**inp, n_steps=10)
    assert float((got - ref).norm() / ref.norm()) < 0.05
