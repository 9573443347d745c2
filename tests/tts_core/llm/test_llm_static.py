"""The fixed-shape (CUDA-graph) decoder against the eager decoder: same seed, same tokens."""

from __future__ import annotations

import copy

import pytest
import torch

from tts_core.llm.static_decoder import StaticDecoder
from tts_core.model.factory import build_networks, write_configs
from tts_core.options import SynthesisOptions

from .test_llm_parity import build_lm


@pytest.fixture(scope="module")
def lm(reference_dir):
    return build_lm(reference_dir)


def _ids(seed: int, n: int, high: int) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "options", [SynthesisOptions(seed=3), SynthesisOptions(seed=4, fixed_tokens=70, top_k=5)]
)
def test_static_equals_eager_fp32(lm, options):
    text, ptext, pspeech = _ids(1, 12, 4096), _ids(2, 5, 4096), _ids(3, 20, 6561)
    eager = lm.generate(text, ptext, pspeech, options, torch.Generator().manual_seed(options.seed))
    static = StaticDecoder(lm, use_graphs=False).generate(
        text, ptext, pspeech, options, torch.Generator().manual_seed(options.seed), stop_check_every=16
    )
    assert torch.equal(eager, static)
    assert options.fixed_tokens is None or len(static) == options.fixed_tokens


def test_cross_lingual_and_reuse(lm):
    dec = StaticDecoder(lm, use_graphs=False)
    empty = torch.zeros(0, dtype=torch.long)
    opts = SynthesisOptions(seed=9, fixed_tokens=30)
    first = dec.generate(_ids(5, 8, 4096), empty, empty, opts, torch.Generator().manual_seed(9))
    second = dec.generate(_ids(5, 8, 4096), empty, empty, opts, torch.Generator().manual_seed(9))
    assert torch.equal(first, second)  # state from the previous call does not leak
    eager = lm.generate(_ids(5, 8, 4096), empty, empty, opts, torch.Generator().manual_seed(9))
    assert torch.equal(first, eager)


@pytest.mark.requires_cuda
def test_cuda_graph_equals_eager_on_gpu(lm):
    gpu = lm.to("cuda")
    opts = SynthesisOptions(seed=3, fixed_tokens=100)
    text, ptext, pspeech = (t.cuda() for t in (_ids(1, 12, 4096), _ids(2, 5, 4096), _ids(3, 20, 6561)))
    gen = lambda: torch.Generator(device="cuda").manual_seed(3)  # noqa: E731
    eager = gpu.generate(text, ptext, pspeech, opts, gen())
    graph = StaticDecoder(gpu).generate(text, ptext, pspeech, opts, gen(), stop_check_every=8)
    assert torch.equal(eager, graph)


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory):
    """The tiny LLM with random weights (no reference vectors needed, so it runs on any GPU box)."""
    model_dir = tmp_path_factory.mktemp("tiny")
    write_configs(model_dir, "tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lm, _, _ = build_networks(model_dir)
    return lm.eval()


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_prefill_graph_equals_eager_prefill_on_gpu(random_lm, dtype):
    gpu = copy.deepcopy(random_lm).to("cuda", dtype)
    opts = SynthesisOptions(seed=3, fixed_tokens=60)
    text, ptext, pspeech = (t.cuda() for t in (_ids(1, 12, 4096), _ids(2, 5, 4096), _ids(3, 20, 6561)))
    gen = lambda: torch.Generator(device="cuda").manual_seed(3)  # noqa: E731
    decoder = StaticDecoder(gpu)
    eager = decoder.generate(text, ptext, pspeech, opts, gen(), stop_check_every=8)  # not prepared
    assert decoder.prepare(text, ptext, pspeech, opts) is None  # the state exists; no prefill graph asked
    work = decoder.prepare(text, ptext, pspeech, opts, prefill_graph=True)
    assert work is not None and "prefill graph capture: 39 positions" in work.what
    graph = decoder.generate(text, ptext, pspeech, opts, gen(), stop_check_every=8)
    assert (
        torch.equal(eager, graph) and decoder.prepare(text, ptext, pspeech, opts, prefill_graph=True) is None
    )
