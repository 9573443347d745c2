"""The fused Triton decode step against the torch modules (on a CPU through Triton's interpreter).

The torch modules are the reference implementation (checked against the official vectors in
test_llm_parity); the kernels must give the same hidden states, KV-cache entries and logits up
to rounding, and in float32 the same sampled tokens as the eager decoder.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tts_core.llm.decode_state import new_state
from tts_core.llm.speech_lm import SpeechLM
from tts_core.llm.static_decoder import StaticDecoder, _backbone_step, fuse_projections
from tts_core.options import SynthesisOptions

pytest.importorskip("triton", reason="Triton is not installed (it comes with requirements-test.txt)")

from tts_core.llm.triton_backbone import KernelTuning, TritonBackbone, speech_logits  # noqa: E402

# The kernels run on the GPU where there is one, else under Triton's CPU interpreter (conftest).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Differences allowed against the torch step, in units of the dtype's epsilon times the largest
# magnitude: the kernels accumulate in float32 in another order and round rotary/bias once.
ULPS = {torch.float32: 32, torch.bfloat16: 4, torch.float16: 4}


@pytest.fixture(scope="module")
def tiny_lm(tiny_configs) -> SpeechLM:
    """The tiny LLM with random weights; norm weights and biases perturbed so none is trivial."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lm = SpeechLM(tiny_configs.llm)
        with torch.no_grad():
            for p in lm.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return lm.eval().to(DEVICE)


def _ids(seed: int, n: int, high: int) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    bound = ULPS[dtype] * torch.finfo(dtype).eps * float(want.abs().max())
    err = float((got.float() - want.float()).abs().max())
    assert err <= bound, f"max error {err:.3g} > {bound:.3g} ({dtype})"


# Launch shapes for the tiny widths (the defaults are the H100's for the full model; the interpreter
# runs them too, only slower).
TINY_TUNING = KernelTuning(
    qkv_half_block=8, qkv_block_k=64, o_block_n=16, o_block_k=64, gate_up_block_n=32, gate_up_block_k=64,
    down_block_n=16, down_block_k=128, head_block_n=256, head_block_k=64, attention_block_l=32, attention_splits=2,
)  # fmt: skip

# Small attention tiles and 4 splits: several tiles per split, and a split with no keys.
SPLIT_TUNING = KernelTuning(attention_block_l=4, attention_splits=4, qkv_half_block=8, o_block_n=16)


@pytest.mark.parametrize(
    ("dtype", "tuning"),
    [(torch.float32, None), (torch.bfloat16, None), (torch.float16, None), (torch.float32, SPLIT_TUNING)],
    ids=["float32", "bfloat16", "float16", "float32-split-attention"],
)
def test_step_matches_torch_step(tiny_lm, dtype, tuning):
    lm = copy.deepcopy(tiny_lm).to(dtype)
    fused = fuse_projections(lm)
    ref, got = new_state(lm, 32, 10), new_state(lm, 32, 10)
    hidden = lm.cfg.qwen.hidden_size
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        prompt = torch.randn(1, 9, hidden, generator=gen).to(DEVICE, dtype)
        lm.forward_hidden(prompt, ref.cache, 0)
        lm.forward_hidden(prompt, got.cache, 0)
        ref.pos.fill_(9)
        got.pos.fill_(9)
        kernels = TritonBackbone(
            lm.backbone, [f.qkv_weight for f in fused], [f.qkv_bias for f in fused],
            [f.gate_up_weight for f in fused], tuning,
        )  # fmt: skip
        out = torch.empty(hidden, dtype=dtype, device=DEVICE)
        for i in range(3):
            x = torch.randn(1, 1, hidden, generator=gen).to(DEVICE, dtype)
            want = _backbone_step(lm, ref, x, fused)[0]
            ref.pos.add_(1)
            kernels.step(x[0, 0], got.pos, got.step, got.cache, got.inv_freq, out)
            assert int(got.pos) == 10 + i and int(got.step) == i + 1
            _close(out, want, dtype)
            _close(got.cache.k[:, :, :, : 10 + i], ref.cache.k[:, :, :, : 10 + i], dtype)
            _close(got.cache.v[:, :, :, : 10 + i], ref.cache.v[:, :, :, : 10 + i], dtype)
        assert not got.cache.k[:, :, :, 12:].any()  # nothing written past the last position
        logits = torch.empty(lm.llm_decoder.weight.shape[0], device=DEVICE)
        speech_logits(lm.llm_decoder.weight, lm.llm_decoder.bias, out, logits, kernels.tuning)
        _close(logits, lm.llm_decoder(out[None])[0].float(), dtype)


def test_triton_decoder_tokens_equal_eager_fp32(tiny_lm):
    text, ptext, pspeech = _ids(1, 12, 4096), _ids(2, 5, 4096), _ids(3, 20, 6561)
    options = SynthesisOptions(seed=4, fixed_tokens=16, top_k=5)
    gen = lambda: torch.Generator(device=DEVICE).manual_seed(4)  # noqa: E731
    eager = tiny_lm.generate(text, ptext, pspeech, options, gen())
    decoder = StaticDecoder(copy.deepcopy(tiny_lm), use_graphs=False, step_kind="triton", tuning=TINY_TUNING)
    got = decoder.generate(text, ptext, pspeech, options, gen(), stop_check_every=8)
    assert torch.equal(eager, got)


def test_unknown_step_kind_and_bad_tuning_are_refused(tiny_lm):
    with pytest.raises(ValueError, match="step_kind"):
        StaticDecoder(tiny_lm, step_kind="fast")
    with pytest.raises(ValueError, match="attention_splits must be a power of two"):
        KernelTuning(attention_splits=3)


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_cuda_graph_triton_equals_uncaptured(tiny_lm, dtype):
    lm = copy.deepcopy(tiny_lm).to(dtype)
    text, ptext, pspeech = _ids(1, 12, 4096), _ids(2, 5, 4096), _ids(3, 20, 6561)
    opts = SynthesisOptions(seed=3, fixed_tokens=100)
    gen = lambda: torch.Generator(device="cuda").manual_seed(3)  # noqa: E731
    graph = StaticDecoder(lm, step_kind="triton").generate(
        text, ptext, pspeech, opts, gen(), stop_check_every=8
    )
    plain = StaticDecoder(lm, use_graphs=False, step_kind="triton").generate(
        text, ptext, pspeech, opts, gen()
    )
    assert len(graph) == 100 and torch.equal(graph, plain)
