"""TensorRT backend: what can be checked without TensorRT, and the engine itself where it exists.

Without TensorRT: the optimisation profile against the official ``get_trt_kwargs`` shapes
(facts §5: min 4 / opt 500 / max 3000 frames, batch 2), the engine cache key, the reasons the
backend cannot run, and the builder calls (flags per dtype, I/O types, profile, layer precision
requests, cache hit/miss) against a recording stand-in for the ``tensorrt`` module. The
``requires_trt`` tests build real engines and compare them with the torch estimator.
"""

from __future__ import annotations

import copy
import sys
import types
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from tts_core.flow import tensorrt as trt_backend
from tts_core.flow.onnx_export import ONNX_INPUTS, ONNX_OUTPUT, example_inputs, export_estimator_onnx
from tts_core.flow.tensorrt import (
    TRT_NOT_INSTALLED,
    EngineKey,
    TrtProfile,
    build_serialized_engine,
    build_tensorrt_estimator,
    load_or_build_engine,
    tensorrt_unavailable_reason,
)

H100 = "NVIDIA H100 80GB HBM3"
SHA = "ab" * 32




def test_default_profile_is_the_official_one():
    profile = TrtProfile()
    # cosyvoice/cli/model.py get_trt_kwargs: x, mask, mu, cond; t and spks static
    assert profile.shapes("x") == ((2, 80, 4), (2, 80, 500), (2, 80, 3000))
    assert profile.shapes("mask") == ((2, 1, 4), (2, 1, 500), (2, 1, 3000))
    assert profile.shapes("mu") == profile.shapes("cond") == profile.shapes("x")
    assert profile.input_shape("t", 123) == (2,) and profile.input_shape("spks", 123) == (2, 80)
    profile.check_frames(4)
    profile.check_frames(3000)
    for frames in (3, 3001):
        with pytest.raises(ValueError, match="4..3000 mel frames"):
            profile.check_frames(frames)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        TrtProfile(min_frames=600, opt_frames=500)
    with pytest.raises(ValueError, match="unknown estimator input"):
        profile.input_shape("y", 10)


def test_engine_key_names_every_dependency():
    base = EngineKey(H100, "10.13.0.35", "float16", SHA, TrtProfile())
    name = base.filename()
    assert name.endswith(".plan") and name.replace(".", "").replace("-", "").isalnum()
    assert "float16" in name and SHA[:16] in name and "nvidia-h100-80gb-hbm3" in name and "10.13.0.35" in name
    variants = [
        EngineKey("NVIDIA A10G", "10.13.0.35", "float16", SHA, TrtProfile()),
        EngineKey(H100, "10.14.1", "float16", SHA, TrtProfile()),
        EngineKey(H100, "10.13.0.35", "bfloat16", SHA, TrtProfile()),
        EngineKey(H100, "10.13.0.35", "float16", "cd" * 32, TrtProfile()),
        EngineKey(H100, "10.13.0.35", "float16", SHA, TrtProfile(max_frames=6000)),
    ]
    assert len({name, *(v.filename() for v in variants)}) == 1 + len(variants)
    assert EngineKey(H100, "10.13.0.35", "float16", SHA, TrtProfile()).filename() == name


def test_unavailable_reasons(monkeypatch):
    assert "CUDA device" in tensorrt_unavailable_reason(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in tensorrt_unavailable_reason(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert tensorrt_unavailable_reason(torch.device("cuda")) == TRT_NOT_INSTALLED
    with pytest.raises(ValueError, match="not installed"):
        build_serialized_engine(Path("x.onnx"), torch.float16, TrtProfile())


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COSYVOICE2_AB_CACHE", str(tmp_path))
    assert trt_backend.default_cache_dir() == tmp_path / "trt"


# --- a recording stand-in for the tensorrt module (builder side only) -------------------------


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str = "FLOAT") -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class _Layer:
    def __init__(self, kind: str, outputs: list[_Tensor]) -> None:
        self.type, self._outputs = kind, outputs
        self.num_outputs = len(outputs)
        self.precision = None
        self.output_types: dict[int, str] = {}

    def get_output(self, i: int) -> _Tensor:
        return self._outputs[i]

    def set_output_type(self, i: int, dtype: str) -> None:
        self.output_types[i] = dtype


def fake_tensorrt(record: dict) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.1"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", BF16="BF16", INT64="INT64")
    trt.LayerType = types.SimpleNamespace(NORMALIZATION="NORM", CONSTANT="CONST", ELEMENTWISE="EW")
    trt.BuilderFlag = types.SimpleNamespace(
        FP16="FP16", BF16="BF16", TF32="TF32", PREFER_PRECISION_CONSTRAINTS="PREFER"
    )
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.INormalizationLayer = type("INormalizationLayer", (_Layer,), {})

    inputs = [_Tensor(n, (2, 80, -1)) for n in ONNX_INPUTS]
    layers = {
        "norm": _Layer("NORM", [_Tensor("n", (2, -1, 256))]),
        "time": _Layer("EW", [_Tensor("sin", (2, 320))]),  # batch-2 vector: time embedding
        "conv": _Layer("EW", [_Tensor("h", (2, 256, -1))]),  # has the time axis
        "const": _Layer("CONST", [_Tensor("w", (256, 256))]),
        "shape": _Layer("EW", [_Tensor("s", (3,), "INT64")]),
    }
    record["layers"], record["inputs"] = layers, inputs
    output = _Tensor(ONNX_OUTPUT, (2, 80, -1))
    network = types.SimpleNamespace(
        num_inputs=len(inputs),
        get_input=lambda i: inputs[i],
        num_outputs=1,
        get_output=lambda i: output,
        num_layers=len(layers),
        get_layer=lambda i: list(layers.values())[i],
    )
    record["output"] = output

    class Config:
        def __init__(self) -> None:
            self.flags, self.cleared = set(), set()
            record["config"] = self

        def set_memory_pool_limit(self, pool, size):
            record["workspace"] = (pool, size)

        def set_flag(self, flag):
            self.flags.add(flag)

        def clear_flag(self, flag):
            self.cleared.add(flag)

        def add_optimization_profile(self, profile):
            record["profile"] = profile.shapes

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags):
            record["network_flags"] = flags
            return network

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, net, config):
            record["builds"] = record.get("builds", 0) + 1
            return b"engine-bytes"

    class OnnxParser:
        def __init__(self, net, logger) -> None:
            self.num_errors = 0

        def parse_from_file(self, path):
            record["parsed"] = path
            return True

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.mark.parametrize(
    ("dtype", "flags", "io"),
    [
        (torch.float16, {"FP16", "PREFER"}, "HALF"),
        (torch.bfloat16, {"BF16", "PREFER"}, "BF16"),
        (torch.float32, set(), "FLOAT"),
    ],
)
def test_builder_calls(monkeypatch, dtype, flags, io):
    record: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(record))
    assert build_serialized_engine(Path("e.onnx"), dtype, TrtProfile()) == b"engine-bytes"
    assert record["network_flags"] == 0 and record["parsed"] == "e.onnx"
    assert record["config"].flags == flags
    assert record["config"].cleared == ({"TF32"} if dtype == torch.float32 else set())
    assert record["workspace"] == ("WORKSPACE", 4 << 30)
    assert {t.dtype for t in record["inputs"]} == {io} and record["output"].dtype == io
    assert record["profile"] == {n: TrtProfile().shapes(n) for n in ("x", "mask", "mu", "cond")}
    layers = record["layers"]
    if dtype == torch.float32:
        assert all(layer.precision is None for layer in layers.values())
        return
    assert layers["norm"].compute_precision == "FLOAT"
    assert layers["time"].precision == "FLOAT" and layers["time"].output_types == {0: "FLOAT"}
    for untouched in ("conv", "const", "shape"):
        assert layers[untouched].precision is None and layers[untouched].output_types == {}


def test_engine_cache_hit_and_miss(monkeypatch, tmp_path, make_estimator):
    record: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(record))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: H100)
    monkeypatch.setattr(torch.cuda, "device", lambda device: nullcontext())
    onnx_path = export_estimator_onnx(make_estimator(), tmp_path / "est.onnx")
    cuda = torch.device("cuda")
    engine, path = load_or_build_engine(onnx_path, torch.bfloat16, TrtProfile(), tmp_path / "trt", cuda)
    assert engine == b"engine-bytes" and record["builds"] == 1 and path.read_bytes() == engine
    assert "bfloat16" in path.name and "trt10.99.1" in path.name and "nvidia-h100" in path.name
    again, path2 = load_or_build_engine(onnx_path, torch.bfloat16, TrtProfile(), tmp_path / "trt", cuda)
    assert (again, path2) == (engine, path) and record["builds"] == 1  # read from the cache
    _, other = load_or_build_engine(onnx_path, torch.float16, TrtProfile(), tmp_path / "trt", cuda)
    assert other != path and record["builds"] == 2
    assert sorted(p.name for p in (tmp_path / "trt").iterdir()) == sorted([path.name, other.name])


def test_build_needs_cuda_flow():
    flow = types.SimpleNamespace(device=torch.device("cpu"))  # only its device is looked at
    with pytest.raises(ValueError, match="cannot run.*CUDA"):
        build_tensorrt_estimator(flow)


# --- real TensorRT (skipped here: "TensorRT is not installed (not on PyPI)") -------------------


@pytest.mark.requires_trt
@pytest.mark.parametrize(
    ("dtype", "max_rel"), [(torch.float16, 1e-2), (torch.bfloat16, 3e-2), (torch.float32, 1e-4)]
)
def test_engine_matches_torch(tmp_path, dtype, max_rel, make_estimator):
    est = make_estimator(2)
    onnx_path = export_estimator_onnx(est, tmp_path / "est.onnx")
    profile = TrtProfile(min_frames=4, opt_frames=200, max_frames=800)
    engine, _ = load_or_build_engine(onnx_path, dtype, profile, tmp_path, torch.device("cuda"))
    backend = trt_backend.TensorRTEstimator(engine, dtype, torch.device("cuda"), profile)
    est_cuda = copy.deepcopy(est).to("cuda", dtype)
    for frames in (4, 137, 800):
        args = [a.to("cuda", dtype) for a in example_inputs(80, frames, seed=frames)]
        got = backend(*args)
        assert got.dtype == dtype and got.shape == (2, 80, frames)
        with torch.inference_mode():
            want = est_cuda(*args, key_padding=True)
        assert float((got.float() - want.float()).norm() / want.float().norm()) < max_rel
    with pytest.raises(ValueError, match="mel frames"):
        backend(*[a.to("cuda", dtype) for a in example_inputs(80, 801)])


@pytest.mark.requires_trt
def test_tensorrt_flow_backend_runs_the_flow(tmp_path, tiny_flow):
    from tts_core.flow.selection import select_estimator_backend

    flow = copy.deepcopy(tiny_flow).to("cuda", torch.float16)
    backend = select_estimator_backend(flow, torch.device("cuda"), "tensorrt", None, tmp_path)
    assert backend.name == "tensorrt"
    g = torch.Generator().manual_seed(0)
    inp = {
        "tokens": torch.randint(0, 6561, (1, 120), generator=g),
        "prompt_tokens": torch.randint(0, 6561, (1, 30), generator=g),
        "prompt_mel": torch.randn(1, 60, 80, generator=g),
        "embedding": torch.randn(1, 192, generator=g),
    }
    got = backend.run_flow(flow, **inp, n_steps=5)
    want = flow.inference(**inp, n_steps=5)
    assert bool(torch.isfinite(got).all())
    assert float((got - want).norm() / want.norm()) < 2e-2
