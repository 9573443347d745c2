"""The official CosyVoice2 streaming schedule (``CosyVoice2Model.tts(stream=True)``) and its constants.

Tokens arrive from the LLM; the flow is called again and again over the prompt and ALL tokens so
far, and each call's new frames go through the vocoder with a small cache so chunks join without
a click::

    call 0   tokens [0, 25 + pad + 3)     pad brings the prompt's token count to a multiple of 25
    call 1   tokens [0, 25 + pad + 50 + 3)
    call 2   ... hops double: 25, 50, 100, 100, ...   (the last 3 tokens: look-ahead only)
    final    all tokens, once the LLM has finished and fewer than hop + 3 new tokens are left

* Non-final calls use the flow's chunk attention masks (``streaming=True``) and hold the last
  :data:`LOOKAHEAD_TOKENS` back as look-ahead context (official ``finalize=False``). The final call
  is an ordinary offline flow call (``streaming=False, finalize=True``): the official code does
  not pass its ``stream`` flag to that call, and the reference vectors confirm it.
* Each call keeps the frames from ``2 * token_offset`` on; the vocoder gets the previous call's
  last :data:`MEL_CACHE_FRAMES` mel frames in front of them and reuses their excitation
  (:data:`SOURCE_CACHE_SAMPLES`), so the cached samples are rendered twice.
* The first :data:`SOURCE_CACHE_SAMPLES` output samples are cross-faded with the previous call's
  held-back tail (:func:`cross_fade`); every call but the final one holds its last
  :data:`SOURCE_CACHE_SAMPLES` back as the next call's overlap.

Everything here is pure schedule and sample arithmetic; :mod:`tts_core.streaming.render` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tts_core.constants import MEL_HOP, TOKEN_MEL_RATIO
from tts_core.flow.conformer import PRE_LOOKAHEAD_LEN

FIRST_HOP_TOKENS = 25  # official token_hop_len: the flow's training chunk (static_chunk_size, 1 s)
MAX_HOP_TOKENS = 100  # official token_max_hop_len = 4 x 25 tokens (4 s)
HOP_GROWTH = 2  # official stream_scale_factor: each hop doubles up to MAX_HOP_TOKENS
LOOKAHEAD_TOKENS = PRE_LOOKAHEAD_LEN  # 3 tokens (120 ms) the encoder's look-ahead conv reads ahead
MEL_CACHE_FRAMES = 8  # mel frames (160 ms) the vocoder sees again at the start of the next call
SOURCE_CACHE_SAMPLES = MEL_CACHE_FRAMES * MEL_HOP  # 3840 samples (160 ms at 24 kHz): reused excitation
OVERLAP_SAMPLES = SOURCE_CACHE_SAMPLES  # 3840 samples held back by each non-final call and cross-faded
CROSSFADE_WINDOW_POINTS = 2 * OVERLAP_SAMPLES  # 7680-point symmetric Hamming (np.hamming) window


def prompt_token_pad(n_prompt_tokens: int) -> int:
    """Extra tokens of the first hop that bring prompt + first hop to a multiple of 25 tokens."""
    if n_prompt_tokens < 0:
        raise ValueError(f"n_prompt_tokens must be >= 0, got {n_prompt_tokens}")
    return -n_prompt_tokens % FIRST_HOP_TOKENS


def first_call_tokens(n_prompt_tokens: int) -> int:
    """New tokens the first call of a segment needs: the first hop, its pad and the look-ahead."""
    return FIRST_HOP_TOKENS + prompt_token_pad(n_prompt_tokens) + LOOKAHEAD_TOKENS


@dataclass(frozen=True)
class StreamCall:
    """One flow + vocoder call of a streamed segment.

    The flow gets the prompt and new tokens [0, n_tokens); it renders frames for tokens
    [0, token_end) and the call keeps those of tokens [token_offset, token_end).
    """

    index: int  # 0 = the first hop of the segment
    token_offset: int  # new tokens already rendered by earlier calls
    n_tokens: int  # new tokens given to the flow, look-ahead included
    final: bool  # the last call: no look-ahead, offline flow, nothing held back

    @property
    def lookahead_tokens(self) -> int:
        """Tokens at the end that are context only (3, or 0 in the final call)."""
        return 0 if self.final else LOOKAHEAD_TOKENS

    @property
    def token_end(self) -> int:
        """One past the last new token whose frames this call adds."""
        return self.n_tokens - self.lookahead_tokens

    @property
    def new_frames(self) -> int:
        """Mel frames this call adds (2 per token)."""
        return TOKEN_MEL_RATIO * (self.token_end - self.token_offset)


class StreamSchedule:
    """Decides the flow calls of one segment as its tokens arrive.

    Make one per segment: every request starts from the first hop.
    NOTE: the official code keeps the hop on the model instance (``self.token_hop_len``) and never
    resets it, so every request after the first starts with 100-token hops (a bug; the reference
    run resets it by hand). We keep the hop per schedule instead and do not copy that.
    """

    def __init__(self, n_prompt_tokens: int) -> None:
        self._pad = prompt_token_pad(n_prompt_tokens)
        self._hop = FIRST_HOP_TOKENS
        self._offset = 0
        self._calls = 0
        self._done = False

    @property
    def done(self) -> bool:
        """True once the final call has been handed out."""
        return self._done

    def next_call(self, n_available: int, finished: bool) -> StreamCall | None:
        """The next call that ``n_available`` tokens allow, or None to wait for more tokens.

        ``finished``: the LLM has made all of this segment's tokens (``n_available`` of them); the
        final call then takes whatever a regular hop does not. Call again after each call: several
        may be due at once (tokens given up front).
        """
        if self._done:
            return None
        hop = self._hop + self._pad if self._offset == 0 else self._hop  # first: first_call_tokens - 3
        if n_available - self._offset >= hop + LOOKAHEAD_TOKENS:
            call = StreamCall(self._calls, self._offset, self._offset + hop + LOOKAHEAD_TOKENS, False)
            self._offset += hop
            self._hop = min(MAX_HOP_TOKENS, self._hop * HOP_GROWTH)
            self._calls += 1
            return call
        if not finished:
            return None
        self._done = True
        return StreamCall(self._calls, self._offset, n_available, True)


def plan_stream_calls(n_prompt_tokens: int, n_tokens: int) -> tuple[StreamCall, ...]:
    """Every call of a segment whose ``n_tokens`` new tokens are all known up front."""
    if n_tokens < 1:
        raise ValueError(f"a streamed segment needs at least one token, got {n_tokens}")
    schedule = StreamSchedule(n_prompt_tokens)
    calls = []
    while (call := schedule.next_call(n_tokens, finished=True)) is not None:
        calls.append(call)
    return tuple(calls)


def crossfade_window(device: torch.device) -> Tensor:
    """(7680,) float64 symmetric Hamming window (numpy's ``np.hamming``), as the official code uses."""
    return torch.hamming_window(CROSSFADE_WINDOW_POINTS, periodic=False, dtype=torch.float64, device=device)


def cross_fade(speech: Tensor, previous_tail: Tensor, window: Tensor) -> Tensor:
    """Fade the start of ``speech`` in over the previous call's held-back tail.

    speech (1, N) float32 with N >= 3840; previous_tail (1, 3840) float32; window from
    :func:`crossfade_window`. The first 3840 samples become speech * rising half + tail * falling
    half, computed in float64 and rounded (as the official numpy window makes it); returns a new
    (1, N) float32 tensor.
    """
    n = OVERLAP_SAMPLES
    if speech.shape[-1] < n or previous_tail.shape[-1] != n:
        raise ValueError(f"cross-fade needs >= {n} new samples and a {n}-sample tail")
    faded = speech[..., :n].double() * window[:n] + previous_tail.double() * window[n:]
    return torch.cat([faded.to(speech.dtype), speech[..., n:]], dim=-1)
