"""Flow parity against the official reference vectors (tiny random-weight model, CPU).

Truth = arrays the official CosyVoice2 code wrote (reference/tiny/<case>/*.npy); see reference README
§3 (definitions), §4-5 (expected cast errors, fp32 tolerances). Measured on this CPU (torch 2.13):
fp32 flow_mu 1.7e-6, estimator per call <= 4.7e-6, flow_mel 3.6e-6 (n10) / 4.2e-6 (n5), streaming
mel 3.1e-6; bf16 cast mel vs cast reference cos 0.99997, vs fp32 cos 0.99846 (reference 0.99846);
fp16 cast mel vs cast reference cos 0.9999995, vs fp32 cos 0.99982 (reference 0.99982).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_core.flow.backends import TorchEstimator
from tts_core.flow.model import FlowConfig, FlowModel, time_grid
from tts_core.model.yaml_config import read_yaml

FP32_ATOL = 1e-4  # README §5: a faithful fp32 CPU implementation lands far below this (measured ~5e-6)
PROMPT_FRAMES = 50  # 25 prompt tokens x 2
TOTAL_FRAMES = 200  # (25 + 75) tokens x 2

# Cast runs: our kernels (SDPA, fused attention) round differently from the official explicit
# softmax path, so compare by cosine / relative L2 error. Bounds = about 2-3x the measured gap,
# and far tighter than the cast-vs-fp32 gap they must resolve (bf16 1 - cos 1.5e-3, fp16 1.8e-4).
#                  (min cos vs cast ref, max rel vs cast ref, min cos vs fp32 ref, max rel vs fp32 ref)
CAST_MEL_BOUNDS = {
    "bf16_cast_n10": (0.9999, 0.02, 0.997, 0.08),  # measured 0.99997, 0.0083, 0.99846, 0.0556
    "fp16_cast_n10": (0.999995, 0.003, 0.9996, 0.03),  # measured 0.9999995, 0.0010, 0.99982, 0.0193
}
#                  (max rel of mu, max rel of estimator call 0), both vs the cast reference
CAST_PART_BOUNDS = {
    "bf16_cast_n10": (0.01, 0.02),  # measured 0.0045, 0.0084
    "fp16_cast_n10": (0.0015, 0.003),  # measured 0.00062, 0.0011
}
CAST_DTYPES = {"bf16_cast_n10": torch.bfloat16, "fp16_cast_n10": torch.float16}


class RecordingBackend:
    """Torch estimator that keeps a float32 copy of every call's inputs and output."""

    name = "recording"

    def __init__(self, inner: TorchEstimator) -> None:
        self.inner = inner
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, x, mask, mu, t, spks, cond):
        out = self.inner(x, mask, mu, t, spks, cond)
        tensors = {"x": x, "mask": mask, "mu": mu, "t": t, "spks": spks, "cond": cond, "out": out}
        self.calls.append({k: v.detach().float().clone() for k, v in tensors.items()})
        return out

    def stacked(self, key: str) -> np.ndarray:
        return torch.stack([call[key] for call in self.calls]).numpy()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def flow(reference_dir: Path) -> FlowModel:
    model_dir = reference_dir / "tiny" / "model"
    model = FlowModel(FlowConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["flow"]))
    model.load_state_dict(torch.load(model_dir / "flow.pt", weights_only=True), strict=True)
    return model.eval()


def _inputs(load_ref, case: str) -> dict[str, torch.Tensor]:
    names = ("flow_token", "flow_prompt_token", "flow_prompt_feat", "flow_embedding")
    tok, ptok, pmel, emb = (torch.from_numpy(load_ref(case, n)) for n in names)
    return {"tokens": tok, "prompt_tokens": ptok, "prompt_mel": pmel, "embedding": emb}


def _constant_estimator_inputs(load_ref, mu: np.ndarray, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """mask/mu/cond of every call, rebuilt per README §3 (mu = flow_mu^T, cond = prompt mel then 0)."""
    mu_b = np.zeros((2, 80, TOTAL_FRAMES), np.float32)
    mu_b[0] = mu[0].T
    cond = np.zeros_like(mu_b)
    cond[0, :, :PROMPT_FRAMES] = load_ref("fp32_n10", "flow_prompt_feat")[0].T
    arrays = {"mask": np.ones((2, 1, TOTAL_FRAMES), np.float32), "mu": mu_b, "cond": cond}
    return {k: torch.from_numpy(v).to(dtype) for k, v in arrays.items()}


def test_fp32_constant_inputs_match_recorded(load_ref):
    # Guards the reconstruction used by the cast tests against what the fp32 run recorded.
    built = _constant_estimator_inputs(load_ref, load_ref("fp32_n10", "flow_mu"), torch.float32)
    for name in ("mask", "mu", "cond"):
        np.testing.assert_array_equal(built[name].numpy(), load_ref("fp32_n10", f"flow_est_{name}")[0])


def test_noise_is_the_official_buffer(flow, load_ref, reference_dir):
    full = np.load(reference_dir / "tiny" / "flow_noise_full.npy")
    np.testing.assert_array_equal(flow.decoder.rand_noise.numpy(), full)
    np.testing.assert_array_equal(full[:, :, :TOTAL_FRAMES], load_ref("fp32_n10", "flow_noise"))
    assert not any("rand_noise" in key for key in flow.state_dict())


@pytest.mark.parametrize("case", ["fp32_n10", "fp32_n5"])
def test_time_grid(load_ref, case):
    span = load_ref(case, "flow_t_span")
    grid = time_grid(len(span) - 1, "cosine", torch.float32, torch.device("cpu"))
    np.testing.assert_allclose(grid.numpy(), span, rtol=0, atol=1e-7)


def test_fp32_mu(flow, load_ref):
    inp = _inputs(load_ref, "fp32_n10")
    mu = flow.encode(torch.cat([inp["prompt_tokens"], inp["tokens"]], dim=1))
    assert mu.shape == (1, 80, TOTAL_FRAMES) and mu.dtype == torch.float32
    np.testing.assert_allclose(
        mu.transpose(1, 2).numpy(), load_ref("fp32_n10", "flow_mu"), rtol=0, atol=FP32_ATOL
    )


@pytest.mark.parametrize("case", ["fp32_n10", "fp32_n5"])
def test_fp32_estimator_each_call(flow, load_ref, case):
    """Each recorded Euler step: estimator(recorded inputs) == recorded output."""
    const = {
        n: torch.from_numpy(load_ref("fp32_n10", f"flow_est_{n}")[0]) for n in ("mask", "mu", "spks", "cond")
    }
    xs, ts, outs = (load_ref(case, f"flow_est_{n}") for n in ("x", "t", "out"))
    with torch.inference_mode():
        for k in range(len(xs)):
            out = flow.decoder.estimator(
                torch.from_numpy(xs[k]),
                const["mask"],
                const["mu"],
                torch.from_numpy(ts[k]),
                const["spks"],
                const["cond"],
            )
            np.testing.assert_allclose(out.numpy(), outs[k], rtol=0, atol=FP32_ATOL, err_msg=f"call {k}")


@pytest.mark.parametrize("case", ["fp32_n10", "fp32_n5"])
def test_fp32_mel_and_solver_trajectory(flow, load_ref, case):
    n_steps = int(case.rsplit("_n", 1)[1])
    backend = RecordingBackend(TorchEstimator(flow.decoder.estimator))
    mel = flow.inference(**_inputs(load_ref, case), n_steps=n_steps, estimator=backend)
    assert mel.shape == (1, 80, 150) and mel.dtype == torch.float32
    assert len(backend.calls) == n_steps
    np.testing.assert_allclose(backend.stacked("t"), load_ref(case, "flow_est_t"), rtol=0, atol=1e-7)
    np.testing.assert_allclose(backend.stacked("x"), load_ref(case, "flow_est_x"), rtol=0, atol=FP32_ATOL)
    np.testing.assert_allclose(backend.stacked("out"), load_ref(case, "flow_est_out"), rtol=0, atol=FP32_ATOL)
    np.testing.assert_allclose(mel.numpy(), load_ref(case, "flow_mel"), rtol=0, atol=FP32_ATOL)
    if case == "fp32_n10":
        first = backend.calls[0]
        for name in ("mask", "mu", "spks", "cond"):
            np.testing.assert_allclose(
                first[name].numpy(), load_ref(case, f"flow_est_{name}")[0], rtol=0, atol=FP32_ATOL
            )


@pytest.mark.parametrize("case", ["fp32_n10", "fp32_n5"])
def test_fp32_streaming_mel(flow, load_ref, case):
    n_steps = int(case.rsplit("_n", 1)[1])
    mel = flow.inference(**_inputs(load_ref, case), n_steps=n_steps, streaming=True)
    np.testing.assert_allclose(mel.numpy(), load_ref(case, "flow_streaming_mel"), rtol=0, atol=FP32_ATOL)


@pytest.mark.parametrize("case", ["bf16_cast_n10", "fp16_cast_n10"])
def test_cast_copy(flow, load_ref, case):
    """A copy cast with .to(dtype), fed the fp32 inputs (inference casts them), as the reference run did."""
    dtype = CAST_DTYPES[case]
    cast = copy.deepcopy(flow).to(dtype)
    inp = _inputs(load_ref, case)
    min_cos, max_rel, min_cos32, max_rel32 = CAST_MEL_BOUNDS[case]
    mu_rel, est_rel = CAST_PART_BOUNDS[case]

    mu_ref = load_ref(case, "flow_mu")
    mu = cast.encode(torch.cat([inp["prompt_tokens"], inp["tokens"]], dim=1))
    assert mu.dtype == dtype
    assert _rel(mu.float().transpose(1, 2).numpy(), mu_ref) < mu_rel

    # estimator call 0 on the reference's own inputs (x = noise, t = 0)
    const = _constant_estimator_inputs(load_ref, mu_ref, dtype)
    spks = torch.from_numpy(load_ref(case, "flow_est_spks")[0]).to(dtype)
    t0 = torch.from_numpy(load_ref(case, "flow_est_t")[0]).to(dtype)
    x0 = torch.from_numpy(load_ref(case, "flow_est_x")[0]).to(dtype)
    with torch.inference_mode():
        out = cast.decoder.estimator(x0, const["mask"], const["mu"], t0, spks, const["cond"])
    assert out.dtype == dtype
    assert _rel(out.float().numpy(), load_ref(case, "flow_est_out")[0]) < est_rel

    backend = RecordingBackend(TorchEstimator(cast.decoder.estimator))
    mel = cast.inference(**inp, n_steps=10, estimator=backend)
    assert mel.dtype == torch.float32 and bool(torch.isfinite(mel).all())
    # Same ops as the official code up to the first estimator call: t (accumulated in the cast
    # dtype), the noise and the speaker row must agree bit for bit.
    np.testing.assert_array_equal(backend.stacked("t"), load_ref(case, "flow_est_t"))
    np.testing.assert_array_equal(backend.calls[0]["x"].numpy(), load_ref(case, "flow_est_x")[0])
    np.testing.assert_array_equal(backend.calls[0]["spks"].numpy(), load_ref(case, "flow_est_spks")[0])
    assert backend.calls[0]["x"].dtype == torch.float32  # (recorded as float32 copies)

    mel_ref, mel_fp32 = load_ref(case, "flow_mel"), load_ref("fp32_n10", "flow_mel")
    assert _cos(mel.numpy(), mel_ref) > min_cos
    assert _rel(mel.numpy(), mel_ref) < max_rel
    assert _cos(mel.numpy(), mel_fp32) > min_cos32
    assert _rel(mel.numpy(), mel_fp32) < max_rel32
