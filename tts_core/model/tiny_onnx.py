"""Tiny random-weight stand-ins for ``speech_tokenizer_v2.onnx`` and ``campplus.onnx``.

They have the released models' input/output signatures, so :class:`tts_core.frontend.speech_frontend.SpeechFrontend`
runs them through exactly the code path of the real files (tests, offline demo, CI without the 1 GB
model download). Their outputs carry no meaning beyond depending on the audio.

Signatures of the released files (what these copy):

=====================  ===========================================  =====================================
file                   inputs                                       outputs
=====================  ===========================================  =====================================
speech_tokenizer_v2    ``feats`` float32 (B, 128, T) whisper        ``indices`` int32 (B, L), L = ceil(T/4)
                       log-mel; ``feats_length`` int32 (B,)         speech tokens in [0, 6561) at 25 Hz
campplus               ``input`` float32 (B, T, 80) kaldi fbank     ``output`` float32 (B, 192) x-vector
                       minus its time mean
=====================  ===========================================  =====================================

Where the names come from: the official frontend passes inputs by position only, so the names are not
in its code. Independent ports that call the released files by name agree on ``feats`` /
``feats_length`` -> ``indices`` (a C++ and a Rust CosyVoice2 frontend) and ``input`` -> ``output`` for
campplus (the same Rust port); the C++ port reads ``indices`` as int32 (the Rust one accepts int32 or
int64). S3Tokenizer's ONNX test accepts a rank-2 or rank-3 ``indices`` (v1 gives (B, 1, L)). So: names
high confidence, int32 medium, rank 2 medium; the frontend flattens the output and casts it to int64,
which works for any of these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tts_core.constants import N_MELS, SPEAKER_EMBEDDING_DIM, SPEECH_TOKEN_SIZE

WHISPER_MELS = 128  # speech tokenizer input bins
TOKEN_STRIDE = 4  # 100 Hz mel frames -> 25 Hz tokens (two stride-2 convolutions in the real model)
TOKENIZER_HIDDEN = 32  # small bottleneck keeps the 6561-way projection at ~0.8 MB
CAMPPLUS_HIDDEN = 64
OPSET = 17  # ReduceMean still takes axes as an attribute; supported by onnxruntime >= 1.13
IR_VERSION = 8  # loadable by older onnxruntime builds too (e.g. a GPU box's)


def _weights(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> TensorProto:
    values = (rng.standard_normal(shape) * scale).astype(np.float32)
    return numpy_helper.from_array(values, name=name)


def _int_const(name: str, values: list[int], dtype: type = np.int64) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name=name)


def _save(graph: onnx.GraphProto, path: Path | str, doc: str) -> Path:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tts_core.model.tiny_onnx",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"tiny_random": "true"})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def write_speech_tokenizer_onnx(path: Path | str, seed: int = 0) -> Path:
    """Write a tiny stand-in for speech_tokenizer_v2.onnx (about 0.9 MB); returns the path.

    feats (B, 128, T) -> average-pool by 4 over time (ceil: a partial last window still gives a token)
    -> Linear(128->32) -> tanh -> Linear(32->6561) -> ArgMax -> int32 tokens (B, ceil(T/4)), then cut to
    ceil(feats_length[0] / 4) tokens. Weights are drawn from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    init = [
        _weights(rng, "proj_in.weight", (WHISPER_MELS, TOKENIZER_HIDDEN), 1.0 / np.sqrt(WHISPER_MELS)),
        _weights(rng, "proj_in.bias", (TOKENIZER_HIDDEN,), 0.1),
        _weights(rng, "codebook.weight", (TOKENIZER_HIDDEN, SPEECH_TOKEN_SIZE), 1.0),
        _int_const("stride_minus_one", [TOKEN_STRIDE - 1], np.int32),
        _int_const("stride", [TOKEN_STRIDE], np.int32),
        _int_const("slice_start", [0]),
        _int_const("one", [1]),
        _int_const("batch_axis", [0]),
        _int_const("time_axis", [1]),
    ]
    nodes = [
        helper.make_node(
            "AveragePool",
            ["feats"],
            ["pooled"],
            kernel_shape=[TOKEN_STRIDE],
            strides=[TOKEN_STRIDE],
            ceil_mode=1,
        ),
        helper.make_node("Transpose", ["pooled"], ["frames"], perm=[0, 2, 1]),  # (B, L, 128)
        helper.make_node("MatMul", ["frames", "proj_in.weight"], ["hidden_lin"]),
        helper.make_node("Add", ["hidden_lin", "proj_in.bias"], ["hidden_pre"]),
        helper.make_node("Tanh", ["hidden_pre"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "codebook.weight"], ["scores"]),  # (B, L, 6561)
        helper.make_node("ArgMax", ["scores"], ["tokens_i64"], axis=2, keepdims=0),
        helper.make_node("Cast", ["tokens_i64"], ["tokens_all"], to=TensorProto.INT32),
        # Output length from feats_length, like the real model's mask: ceil(len / 4) (first item).
        helper.make_node("Add", ["feats_length", "stride_minus_one"], ["length_up"]),
        helper.make_node("Div", ["length_up", "stride"], ["n_tokens_i32"]),  # integer division
        helper.make_node("Cast", ["n_tokens_i32"], ["n_tokens_all"], to=TensorProto.INT64),
        helper.make_node("Slice", ["n_tokens_all", "slice_start", "one", "batch_axis"], ["n_tokens_first"]),
        helper.make_node("Slice", ["tokens_all", "slice_start", "n_tokens_first", "time_axis"], ["indices"]),
    ]
    graph = helper.make_graph(
        nodes,
        "speech_tokenizer_v2_tiny",
        inputs=[
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", WHISPER_MELS, "frames"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, ["batch"]),
        ],
        outputs=[helper.make_tensor_value_info("indices", TensorProto.INT32, ["batch", "tokens"])],
        initializer=init,
    )
    doc = f"tiny random-weight stand-in for speech_tokenizer_v2.onnx (seed {seed}); tokens carry no meaning"
    return _save(graph, path, doc)


def write_campplus_onnx(path: Path | str, seed: int = 0) -> Path:
    """Write a tiny stand-in for campplus.onnx (about 70 KB); returns the path.

    input (B, T, 80) -> Linear(80->64) -> tanh -> mean over time -> Linear(64->192) -> output (B, 192).
    Weights are drawn from ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    init = [
        _weights(rng, "frame.weight", (N_MELS, CAMPPLUS_HIDDEN), 1.0 / np.sqrt(N_MELS)),
        _weights(rng, "frame.bias", (CAMPPLUS_HIDDEN,), 0.1),
        _weights(
            rng, "embed.weight", (CAMPPLUS_HIDDEN, SPEAKER_EMBEDDING_DIM), 1.0 / np.sqrt(CAMPPLUS_HIDDEN)
        ),
        _weights(rng, "embed.bias", (SPEAKER_EMBEDDING_DIM,), 0.1),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "frame.weight"], ["frame_lin"]),
        helper.make_node("Add", ["frame_lin", "frame.bias"], ["frame_pre"]),
        helper.make_node("Tanh", ["frame_pre"], ["frame_out"]),  # (B, T, 64)
        helper.make_node("ReduceMean", ["frame_out"], ["pooled"], axes=[1], keepdims=0),  # (B, 64)
        helper.make_node("MatMul", ["pooled", "embed.weight"], ["embed_lin"]),
        helper.make_node("Add", ["embed_lin", "embed.bias"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "campplus_tiny",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "frames", N_MELS])],
        outputs=[
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", SPEAKER_EMBEDDING_DIM])
        ],
        initializer=init,
    )
    doc = f"tiny random-weight stand-in for campplus.onnx (seed {seed}); the embedding carries no meaning"
    return _save(graph, path, doc)
