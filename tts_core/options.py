"""The one options object of synthesis, validated in one place.

Every runtime knob (ODE steps, dtype, seed, sampling) lives here and is passed down explicitly;
model sizes never do (they come from the model directory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from tts_core.config_id import DTYPE_NAMES, MAX_FLOW_STEPS, ConfigId, check_int

# The single place that maps a dtype name to a torch dtype.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
assert tuple(DTYPES) == DTYPE_NAMES

MAX_FIXED_TOKENS = 4_000


def torch_dtype(name: str) -> torch.dtype:
    """Torch dtype for a dtype name of :data:`DTYPES` (ValueError for anything else)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}") from None


def _check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")


@dataclass(frozen=True)
class SynthesisOptions:
    """Runtime options of one synthesis. Override with ``dataclasses.replace(opts, flow_steps=5)``."""

    flow_steps: int = 10  # Euler steps of the flow-matching ODE (official: 10)
    dtype: str = "float32"  # LLM and flow weights/activations; HiFT always runs in float32
    seed: int = 0  # seeds LLM sampling and the vocoder's excitation noise
    top_p: float = 0.8  # nucleus mass of repetition-aware sampling (official 0.8)
    top_k: int = 25  # nucleus size cap (official 25)
    win_size: int = 10  # repetition window in tokens (official 10)
    tau_r: float = 0.1  # repetition threshold: resample if count >= win_size * tau_r (official 0.1)
    speed: float = 1.0  # speaking-rate factor applied to the mel (0.5-2.0; 1.0 = as generated)
    min_token_text_ratio: float = 2.0  # min speech tokens per text token (official 2)
    max_token_text_ratio: float = 20.0  # max speech tokens per text token (official 20)
    fixed_tokens: int | None = None  # benchmarks: emit exactly this many tokens, ignoring stop tokens
    streaming: bool = False  # render chunk by chunk as the official stream=True does (tts_core.streaming.schedule)

    def __post_init__(self) -> None:
        check_int("flow_steps", self.flow_steps, 1, MAX_FLOW_STEPS)
        torch_dtype(self.dtype)
        check_int("seed", self.seed, 0, 2**63 - 1)
        _check_float("top_p", self.top_p, 0.0, 1.0, low_open=True)
        check_int("top_k", self.top_k, 1, 10_000)
        check_int("win_size", self.win_size, 1, 1_000)
        _check_float("tau_r", self.tau_r, 0.0, 1.0, low_open=True)
        _check_float("speed", self.speed, 0.5, 2.0)
        _check_float("min_token_text_ratio", self.min_token_text_ratio, 0.0, 100.0)
        _check_float("max_token_text_ratio", self.max_token_text_ratio, 0.5, 100.0)
        if self.max_token_text_ratio < self.min_token_text_ratio:
            raise ValueError("max_token_text_ratio must not be below min_token_text_ratio")
        if self.fixed_tokens is not None:
            check_int("fixed_tokens", self.fixed_tokens, 1, MAX_FIXED_TOKENS)
        if not isinstance(self.streaming, bool):
            raise ValueError(f"streaming must be True or False, got {self.streaming!r}")
        if self.streaming and self.speed != 1.0:
            # As officially: a speed change stretches the whole mel, which chunks cannot do.
            raise ValueError(
                f"speed must be 1.0 when streaming (got {self.speed}): streamed chunks cannot be re-timed"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def replace(self, **changes: object) -> SynthesisOptions:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)

    @property
    def config(self) -> ConfigId:
        """The configuration identity these options render (what a listening test compares)."""
        return ConfigId(dtype=self.dtype, flow_steps=self.flow_steps, streaming=self.streaming)

    def with_config(self, config: ConfigId) -> SynthesisOptions:
        """These options (seed, sampling, ...) rendering ``config``: the one place that turns a
        configuration identity into synthesis options."""
        return self.replace(dtype=config.dtype, flow_steps=config.flow_steps, streaming=config.streaming)
