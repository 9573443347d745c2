"""Playground work without the UI: read a voice prompt, render an A/B pair, describe the result.

Every function raises ValueError with a message meant for the person at the browser.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abapp.context import AppContext
from abapp.state import PairState, Side
from eval.serving.conditions import Condition
from tts_core.config_id import ConfigId
from tts_core.constants import MAX_TEXT_CHARS
from tts_core.frontend.audio import check_prompt_audio, load_audio
from tts_core.options import SynthesisOptions

TOKEN_MODES = ("auto", "same", "separate")
TOKEN_MODE_LABELS = (
    ("Auto: same tokens when only flow steps differ", "auto"),
    ("Same speech tokens for both (LLM of A; isolates the flow setting)", "same"),
    ("Separate LLM runs (each side's dtype and seed)", "separate"),
)
PRESETS: dict[str, ConfigId] = {
    "baseline: float16-n10": ConfigId("float16", 10),
    "fastest: bfloat16-n5": ConfigId("bfloat16", 5),
    "highest quality: bfloat16-n10": ConfigId("bfloat16", 10),
    "float16-compatible: float16-n8": ConfigId("float16", 8),
    "reference: float32-n10": ConfigId("float32", 10),
}
UPLOAD_ID_PREFIX = "upload-"
CUSTOM_TEXT_PREFIX = "custom-"

Progress = Callable[[float, str], None]


def read_prompt_audio(path: str | Path | None) -> tuple[np.ndarray, int]:
    """(mono float32 audio, sample rate) of an uploaded or recorded prompt file, checked for use.

    Reading (libsndfile, ffmpeg for other containers) and the checks are the core's
    (:func:`tts_core.frontend.audio.load_audio`, :func:`tts_core.frontend.audio.check_prompt_audio`), so the app
    refuses exactly what the pipeline would, before any model work.
    """
    if not path:
        raise ValueError("choose a voice prompt from the list, or upload / record one")
    try:
        audio, rate = load_audio(Path(str(path)))
    except ValueError:
        # The core's message names the temporary upload path; the listener knows the file by name.
        raise ValueError(
            f"could not read {Path(str(path)).name!r} as audio; upload a WAV, FLAC, OGG or MP3 file"
        ) from None
    check_prompt_audio(audio, rate)
    return audio, rate


def check_text(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ValueError("the text is empty: type a sentence to synthesise")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"the text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def _whole_number(value: object, name: str, side: str) -> int:
    try:
        number = float(value)  # sliders and number boxes may send 5.0
    except (TypeError, ValueError):
        raise ValueError(f"configuration {side}: {name} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"configuration {side}: {name} must be a whole number, got {value!r}")
    return int(number)


def make_options(
    flow_steps: object, dtype: object, seed: object, side: str, streaming: object = False
) -> SynthesisOptions:
    """Options of one side from raw UI values (ValueError naming the side and the field)."""
    steps = _whole_number(flow_steps, "flow steps", side)
    seed_int = _whole_number(seed, "seed", side)
    try:
        return SynthesisOptions(seed=seed_int).with_config(ConfigId(str(dtype), steps, bool(streaming)))
    except ValueError as err:
        raise ValueError(f"configuration {side}: {err}") from None


def text_id_for(ctx: AppContext, text: str) -> str:
    for item in ctx.texts.values():
        if item.text == text:
            return item.id
    return CUSTOM_TEXT_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:10]


def prompt_id_for(ctx: AppContext, path: str | Path) -> str:
    """The manifest id when the file is a shipped prompt clip (same bytes), else ``upload-<hash>``."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for asset in ctx.prompts.values():
        if asset.sha256 == digest:
            return asset.id
    return UPLOAD_ID_PREFIX + digest[:12]


def clip_hash(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class PairOutput:
    pair: PairState
    result_a: object  # SynthesisResult
    result_b: object
    shared_tokens: bool


def render_pair(
    ctx: AppContext,
    text: str,
    prompt_path: str,
    transcript: str | None,
    options_a: SynthesisOptions,
    options_b: SynthesisOptions,
    token_mode: str,
    progress: Progress,
) -> PairOutput:
    """Synthesise A and B for one text and prompt; with shared tokens the LLM runs once (A's options)."""
    if token_mode not in TOKEN_MODES:
        raise ValueError(f"token mode must be one of {TOKEN_MODES}")
    text = check_text(text)
    progress(0.02, "reading the voice prompt")
    audio, rate = read_prompt_audio(prompt_path)
    prompt_id = prompt_id_for(ctx, prompt_path)
    progress(0.08, "preparing the voice prompt")
    prompt = ctx.prompt_features(audio, rate, (transcript or "").strip() or None)
    # Steps and streaming change only the flow/vocoder rendering: the same tokens serve both.
    only_flow_differs = (
        options_a.replace(flow_steps=options_b.flow_steps, streaming=options_b.streaming) == options_b
    )
    shared = token_mode == "same" or (token_mode == "auto" and only_flow_differs)
    pipe = ctx.pipeline
    if shared:
        progress(0.15, "A+B: speech tokens (LLM)")
        tokens = pipe.generate_tokens(text, prompt, options_a)
        progress(0.45, "A: flow + vocoder")
        res_a = pipe.tokens_to_audio(tokens, prompt, options_a)
        progress(0.72, "B: flow + vocoder")
        res_b = pipe.tokens_to_audio(tokens, prompt, options_b)
    else:
        progress(0.15, "A: LLM, flow and vocoder")
        res_a = pipe.synthesize(text, prompt, options_a)
        progress(0.55, "B: LLM, flow and vocoder")
        res_b = pipe.synthesize(text, prompt, options_b)
    progress(0.95, "drawing spectrograms")
    sides = [
        Side(Condition.rendered(opts.config), res.dtype_ran, res.backend, res.llm_backend, opts.seed, clip_hash(res.audio))
        for opts, res in ((options_a, res_a), (options_b, res_b))
    ]
    pair = PairState(
        trial_id=f"pg-{uuid.uuid4().hex[:16]}",
        mode="playground",
        text_id=text_id_for(ctx, text),
        text=text,
        prompt_id=prompt_id,
        a=sides[0],
        b=sides[1],
        shown_first="A",
        model_id=pipe.info.model_id,
        model_hash=pipe.info.model_hash,
    )
    return PairOutput(pair, res_a, res_b, shared)


def result_markdown(name: str, result, options: SynthesisOptions, shared_tokens: bool) -> str:
    """RTF, per-stage times and what actually ran, for one side.

    The RTF and stage times are the core's own (``result.timings``): one-time work such as a graph
    capture for a new length is listed apart and never counted in them.
    """
    t = result.timings
    lines = [
        f"**{name}: {options.config.label}** · seed {options.seed}",
        f"RTF **{result.rtf:.3f}** ({result.duration:.2f} s of audio in {t.total:.2f} s)",
        f"LLM {t.llm * 1000:.0f} ms · flow {t.flow * 1000:.0f} ms · vocoder {t.vocoder * 1000:.0f} ms",
        f"ran: {result.dtype_ran} · LLM {result.llm_backend} · flow {result.backend} · {result.device}",
    ]
    if result.stream is not None:
        report = result.stream
        gaps = report.chunk_intervals
        lines.append(
            f"streamed: first chunk **{report.first_chunk_latency * 1000:.0f} ms** · {len(report.chunks)} chunks"
            + (f" · longest gap {max(gaps) * 1000:.0f} ms" if gaps else "")
            + ("" if report.llm_overlapped else " (tokens given: LLM time added before the first chunk)")
        )
    if shared_tokens:
        lines.append("speech tokens shared with the other side (LLM time counted on both)")
    if result.one_time:
        lines.append(
            f"first use of this shape: {result.one_time_seconds:.2f} s of one-time "
            f"{'; '.join(w.what for w in result.one_time)}, not included"
        )
    lines.extend(f"⚠️ {w}" for w in result.warnings)
    if result.dtype_ran != options.dtype:
        lines.append(
            f"⚠️ asked for {options.dtype}, ran {result.dtype_ran}: ratings count as "
            f"{ConfigId(result.dtype_ran, options.flow_steps).label}"
        )
    return "  \n".join(lines)
