"""ONNX export of the flow estimator, the input TensorRT builds its engines from.

The interface is the official one (``cosyvoice/bin/export_onnx.py``), so the model directory's
``flow.decoder.estimator.fp32.onnx`` and our own export are interchangeable: inputs x, mask, mu,
t, spks, cond; output estimator_out; batch 2 (the guidance pair); a dynamic time axis
``seq_len``; opset 18 (LayerNormalization is a single op from opset 17, which TensorRT maps to
its normalization layer). Like the official graph, ours masks attention keys with ``mask``.

We use the TorchScript exporter (``dynamo=False``), as the official export does: it needs no
onnxscript, takes a fraction of a second for the tiny model, and writes Mish as
Softplus + Tanh, which every TensorRT 10 parser reads. ``exporter="dynamo"`` (needs the
onnxscript package) is the route for torch versions without the TorchScript exporter.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from tts_core.flow.estimator_net import CausalConditionalDecoder

ONNX_INPUTS = ("x", "mask", "mu", "t", "spks", "cond")
ONNX_OUTPUT = "estimator_out"
DYNAMIC_INPUTS = ("x", "mask", "mu", "cond")  # their axis 2 is time
TIME_AXIS_NAME = "seq_len"
ONNX_OPSET = 18
CFG_BATCH = 2  # conditional + unconditional rows, fixed in the graph as in the official export
EXPORT_FRAMES = 256  # length of the example inputs traced (the time axis stays dynamic)
EXPORT_SEED = 0
MODEL_DIR_ONNX = "flow.decoder.estimator.fp32.onnx"  # the official file name in a model directory
EXPORTERS = ("torchscript", "dynamo")
_INPUT_RANKS = {"x": 3, "mask": 3, "mu": 3, "t": 1, "spks": 2, "cond": 3}
_HASH_CHUNK = 1 << 20


class _KeyMaskedEstimator(nn.Module):
    """The estimator with ``key_padding=True``: the graph honours ``mask`` in attention."""

    def __init__(self, estimator: CausalConditionalDecoder) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, x: Tensor, mask: Tensor, mu: Tensor, t: Tensor, spks: Tensor, cond: Tensor) -> Tensor:
        return self.estimator(x, mask, mu, t, spks, cond, key_padding=True)


def example_inputs(n_mels: int, frames: int, seed: int = EXPORT_SEED) -> tuple[Tensor, ...]:
    """Random float32 CPU inputs (x, mask, mu, t, spks, cond) for batch 2 and ``frames`` frames.

    Random, not zeros: tracing and checks must see data that exercises every branch.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(CFG_BATCH, n_mels, frames, generator=g)
    mask = torch.ones(CFG_BATCH, 1, frames)
    mu = torch.randn(CFG_BATCH, n_mels, frames, generator=g)
    t = torch.rand(CFG_BATCH, generator=g)
    spks = torch.randn(CFG_BATCH, n_mels, generator=g)
    cond = torch.randn(CFG_BATCH, n_mels, frames, generator=g)
    return x, mask, mu, t, spks, cond


def export_estimator_onnx(
    estimator: CausalConditionalDecoder,
    path: Path,
    exporter: str = "torchscript",
    frames: int = EXPORT_FRAMES,
) -> Path:
    """Write ``estimator`` (any device/dtype; exported as a float32 CPU copy) to ``path``.

    The file appears atomically (written beside it, then renamed). Returns ``path``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    module = _KeyMaskedEstimator(copy.deepcopy(estimator).float().cpu().eval())
    n_mels = module.estimator.final_proj.out_channels
    args = example_inputs(n_mels, frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # NOTE: torch >= 2.9 warns that the TorchScript exporter is deprecated; it still is
            # the exporter the official ONNX came from, and the one TensorRT has parsed longest.
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(
                    module,
                    args,
                    str(tmp),
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    do_constant_folding=True,
                    input_names=list(ONNX_INPUTS),
                    output_names=[ONNX_OUTPUT],
                    dynamic_axes={name: {2: TIME_AXIS_NAME} for name in (*DYNAMIC_INPUTS, ONNX_OUTPUT)},
                )
            else:
                seq = torch.export.Dim(TIME_AXIS_NAME, min=1)
                time_axis = {2: seq}
                torch.onnx.export(
                    module,
                    args,
                    str(tmp),
                    dynamo=True,
                    opset_version=ONNX_OPSET,
                    input_names=list(ONNX_INPUTS),
                    output_names=[ONNX_OUTPUT],
                    dynamic_shapes={
                        name: (time_axis if name in DYNAMIC_INPUTS else None) for name in ONNX_INPUTS
                    },
                    external_data=False,
                )
        check_onnx_interface(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_onnx_interface(path: Path) -> None:
    """ValueError unless ``path`` has the estimator interface (names, ranks, float32 I/O)."""
    import onnx  # imported here: only export and engine building need it

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [inp for inp in graph.input if inp.name not in initializers]
    names = tuple(inp.name for inp in inputs)
    if names != ONNX_INPUTS:
        raise ValueError(f"{path}: estimator ONNX inputs must be {ONNX_INPUTS}, got {names}")
    for inp in inputs:
        rank = len(inp.type.tensor_type.shape.dim)
        if rank != _INPUT_RANKS[inp.name]:
            raise ValueError(f"{path}: input {inp.name!r} has rank {rank}, expected {_INPUT_RANKS[inp.name]}")
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"{path}: input {inp.name!r} must be float32")
    outputs = tuple(out.name for out in graph.output)
    if outputs != (ONNX_OUTPUT,):
        raise ValueError(f"{path}: estimator ONNX output must be ({ONNX_OUTPUT!r},), got {outputs}")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def estimator_digest(estimator: CausalConditionalDecoder) -> str:
    """Hex sha256 over the estimator's weights (names, shapes, float32 values, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(estimator.state_dict().items()):
        value = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(value.shape)};".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def cached_estimator_onnx(estimator: CausalConditionalDecoder, cache_dir: Path) -> Path:
    """``cache_dir/estimator-<weights digest>.onnx``, exported on first use."""
    path = Path(cache_dir) / f"estimator-{estimator_digest(estimator)[:16]}.onnx"
    if not path.is_file():
        export_estimator_onnx(estimator, path)
    return path


def model_dir_onnx(model_dir: Path) -> Path | None:
    """The model directory's official estimator ONNX, or None when it has none."""
    path = Path(model_dir) / MODEL_DIR_ONNX
    return path if path.is_file() else None
