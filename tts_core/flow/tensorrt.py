"""The "tensorrt" estimator backend: a TensorRT 10 engine of the estimator ONNX.

Build (once per GPU model, TensorRT version, dtype, ONNX file and profile; cached on disk):
parse the ONNX (see onnx_export.py), one optimisation profile over the time axis (the official
min 4 / opt 500 / max 3000 frames, batch 2), FP16 or BF16 builder flag, network inputs and output
typed in the dtype the flow computes in, so torch tensors bind without casts.
Run: ``execute_async_v3`` on the current torch CUDA stream, torch tensors as the I/O buffers, so
the call is ordered with the surrounding torch work and needs no synchronisation.

``tensorrt`` is imported only inside functions: this module imports (and its helpers run) on
machines without it, which is how the tests exercise everything but the engine itself.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tts_core.flow.onnx_export import (
    CFG_BATCH,
    DYNAMIC_INPUTS,
    ONNX_INPUTS,
    ONNX_OUTPUT,
    cached_estimator_onnx,
    check_onnx_interface,
    file_sha256,
)
from tts_core.model.cache import cache_root
from tts_core.results import OneTimeWork

if TYPE_CHECKING:
    from tts_core.flow.model import FlowModel

log = logging.getLogger(__name__)

TRT_NOT_INSTALLED = "TensorRT is not installed (not on PyPI)"
WORKSPACE_BYTES = 4 << 30  # builder scratch memory, as the official conversion uses
ENGINE_SUFFIX = ".plan"
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class TrtProfile:
    """The engine's optimisation profile: frames it accepts (min..max), tuned for ``opt``."""

    min_frames: int = 4
    opt_frames: int = 500
    max_frames: int = 3000  # 60 s of prompt + new mel at 50 frames/s
    n_mels: int = 80

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.opt_frames <= self.max_frames:
            raise ValueError(
                f"profile frames must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_frames}/{self.opt_frames}/{self.max_frames}"
            )

    def input_shape(self, name: str, frames: int) -> tuple[int, ...]:
        """Shape of estimator input ``name`` for ``frames`` frames (batch 2)."""
        if name == "mask":
            return (CFG_BATCH, 1, frames)
        if name in DYNAMIC_INPUTS:
            return (CFG_BATCH, self.n_mels, frames)
        if name == "t":
            return (CFG_BATCH,)
        if name == "spks":
            return (CFG_BATCH, self.n_mels)
        raise ValueError(f"unknown estimator input {name!r}")

    def shapes(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of input ``name`` for the optimisation profile."""
        return tuple(self.input_shape(name, f) for f in (self.min_frames, self.opt_frames, self.max_frames))

    def check_frames(self, frames: int) -> None:
        if not self.min_frames <= frames <= self.max_frames:
            raise ValueError(
                f"the TensorRT engine takes {self.min_frames}..{self.max_frames} mel frames (prompt + new), "
                f"got {frames}: use shorter text pieces, or the torch backends"
            )

    @property
    def tag(self) -> str:
        return f"f{self.min_frames}-{self.opt_frames}-{self.max_frames}"


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on; two keys name the same file iff all of these agree."""

    gpu_name: str  # torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3"
    trt_version: str  # tensorrt.__version__
    dtype: str  # "float32" | "float16" | "bfloat16"
    onnx_sha256: str
    profile: TrtProfile

    def filename(self) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        version = re.sub(r"[^A-Za-z0-9.]+", "-", self.trt_version)
        return f"estimator-{self.dtype}-{self.onnx_sha256[:16]}-{gpu}-trt{version}-{self.profile.tag}{ENGINE_SUFFIX}"


def default_cache_dir() -> Path:
    """~/.cache/cosyvoice2-ab/trt (or $COSYVOICE2_AB_CACHE/trt)."""

    return cache_root() / "trt"


def tensorrt_unavailable_reason(device: torch.device) -> str | None:
    """Why the TensorRT backend cannot run on ``device``, or None when it can."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"TensorRT needs a CUDA device, not {device}"
    if not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return TRT_NOT_INSTALLED
    return None


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise ValueError(TRT_NOT_INSTALLED) from exc
    return tensorrt


def _trt_dtype(trt: Any, dtype: torch.dtype) -> Any:
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"TensorRT engines are built for float32/float16/bfloat16, not {dtype}")
    return {
        torch.float32: trt.DataType.FLOAT,
        torch.float16: trt.DataType.HALF,
        torch.bfloat16: trt.DataType.BF16,
    }[dtype]


def _keep_small_layers_fp32(trt: Any, network: Any) -> None:
    """Ask for float32 where low precision hurts and speed does not matter.

    * layer norms compute in float32 (the normalization layer's own compute precision);
    * layers whose float outputs have no dynamic (time) axis run in float32: those are the batch-2
      vectors of the time embedding (sin/cos of 1000 t, which fp16 cannot resolve) and its MLP.
    NOTE: a request (PREFER_PRECISION_CONSTRAINTS): TensorRT may still choose otherwise.
    """
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the Python API hands out the base class
            layer.compute_precision = trt.DataType.FLOAT
            continue
        if layer.type == trt.LayerType.CONSTANT or layer.num_outputs == 0:
            continue
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        if all(out.dtype == trt.DataType.FLOAT and -1 not in tuple(out.shape) for out in outputs):
            layer.precision = trt.DataType.FLOAT
            for i in range(layer.num_outputs):
                layer.set_output_type(i, trt.DataType.FLOAT)


def build_serialized_engine(
    onnx_path: Path, dtype: torch.dtype, profile: TrtProfile, workspace_bytes: int = WORKSPACE_BYTES
) -> bytes:
    """Build a TensorRT engine of the estimator ONNX whose I/O and main precision are ``dtype``."""
    trt = _trt()
    io_dtype = _trt_dtype(trt, dtype)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse {onnx_path}: {errors}")
    names = tuple(network.get_input(i).name for i in range(network.num_inputs))
    if set(names) != set(ONNX_INPUTS):
        raise ValueError(f"{onnx_path}: network inputs {names}, expected {ONNX_INPUTS}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if dtype == torch.float16:
        config.set_flag(trt.BuilderFlag.FP16)
    elif dtype == torch.bfloat16:
        config.set_flag(trt.BuilderFlag.BF16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # float32 means IEEE float32 in this project
    if dtype != torch.float32:
        _keep_small_layers_fp32(trt, network)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    # NOTE: I/O in the flow's dtype (the official sets HALF for fp16): the bindings are torch
    # tensors of that dtype, and a mismatch would be read as garbage, not converted.
    for i in range(network.num_inputs):
        network.get_input(i).dtype = io_dtype
    for i in range(network.num_outputs):
        network.get_output(i).dtype = io_dtype

    opt_profile = builder.create_optimization_profile()
    for name in DYNAMIC_INPUTS:
        opt_profile.set_shape(name, *profile.shapes(name))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


def load_or_build_engine(
    onnx_path: Path, dtype: torch.dtype, profile: TrtProfile, cache_dir: Path, device: torch.device
) -> tuple[bytes, Path]:
    """(serialized engine, its cache file): read from ``cache_dir`` or built and written there."""
    trt = _trt()
    check_onnx_interface(onnx_path)
    key = EngineKey(
        gpu_name=torch.cuda.get_device_name(device),
        trt_version=str(trt.__version__),
        dtype=_DTYPE_NAMES[dtype],
        onnx_sha256=file_sha256(onnx_path),
        profile=profile,
    )
    path = Path(cache_dir) / key.filename()
    if path.is_file() and path.stat().st_size > 0:
        log.info("tensorrt: engine from cache %s", path)
        return path.read_bytes(), path
    log.info("tensorrt: building %s engine from %s (this takes minutes)", key.dtype, onnx_path)
    with torch.cuda.device(device):
        engine = build_serialized_engine(onnx_path, dtype, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".engine-", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(engine)
    os.replace(tmp, path)  # atomic: a half-written engine never has the final name
    return engine, path


class TensorRTEstimator:
    """The "tensorrt" :class:`~tts_core.flow.backends.FlowBackend`: one engine, one execution context."""

    name = "tensorrt"

    def __init__(
        self, engine_bytes: bytes, dtype: torch.dtype, device: torch.device, profile: TrtProfile
    ) -> None:
        trt = _trt()
        self.dtype, self.device, self.profile = dtype, torch.device(device), profile
        torch.cuda.init()  # TensorRT runs in torch's (primary) CUDA context
        with torch.cuda.device(self.device):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self._engine is None:
                raise RuntimeError("TensorRT could not deserialize the engine (built by another version?)")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        want = _trt_dtype(trt, dtype)
        for name in (*ONNX_INPUTS, ONNX_OUTPUT):
            got = self._engine.get_tensor_dtype(name)
            if got != want:
                raise ValueError(f"engine tensor {name!r} is {got}, the flow computes in {dtype}: rebuild it")
        self._lock = threading.Lock()

    def __call__(self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor) -> Tensor:
        """Shapes as in EstimatorBackend; -> velocity (2, 80, T) in the engine's dtype."""
        frames = x.shape[2]
        self.profile.check_frames(frames)
        bound = {}
        for name, tensor in zip(ONNX_INPUTS, (x, mask, mu, t, spks, cond)):
            if tuple(tensor.shape) != self.profile.input_shape(name, frames):
                raise ValueError(
                    f"{name} must be {self.profile.input_shape(name, frames)}, got {tuple(tensor.shape)}"
                )
            # No-op for inputs already in the engine's dtype and layout (the normal case).
            bound[name] = tensor.to(self.device, self.dtype).contiguous()
        out = torch.empty(self.profile.input_shape("x", frames), dtype=self.dtype, device=self.device)
        stream = torch.cuda.current_stream(self.device)
        with self._lock:
            for name, tensor in bound.items():
                if not self._context.set_input_shape(name, tuple(tensor.shape)):
                    raise ValueError(f"TensorRT rejected shape {tuple(tensor.shape)} for {name}")
                self._context.set_tensor_address(name, tensor.data_ptr())
            self._context.set_tensor_address(ONNX_OUTPUT, out.data_ptr())
            # Enqueued on torch's current stream: ordered with the surrounding torch work. The
            # caching allocator is stream-ordered too, so the inputs may be freed on return.
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see its log)")
        return out

    def run_flow(
        self,
        flow: FlowModel,
        tokens: Tensor,
        prompt_tokens: Tensor,
        prompt_mel: Tensor,
        embedding: Tensor,
        n_steps: int,
    ) -> Tensor:
        """Same as ``flow.inference(..., n_steps, estimator=self)`` (encoder in torch)."""
        return flow.inference(tokens, prompt_tokens, prompt_mel, embedding, n_steps, estimator=self)

    def prepare(self, n_total_tokens: int, n_steps: int) -> OneTimeWork | None:
        return None  # the engine (dynamic shapes) was built or loaded with the dtype copy


def build_tensorrt_estimator(
    flow: FlowModel,
    onnx_path: Path | None = None,
    cache_dir: Path | None = None,
    profile: TrtProfile | None = None,
) -> TensorRTEstimator:
    """A TensorRT backend for ``flow`` (on CUDA), in the flow's compute dtype.

    onnx_path: estimator ONNX with the official interface (None: export ``flow``'s estimator
    into ``cache_dir``, keyed by its weights). The engine is cached in ``cache_dir`` (default
    :func:`default_cache_dir`). ValueError when TensorRT cannot run here.
    """
    reason = tensorrt_unavailable_reason(flow.device)
    if reason is not None:
        raise ValueError(f"backend 'tensorrt' cannot run: {reason}")
    profile = profile or TrtProfile(n_mels=flow.cfg.output_size)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if onnx_path is None:
        onnx_path = cached_estimator_onnx(flow.decoder.estimator, cache_dir)
    engine, path = load_or_build_engine(Path(onnx_path), flow.compute_dtype, profile, cache_dir, flow.device)
    log.info("tensorrt: estimator engine %s", path)
    return TensorRTEstimator(engine, flow.compute_dtype, flow.device, profile)
