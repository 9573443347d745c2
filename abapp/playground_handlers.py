"""What the playground tab does, without gradio's layout: render a pair, describe it, time playback.

:func:`generate` takes a :class:`PairRequest` (the widgets' raw values) and returns a
:class:`PairView`; abapp/playground.py lays out the tab and turns the view into component updates.
With ``match_loudness`` (on by default) both clips are played at the stimulus loudness of the blind
test (eval/serving/loudness.py); the spectrograms and objective distances use the audio as synthesised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from abapp.context import AppContext, fresh_temp_dir
from abapp.playback import ClipPlayback
from abapp.screen_view import PairScreenInput, pair_screen_input
from abapp.spectrogram import distances_markdown, pair_figure
from abapp.state import PairState
from abapp.synthesis import make_options, render_pair, result_markdown
from eval.serving import loudness

PLAYGROUND_DIRNAME = "cosyvoice2-ab-playground"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class SideRequest:
    """One configuration as the widgets hold it (validated by abapp.synthesis.make_options)."""

    flow_steps: object
    dtype: object
    seed: object
    streaming: object = False


@dataclass(frozen=True)
class PairRequest:
    text: str | None
    prompt_path: str | None
    transcript: str | None
    a: SideRequest
    b: SideRequest
    token_mode: str
    match_loudness: bool = True


@dataclass(frozen=True)
class PairView:
    """A rendered pair: what the players, the info boxes and the plot show."""

    audio_a: str
    audio_b: str
    info_a: str
    info_b: str
    figure: object  # matplotlib Figure
    distances: str
    pair: PairState
    playback_a: ClipPlayback
    playback_b: ClipPlayback
    status: str
    screen_input: PairScreenInput  # the pair as synthesised, for the automatic screen


def to_wav(audio: np.ndarray, sample_rate: int, folder: Path, name: str) -> str:
    """Write 16-bit PCM ``folder/name`` for the player (gradio caches it by content, atomically)."""
    path = folder / name
    sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return str(path)


def _played(audio: np.ndarray, sample_rate: int, match: bool) -> tuple[np.ndarray, str]:
    """(the audio the player gets, a line saying how loud it is)."""
    if not match:
        level = loudness.integrated_loudness(audio, sample_rate)
        return audio, f"loudness {level:.1f} LUFS as synthesised (not matched)"
    matched, record = loudness.match(audio, sample_rate)
    return matched, loudness.describe(record)


def generate(ctx: AppContext, request: PairRequest, progress: Progress) -> PairView:
    options_a = make_options(request.a.flow_steps, request.a.dtype, request.a.seed, "A", request.a.streaming)
    options_b = make_options(request.b.flow_steps, request.b.dtype, request.b.seed, "B", request.b.streaming)
    out = render_pair(
        ctx, request.text, request.prompt_path, request.transcript, options_a, options_b, request.token_mode, progress
    )
    ra, rb = out.result_a, out.result_b
    folder = fresh_temp_dir(PLAYGROUND_DIRNAME)
    files, infos = [], []
    for name, res, opts in (("A", ra, options_a), ("B", rb, options_b)):
        played, level = _played(res.audio, res.sample_rate, request.match_loudness)
        files.append(to_wav(played, res.sample_rate, folder, f"{name}.wav"))
        infos.append(result_markdown(name, res, opts, out.shared_tokens) + "  \n" + level)
    edges_a, edges_b = (r.stream.boundary_frames if r.stream else () for r in (ra, rb))  # chunk edges
    return PairView(
        audio_a=files[0],
        audio_b=files[1],
        info_a=infos[0],
        info_b=infos[1],
        figure=pair_figure(
            ra.mel, rb.mel, f"A: {options_a.config.label}", f"B: {options_b.config.label}", edges_a, edges_b
        ),
        # as synthesised, not loudness-matched
        distances=distances_markdown(ra.audio, rb.audio, ra.mel, rb.mel, ra.sample_rate, (*edges_a, *edges_b)),
        pair=out.pair,
        playback_a=ClipPlayback(ra.duration),
        playback_b=ClipPlayback(rb.duration),
        status=f"New pair `{out.pair.trial_id}` ready: play A and B to their ends, then rate.",
        screen_input=pair_screen_input(out, request.prompt_path),
    )
