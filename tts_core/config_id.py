"""The configuration identity: what a listening test compares, with one label and one parser.

Torch-free on purpose: test plans, the ratings log and the statistics name configurations without
loading the inference stack. :meth:`tts_core.options.SynthesisOptions.with_config` is the one place
that turns an identity into synthesis options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DTYPE_NAMES: tuple[str, ...] = ("float32", "float16", "bfloat16")  # torch dtypes in options.DTYPES
MAX_FLOW_STEPS = 50
# Spellings accepted for a dtype in a label; the canonical label always uses the full name.
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
LABEL_EXAMPLE = "bfloat16-n5"
STREAM_SUFFIX = "-stream"  # label suffix of a streamed configuration
_LABEL = re.compile(r"^(?P<dtype>[a-z0-9]+)-n(?P<steps>[0-9]+)(?P<stream>-stream)?$")


def check_int(name: str, value: object, low: int, high: int) -> None:
    """ValueError unless ``value`` is an int (not a bool) in ``low..high``."""
    # bool is an int subclass; True as a step count is a caller bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def check_dtype(name: str) -> None:
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {name!r}")


@dataclass(frozen=True)
class ConfigId:
    """One configuration under comparison, named by one canonical label (``bfloat16-n5``).

    The label names the configuration in the UI, test plans, the ratings CSV, reports, sheets and
    benchmarks. What actually ran (flow backend, LLM decoder, the dtype after a fallback, the
    device) is recorded beside it and never folded into it, so a configuration has the same name
    on a CPU and on a GPU.
    """

    dtype: str  # LLM and flow dtype, one of DTYPE_NAMES
    flow_steps: int  # Euler steps of the flow-matching ODE, 1..MAX_FLOW_STEPS
    streaming: bool = False  # rendered chunk by chunk as the official streaming path (tts_core.streaming.schedule)

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        check_int("flow_steps", self.flow_steps, 1, MAX_FLOW_STEPS)
        if not isinstance(self.streaming, bool):
            raise ValueError(f"streaming must be True or False, got {self.streaming!r}")

    @property
    def label(self) -> str:
        """The canonical name, e.g. ``bfloat16-n5`` or ``bfloat16-n5-stream``; :meth:`parse` reads it back."""
        return f"{self.dtype}-n{self.flow_steps}{STREAM_SUFFIX if self.streaming else ''}"

    @classmethod
    def parse(cls, text: str) -> ConfigId:
        """The identity named by ``text``: a label ``DTYPE-nSTEPS`` or ``DTYPE-nSTEPS-stream``, case
        and surrounding spaces ignored, ``fp32``/``fp16``/``bf16`` accepted for the dtype; ValueError
        showing the form otherwise."""
        raw = str(text).strip().lower()
        match = _LABEL.match(raw)
        dtype = DTYPE_ALIASES.get(match["dtype"], match["dtype"]) if match else ""
        if not match or dtype not in DTYPE_NAMES or not 1 <= int(match["steps"]) <= MAX_FLOW_STEPS:
            raise ValueError(
                f"{text!r} is not a configuration label like {LABEL_EXAMPLE!r} "
                f"(DTYPE-nSTEPS[-stream], DTYPE one of {list(DTYPE_NAMES)}, STEPS 1..{MAX_FLOW_STEPS})"
            )
        return cls(dtype=dtype, flow_steps=int(match["steps"]), streaming=match["stream"] is not None)
