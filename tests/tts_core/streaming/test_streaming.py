"""The streaming schedule and cross-fade against the official rule (issue 13, reference README §8).

Truths: the rule as the official ``CosyVoice2Model.tts(stream=True)`` states it (first hop 25 +
pad to a multiple of 25 prompt tokens, hops doubling to 100, 3 look-ahead tokens, 8-frame /
3840-sample caches), numpy's Hamming window, the official chunk flow output (the padded graph
computation must reproduce it) and the eager decoders (token pieces must add up to them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.tts_core.llm.test_llm_parity import build_lm
from tts_core.flow.backends import TorchEstimator
from tts_core.flow.cuda_graph import bucket_tokens, padded_flow_mel
from tts_core.flow.model import FlowConfig, FlowModel
from tts_core.llm.static_decoder import StaticDecoder
from tts_core.model.yaml_config import read_yaml
from tts_core.options import SynthesisOptions
from tts_core.streaming.schedule import (
    CROSSFADE_WINDOW_POINTS,
    SOURCE_CACHE_SAMPLES,
    StreamSchedule,
    cross_fade,
    crossfade_window,
    first_call_tokens,
    plan_stream_calls,
    prompt_token_pad,
)

FLOW_ATOL = 1e-4


def test_first_call_tokens_is_the_first_calls_need():
    for n_prompt in (0, 37, 75, 76, 99):
        assert plan_stream_calls(n_prompt, 400)[0].n_tokens == first_call_tokens(n_prompt)
    assert first_call_tokens(75) == 28


def _hops(calls) -> list[int]:
    return [b.token_offset - a.token_offset for a, b in zip(calls, calls[1:])]


@pytest.mark.parametrize(("n_prompt", "pad"), [(0, 0), (25, 0), (37, 13), (75, 0), (76, 24), (99, 1)])
def test_prompt_pad_reaches_a_multiple_of_25(n_prompt, pad):
    assert prompt_token_pad(n_prompt) == pad
    assert (n_prompt + prompt_token_pad(n_prompt)) % 25 == 0


def test_official_hops_lookahead_and_final_call():
    calls = plan_stream_calls(37, 560)
    assert _hops(calls) == [25 + 13, 50, 100, 100, 100, 100]  # then the final call
    assert [c.final for c in calls] == [False] * 6 + [True]
    for c in calls[:-1]:
        assert c.n_tokens == c.token_offset + (c.token_end - c.token_offset) + 3  # 3 look-ahead
        assert c.lookahead_tokens == 3
    last = calls[-1]
    assert last.n_tokens == last.token_end == 560 and last.lookahead_tokens == 0
    # the final call takes what a regular hop cannot: fewer than hop + 3 tokens
    assert 3 <= 560 - last.token_offset < 100 + 3
    assert sum(c.new_frames for c in calls) == 2 * 560  # every token's frames exactly once


def test_short_segment_is_one_offline_call():
    assert [(c.token_offset, c.n_tokens, c.final) for c in plan_stream_calls(25, 27)] == [(0, 27, True)]
    assert [(c.token_offset, c.n_tokens, c.final) for c in plan_stream_calls(25, 28)] == [
        (0, 28, False),
        (25, 28, True),
    ]
    with pytest.raises(ValueError, match="at least one token"):
        plan_stream_calls(25, 0)


def test_each_request_starts_from_the_first_hop():
    # The official model keeps the grown hop across requests (a bug): the second would start at 100.
    first, second = plan_stream_calls(25, 300), plan_stream_calls(25, 300)
    assert first == second and _hops(second)[0] == 25


@pytest.mark.parametrize("piece", [1, 8, 37])
def test_tokens_arriving_in_pieces_give_the_same_calls(piece):
    n_prompt, total = 50, 333
    schedule, calls = StreamSchedule(n_prompt), []
    for available in list(range(piece, total, piece)) + [total]:
        finished = available == total
        while (call := schedule.next_call(available, finished)) is not None:
            assert call.n_tokens <= available
            calls.append(call)
    assert schedule.done and tuple(calls) == plan_stream_calls(n_prompt, total)
    assert schedule.next_call(total, True) is None


def test_cross_fade_uses_the_halves_of_numpys_hamming_window():
    window = crossfade_window(torch.device("cpu"))
    assert window.shape == (CROSSFADE_WINDOW_POINTS,) == (2 * SOURCE_CACHE_SAMPLES,)
    np.testing.assert_allclose(window.numpy(), np.hamming(CROSSFADE_WINDOW_POINTS), rtol=0, atol=1e-15)
    new = torch.ones(1, SOURCE_CACHE_SAMPLES + 100)
    old_tail = torch.full((1, SOURCE_CACHE_SAMPLES), 2.0)
    faded = cross_fade(new, old_tail, window)[0].numpy()
    h = np.hamming(CROSSFADE_WINDOW_POINTS)
    want = h[:SOURCE_CACHE_SAMPLES] + 2.0 * h[SOURCE_CACHE_SAMPLES:]
    np.testing.assert_allclose(faded[:SOURCE_CACHE_SAMPLES], want, rtol=1e-6)
    assert (faded[SOURCE_CACHE_SAMPLES:] == 1.0).all()
    with pytest.raises(ValueError, match="cross-fade"):
        cross_fade(new[:, :100], old_tail, window)


def test_options_refuse_speed_with_streaming():
    assert SynthesisOptions(streaming=True).streaming
    with pytest.raises(ValueError, match="speed must be 1.0 when streaming"):
        SynthesisOptions(streaming=True, speed=1.5)
    with pytest.raises(ValueError, match="streaming must be True or False"):
        SynthesisOptions(streaming=1)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def flow(reference_dir) -> FlowModel:
    model_dir = reference_dir / "tiny" / "model"
    model = FlowModel(FlowConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["flow"]))
    model.load_state_dict(torch.load(model_dir / "flow.pt", weights_only=True), strict=True)
    return model.eval()


def test_padded_chunk_flow_matches_official_calls(flow, reference_dir):
    """What a CUDA-graph chunk call computes (right padding, key masks), on the CPU."""
    root = reference_dir / "tiny" / "stream_n5"
    load = lambda name: torch.from_numpy(np.load(root / f"{name}.npy"))  # noqa: E731
    tokens, p_tokens, p_mel, emb = (
        load(n) for n in ("flow_token", "flow_prompt_token", "flow_prompt_feat", "flow_embedding")
    )
    n_prompt = p_tokens.shape[1]
    step = TorchEstimator(flow.decoder.estimator, streaming=True, key_padding=True)
    garbage = torch.Generator().manual_seed(3)
    for call in plan_stream_calls(n_prompt, tokens.shape[1])[:-1]:
        n_total = n_prompt + call.n_tokens
        bucket = bucket_tokens(n_total, 7500)
        padded = torch.randint(0, 6561, (1, bucket), generator=garbage)
        padded[:, :n_total] = torch.cat([p_tokens, tokens[:, : call.n_tokens]], dim=1)
        cond = torch.zeros(1, 80, 2 * bucket)
        cond[:, :, : 2 * n_prompt] = p_mel.transpose(1, 2)
        with torch.inference_mode():
            x = padded_flow_mel(flow, padded, torch.tensor([n_total]), cond, emb, 5, step, chunk=True)
        mel = x[:, :, 2 * n_prompt : 2 * (n_total - 3)].numpy()
        want = np.load(root / f"chunk_{call.index}_flow_feat.npy")
        assert bucket >= n_total and mel.shape == want.shape  # 78 -> 96, 128, 228 -> 256 tokens
        assert float(np.abs(mel - want).max()) < FLOW_ATOL


def test_token_pieces_add_up_to_generate(reference_dir):
    lm = build_lm(reference_dir)
    g = torch.Generator().manual_seed(0)
    text, ptext, pspeech = (
        torch.randint(0, high, (n,), generator=g) for n, high in ((9, 4096), (4, 4096), (20, 6561))
    )
    opts = SynthesisOptions(seed=5, max_token_text_ratio=6.0)
    gen = lambda: torch.Generator().manual_seed(opts.seed)  # noqa: E731
    for decoder in (lm, StaticDecoder(lm, use_graphs=False)):
        whole = lm.generate(text, ptext, pspeech, opts, gen())
        pieces = list(decoder.generate_pieces(text, ptext, pspeech, opts, gen(), stop_check_every=4))
        assert all(len(p) == 4 for p in pieces[:-1]) and 1 <= len(pieces[-1]) <= 4
        assert torch.equal(torch.cat(pieces), whole)
        # The extra check at the first streaming hop: a piece ends right after token 10.
        fixed = opts.replace(fixed_tokens=20)
        pieces = list(
            decoder.generate_pieces(text, ptext, pspeech, fixed, gen(), stop_check_every=4, check_at=10)
        )
        assert [len(p) for p in pieces] == [4, 4, 2, 2, 4, 4]
