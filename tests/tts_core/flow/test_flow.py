"""Flow behaviour that needs no reference vectors: the solver contract, input checks, fp16/bf16 safety.

Truths used: the Euler/CFG update written out by hand (constant velocities integrate to
x0 + (1 + w) a - w b), the cosine schedule formula in float64, the definition of the relative
shift, the textbook chunk mask, and finiteness.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_core.flow.backends import TorchEstimator
from tts_core.flow.conformer import (
    _shift_to_relative,
    chunk_attention_mask,
    relative_position_table,
)
from tts_core.flow.model import NOISE_FRAMES, FlowConfig, FlowModel
from tts_core.model.yaml_config import read_yaml

N_MELS = 80
CFG_RATE = 0.7


def _inputs(n_tokens: int = 10, n_prompt: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randint(0, 6561, (1, n_tokens), generator=g),
        "prompt_tokens": torch.randint(0, 6561, (1, n_prompt), generator=g),
        "prompt_mel": torch.randn(1, 2 * n_prompt, N_MELS, generator=g) * 2 - 5,
        "embedding": torch.randn(1, 192, generator=g),
    }


class ConstantBackend:
    """Counts calls and checks the CFG batch; returns velocity a (conditional) and b (unconditional)."""

    name = "constant"

    def __init__(self, a: float = 0.5, b: float = -1.25) -> None:
        self.a, self.b = a, b
        self.ts: list[torch.Tensor] = []

    def __call__(self, x, mask, mu, t, spks, cond):
        frames = x.shape[2]
        assert x.shape == mu.shape == cond.shape == (2, N_MELS, frames)
        assert mask.shape == (2, 1, frames) and t.shape == (2,) and spks.shape == (2, N_MELS)
        assert torch.equal(x[0], x[1]) and torch.equal(t[0], t[1])
        # the unconditional row has mu, spks and cond zeroed
        assert not mu[1].any() and not spks[1].any() and not cond[1].any()
        assert mu[0].any() and spks[0].any()
        self.ts.append(t[0].clone())
        return torch.stack([torch.full_like(x[0], self.a), torch.full_like(x[0], self.b)])


@pytest.mark.parametrize("n_steps", [1, 5, 10])
def test_backend_called_n_steps_times_and_euler_cfg_update(tiny_flow, n_steps):
    backend = ConstantBackend()
    inp = _inputs()
    mel = tiny_flow.inference(**inp, n_steps=n_steps, estimator=backend)
    assert len(backend.ts) == n_steps
    # t_k = 1 - cos(pi/2 * k/n) for k = 0..n-1 (float64 formula vs float32 accumulation)
    expected_t = [1 - math.cos(math.pi / 2 * k / n_steps) for k in range(n_steps)]
    np.testing.assert_allclose([float(t) for t in backend.ts], expected_t, atol=1e-6)
    # constant velocities: the dt sum to 1, so x(1) = x(0) + (1 + w) a - w b
    prompt_frames = 2 * inp["prompt_tokens"].shape[1]
    total = prompt_frames + 2 * inp["tokens"].shape[1]
    noise = tiny_flow.decoder.rand_noise[:, :, prompt_frames:total]
    expected = noise + (1 + CFG_RATE) * backend.a - CFG_RATE * backend.b
    assert mel.shape == (1, N_MELS, 2 * inp["tokens"].shape[1])
    torch.testing.assert_close(mel, expected, rtol=0, atol=1e-5)


def test_output_is_new_part_float32_and_deterministic(tiny_flow):
    inp = _inputs(n_tokens=7, n_prompt=3)
    a = tiny_flow.inference(**inp, n_steps=2)
    b = tiny_flow.inference(**inp, n_steps=2)
    assert a.shape == (1, N_MELS, 14) and a.dtype == torch.float32
    assert torch.equal(a, b)  # fixed noise: same input, same mel


def test_noise_buffer_is_not_persistent_and_follows_dtype(tiny_flow):
    assert "decoder.rand_noise" not in tiny_flow.state_dict()
    assert tiny_flow.decoder.rand_noise.shape == (1, N_MELS, NOISE_FRAMES)
    half = copy.deepcopy(tiny_flow).to(torch.bfloat16)
    assert half.decoder.rand_noise.dtype == torch.bfloat16
    assert tiny_flow.decoder.rand_noise.dtype == torch.float32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": True}, "n_steps"),
        ({"n_steps": 2.0}, "n_steps"),
        ({"prompt_mel": torch.zeros(1, 9, N_MELS)}, "prompt_mel"),
        ({"embedding": torch.zeros(1, 80)}, "embedding"),
        ({"tokens": torch.tensor([[1, 6561]])}, "ids >= 6561"),
        ({"tokens": torch.zeros(1, 0, dtype=torch.long)}, "at least one"),
        ({"tokens": torch.zeros(1, 3)}, "integer"),
        ({"tokens": torch.zeros(3, dtype=torch.long)}, "shape"),
        ({"tokens": torch.zeros(1, NOISE_FRAMES // 2, dtype=torch.long)}, "at most 15000"),
        ({"streaming": True, "estimator": ConstantBackend()}, "streaming"),
    ],
)
def test_bad_input_raises_value_error(tiny_flow, change, message):
    args = {**_inputs(), "n_steps": 1, **change}
    with pytest.raises(ValueError, match=message):
        tiny_flow.inference(**args)


def test_chunk_mask_textbook():
    expected = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    )
    assert torch.equal(chunk_attention_mask(5, 2, torch.device("cpu")), expected.bool())


def test_relative_shift_definition():
    t = 5
    scores = torch.randn(2, 3, t, 2 * t - 1)
    shifted = _shift_to_relative(scores)
    for i in range(t):
        for j in range(t):
            # query i, key j: distance i - j sits in row (t - 1) - (i - j) of the table
            assert torch.equal(shifted[:, :, i, j], scores[:, :, i, t - 1 - i + j])


def test_relative_position_table_formula():
    t, d = 6, 8
    table = relative_position_table(t, d, torch.float32, torch.device("cpu"))[0].double().numpy()
    dist = np.arange(t - 1, -t, -1, dtype=np.float64)[:, None]
    freq = 10000.0 ** (-np.arange(0, d, 2) / d)
    np.testing.assert_allclose(table[:, 0::2], np.sin(dist * freq), atol=1e-6)
    np.testing.assert_allclose(table[:, 1::2], np.cos(dist * freq), atol=1e-6)


def test_config_from_reference_yaml(reference_dir: Path):
    node = read_yaml(reference_dir / "tiny" / "model" / "cosyvoice2.yaml")["flow"]
    cfg = FlowConfig.from_yaml(node)
    assert cfg.inference_cfg_rate == pytest.approx(0.7) and cfg.t_scheduler == "cosine"
    assert (cfg.encoder.attention_heads, cfg.encoder.linear_units, cfg.encoder.num_blocks) == (2, 256, 1)
    assert (cfg.estimator.channels, cfg.estimator.attention_head_dim, cfg.estimator.num_heads) == (64, 16, 2)
    assert (cfg.estimator.n_blocks, cfg.estimator.num_mid_blocks, cfg.estimator.static_chunk_size) == (
        1,
        2,
        50,
    )
    bad = copy.deepcopy(node)
    bad.kwargs["encoder"].kwargs["use_cnn_module"] = True
    with pytest.raises(ValueError, match="use_cnn_module"):
        FlowConfig.from_yaml(bad)
    bad = copy.deepcopy(node)
    bad.kwargs["decoder"].kwargs["estimator"].kwargs["channels"] = [64, 64]
    with pytest.raises(ValueError, match="channels"):
        FlowConfig.from_yaml(bad)


def _tiny_reference_flow(reference_dir: Path) -> FlowModel:
    model_dir = reference_dir / "tiny" / "model"
    flow = FlowModel(FlowConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["flow"]))
    flow.load_state_dict(torch.load(model_dir / "flow.pt", weights_only=True), strict=True)
    return flow.eval()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_streaming_masks_stay_finite(reference_dir, dtype):
    # The official additive -1e10 mask bias is -inf in fp16; chunk masks must not produce NaN.
    flow = _tiny_reference_flow(reference_dir).to(dtype)
    mel = flow.inference(**_inputs(n_tokens=60, n_prompt=15), n_steps=2, streaming=True)
    assert bool(torch.isfinite(mel).all())


@pytest.mark.slow
def test_fp16_long_input_is_finite(reference_dir):
    # 1500 new + 50 prompt tokens = 3100 frames. fp16 matmuls are slow on CPU (~13 s), hence 1 step;
    # the CUDA test below runs all 10.
    flow = _tiny_reference_flow(reference_dir).to(torch.float16)
    mel = flow.inference(**_inputs(n_tokens=1500, n_prompt=50, seed=3), n_steps=1)
    assert mel.shape == (1, N_MELS, 3000) and bool(torch.isfinite(mel).all())


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_long_input_is_finite(reference_dir, dtype):
    flow = _tiny_reference_flow(reference_dir).to("cuda", dtype)
    for streaming in (False, True):
        mel = flow.inference(**_inputs(n_tokens=1500, n_prompt=50, seed=3), n_steps=10, streaming=streaming)
        assert mel.device.type == "cuda" and bool(torch.isfinite(mel).all())


@pytest.mark.requires_cuda
def test_cuda_solver_loop_has_no_host_sync(tiny_flow):
    flow = copy.deepcopy(tiny_flow).to("cuda")
    inp = {k: v.to("cuda") for k, v in _inputs().items()}
    with torch.inference_mode():
        mu = flow.encode(torch.cat([inp["prompt_tokens"], inp["tokens"]], dim=1))
        frames = mu.shape[2]
        spks, cond = torch.randn(1, N_MELS, device="cuda"), torch.randn_like(mu)
        mask = torch.ones(1, 1, frames, device="cuda")
        backend = TorchEstimator(flow.decoder.estimator)
        backend(
            mu.repeat(2, 1, 1),
            mask.repeat(2, 1, 1),
            mu.repeat(2, 1, 1),
            torch.zeros(2, device="cuda"),
            spks.repeat(2, 1),
            cond.repeat(2, 1, 1),
        )  # warm-up (lazy inits may sync)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            flow.decoder.solve(mu, mask, spks, cond, 10, backend)
        finally:
            torch.cuda.set_sync_debug_mode("default")
