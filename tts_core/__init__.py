"""CosyVoice2 inference core: our own implementation, state-dict compatible with the official models.

Public API::

    from tts_core import load_pipeline, SynthesisOptions
    pipe = load_pipeline("iic/CosyVoice2-0.5B")            # or a model directory
    prompt = pipe.prepare_prompt(wav, sample_rate, transcript="...")
    result = pipe.synthesize("Hello there.", prompt, SynthesisOptions(flow_steps=5, dtype="bfloat16"))
    result.audio, result.sample_rate, result.timings, result.rtf

Importing this package loads no model; :func:`load_pipeline` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names are resolved on first use, so that ``import tts_core.options`` (the app's option widgets,
# eval's statistics) does not pull in onnxruntime, tokenizers and the networks.
_EXPORTS = {
    "DTYPES": "options",
    "SynthesisOptions": "options",
    "Pipeline": "pipeline",
    "PipelineInfo": "pipeline",
    "load_pipeline": "pipeline",
    "PromptFeatures": "frontend.prompt",
    "GeneratedTokens": "results",
    "SynthesisResult": "results",
    "Timings": "results",
}

if TYPE_CHECKING:
    from tts_core.frontend.prompt import PromptFeatures
    from tts_core.options import DTYPES, SynthesisOptions
    from tts_core.pipeline import Pipeline, PipelineInfo, load_pipeline
    from tts_core.results import GeneratedTokens, SynthesisResult, Timings


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DTYPES",
    "GeneratedTokens",
    "Pipeline",
    "PipelineInfo",
    "PromptFeatures",
    "SynthesisOptions",
    "SynthesisResult",
    "Timings",
    "load_pipeline",
]
