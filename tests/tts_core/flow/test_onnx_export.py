"""ONNX export of the estimator, checked with onnxruntime on the CPU.

Truths: the official estimator calls recorded in the reference (tiny model), and for other
lengths/padding the torch estimator (itself checked against the reference in test_flow_parity.py).
Measured here (onnxruntime 1.32, torch 2.13 TorchScript exporter): max |ORT - official| 5.8e-6
over the 10 recorded calls; |ORT - torch| <= 4.6e-6 at 4, 17 and 333 frames (padded mask included).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tts_core.flow.estimator_net import CausalConditionalDecoder
from tts_core.flow.model import FlowConfig, FlowModel
from tts_core.flow.onnx_export import (
    MODEL_DIR_ONNX,
    ONNX_INPUTS,
    ONNX_OPSET,
    ONNX_OUTPUT,
    cached_estimator_onnx,
    check_onnx_interface,
    estimator_digest,
    example_inputs,
    export_estimator_onnx,
    file_sha256,
    model_dir_onnx,
)
from tts_core.model.yaml_config import read_yaml

FP32_ATOL = 1e-4  # as test_flow_parity.py
ORT_TORCH_ATOL = 1e-4  # same float32 graph, different kernels: measured <= 4.6e-6


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, tensors) -> np.ndarray:
    feeds = {name: t.numpy() if isinstance(t, torch.Tensor) else t for name, t in zip(ONNX_INPUTS, tensors)}
    return session.run([ONNX_OUTPUT], feeds)[0]


@pytest.fixture(scope="module")
def tiny_estimator(reference_dir: Path) -> CausalConditionalDecoder:
    model_dir = reference_dir / "tiny" / "model"
    flow = FlowModel(FlowConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["flow"]))
    flow.load_state_dict(torch.load(model_dir / "flow.pt", weights_only=True), strict=True)
    return flow.decoder.estimator.eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_estimator, tmp_path_factory) -> Path:
    return export_estimator_onnx(tiny_estimator, tmp_path_factory.mktemp("onnx") / MODEL_DIR_ONNX)




def test_interface_is_the_official_one(tiny_onnx):
    check_onnx_interface(tiny_onnx)
    model = onnx.load(str(tiny_onnx))
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [
        ("", ONNX_OPSET)
    ]
    dims = {
        inp.name: [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        for inp in model.graph.input
    }
    assert dims == {
        "x": [2, 80, "seq_len"],
        "mask": [2, 1, "seq_len"],
        "mu": [2, 80, "seq_len"],
        "t": [2],
        "spks": [2, 80],
        "cond": [2, 80, "seq_len"],
    }
    assert [o.name for o in model.graph.output] == [ONNX_OUTPUT]
    # LayerNormalization as one op (opset 17+), which TensorRT maps to its normalization layer
    assert any(node.op_type == "LayerNormalization" for node in model.graph.node)


def test_onnxruntime_matches_every_official_call(tiny_onnx, load_ref):
    session = _session(tiny_onnx)
    const = [load_ref("fp32_n10", f"flow_est_{n}")[0] for n in ("mask", "mu", "spks", "cond")]
    xs, ts, outs = (load_ref("fp32_n10", f"flow_est_{n}") for n in ("x", "t", "out"))
    for k in range(len(xs)):
        mask, mu, spks, cond = const
        got = _run(session, (xs[k], mask, mu, ts[k], spks, cond))
        np.testing.assert_allclose(got, outs[k], rtol=0, atol=FP32_ATOL, err_msg=f"call {k}")


@pytest.mark.parametrize(("frames", "padding"), [(17, 0), (333, 0), (333, 40), (4, 0)])
def test_onnxruntime_matches_torch_at_other_lengths(tiny_onnx, tiny_estimator, frames, padding):
    x, mask, mu, t, spks, cond = example_inputs(80, frames, seed=frames + padding)
    if padding:
        mask[:, :, frames - padding :] = 0
    with torch.inference_mode():
        want = tiny_estimator(x, mask, mu, t, spks, cond, key_padding=True).numpy()
    got = _run(_session(tiny_onnx), (x, mask, mu, t, spks, cond))
    np.testing.assert_allclose(got, want, rtol=0, atol=ORT_TORCH_ATOL)
    if padding:
        # the graph masks attention keys: the real frames equal an unpadded run
        real = frames - padding
        with torch.inference_mode():
            unpadded = tiny_estimator(
                x[..., :real], mask[..., :real], mu[..., :real], t, spks, cond[..., :real]
            ).numpy()
        np.testing.assert_allclose(got[..., :real], unpadded, rtol=0, atol=ORT_TORCH_ATOL)


def test_check_interface_rejects_other_models(tmp_path):
    class Other(torch.nn.Module):
        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return a * 2

    path = tmp_path / "other.onnx"
    torch.onnx.export(Other(), (torch.ones(2, 3),), str(path), dynamo=False, input_names=["a"])
    with pytest.raises(ValueError, match="inputs must be"):
        check_onnx_interface(path)


def test_cached_export_is_reused_and_keyed_by_weights(tmp_path, make_estimator):
    est = make_estimator()
    first = cached_estimator_onnx(est, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert cached_estimator_onnx(est, tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind
    changed = copy.deepcopy(est)
    with torch.no_grad():
        changed.final_proj.bias[0] += 1e-3
    assert estimator_digest(changed) != estimator_digest(est)
    assert cached_estimator_onnx(changed, tmp_path) != first
    # the digest follows the values, not the dtype the module is held in
    assert estimator_digest(copy.deepcopy(est).to(torch.float64)) == estimator_digest(est)


def test_model_dir_onnx_and_file_hash(tmp_path):
    assert model_dir_onnx(tmp_path) is None
    path = tmp_path / MODEL_DIR_ONNX
    path.write_bytes(os.urandom(3 << 20))  # more than one hashing chunk
    assert model_dir_onnx(tmp_path) == path
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_rejects_unknown_exporter(tmp_path, make_estimator):
    with pytest.raises(ValueError, match="exporter"):
        export_estimator_onnx(make_estimator(), tmp_path / "e.onnx", exporter="tf")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="onnxscript is not installed")
def test_dynamo_exporter_matches_torch(tmp_path, make_estimator):
    est = make_estimator(1)
    path = export_estimator_onnx(est, tmp_path / "dynamo.onnx", exporter="dynamo")
    check_onnx_interface(path)
    session = _session(path)
    for frames in (9, 120):
        x, mask, mu, t, spks, cond = example_inputs(80, frames, seed=frames)
        mask[:, :, frames - 3 :] = 0
        with torch.inference_mode():
            want = est(x, mask, mu, t, spks, cond, key_padding=True).numpy()
        np.testing.assert_allclose(
            _run(session, (x, mask, mu, t, spks, cond)), want, rtol=0, atol=ORT_TORCH_ATOL
        )
