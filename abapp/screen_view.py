"""The automatic screen in the app: screen a playground pair after its clips are shown; Markdown views.

* :class:`PlaygroundScreen`: one per app process (made by ``abapp.ui.make_context``); loads the
  screen's models on first use and keeps the prompts' speaker embeddings (bounded);
* :func:`pair_screen_input`: what the playground's generate handler hands on (in a ``gr.State``)
  so that a chained event can screen A and B while the listener already hears them;
* :func:`screen_markdown`: one clip's screen, flags first and impossible to miss;
* :func:`plan_summary_markdown`: the per-configuration table of a plan's bank for the experimenter;
  :func:`bank_screen_markdown`: the blind tab's screen section around it (abapp/bank_screen.py).

The screen never runs in the blind test's listener view: it would tell the listener what to hear.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.screen.options import ScreenOptions
from eval.screen.results import ScreenResult
from eval.screen.screener import CampplusSource, ClipInput, Screener, load_screener
from eval.screen.speaker import SpeakerReference
from eval.screen.summary import ConfigScreen

log = logging.getLogger(__name__)

REFERENCE_CACHE_SIZE = 16  # voice prompts whose speaker embeddings are kept
SCREENING_NOTE = "⏳ screening (predicted MOS, similarity, WER, failure flags)…"
# A flagged clip's banner (an h3 and the blockquote of findings) in red under the clip.
SCREEN_CSS = """
#pg-screen-a h3, #pg-screen-b h3 { color: #b00000 !important; }
#pg-screen-a blockquote, #pg-screen-b blockquote { border-left: 4px solid #b00000; background: #fde8e8; }
"""
MEASURE_LABELS = {"sim_campplus": "CAM++", "sim_resemblyzer": "resemblyzer"}
NOT_SCREENED = (
    "Not screened yet: once the clips are generated, press **Screen the bank** to check every clip "
    "(predicted MOS, similarity to the prompt, WER/CER, failure flags) before listeners start."
)


@dataclass(frozen=True)
class PairScreenInput:
    """A rendered pair, as the screen needs it (kept in the listener's gr.State until screened)."""

    audio_a: np.ndarray  # (N,) float32
    audio_b: np.ndarray  # (M,) float32
    sample_rate: int
    text: str
    prompt_path: str  # the voice prompt file the pair was made with
    tokens_a: tuple[int, ...]
    tokens_b: tuple[int, ...]


def _tokens(result) -> tuple[int, ...]:
    return tuple(int(t) for seg in result.speech_tokens for t in seg.tolist())


def pair_screen_input(pair_output, prompt_path: str) -> PairScreenInput:
    """From :class:`abapp.synthesis.PairOutput` and the prompt file the pair was made with."""
    a, b = pair_output.result_a, pair_output.result_b
    return PairScreenInput(
        a.audio, b.audio, a.sample_rate, pair_output.pair.text, str(prompt_path), _tokens(a), _tokens(b)
    )


class PlaygroundScreen:
    """The process-wide screener of the app: the playground's pairs and the blind tab's bank
    (abapp/bank_screen.py) share its models (thread-safe; loaded on first use)."""

    def __init__(
        self,
        model_dir: str | Path,
        random_weights: bool,
        asr_model_dir: str | Path | None = None,
        options: ScreenOptions = ScreenOptions(),  # noqa: B008 - frozen, so one shared default is safe
    ) -> None:
        from tts_core.frontend.speech_frontend import CAMPPLUS_FILE

        campplus = Path(model_dir) / CAMPPLUS_FILE
        self._campplus = CampplusSource(campplus, random_weights) if campplus.is_file() else None
        self._asr_model_dir = asr_model_dir
        self._options = options
        self._screener: Screener | None = None
        self._load_lock = threading.Lock()
        self._references: OrderedDict[str, SpeakerReference] = OrderedDict()
        self._ref_lock = threading.Lock()

    def screener(self) -> Screener:
        with self._load_lock:
            if self._screener is None:
                self._screener = load_screener(
                    self._options, self._campplus, self._asr_model_dir, asr_in_worker=True
                )
            return self._screener

    def _reference(self, screener: Screener, audio: np.ndarray, rate: int) -> SpeakerReference:
        digest = hashlib.sha256(
            np.ascontiguousarray(audio, np.float32).tobytes() + str(rate).encode()
        ).hexdigest()
        with self._ref_lock:
            if digest in self._references:
                self._references.move_to_end(digest)
                return self._references[digest]
        reference = screener.speaker_reference(audio, rate)
        with self._ref_lock:
            self._references[digest] = reference
            while len(self._references) > REFERENCE_CACHE_SIZE:
                self._references.popitem(last=False)
        return reference

    def screen_pair(self, pair: PairScreenInput) -> tuple[ScreenResult, ScreenResult]:
        from tts_core.frontend.audio import load_audio

        screener = self.screener()
        reference = self._reference(screener, *load_audio(Path(pair.prompt_path)))
        return tuple(
            screener.screen(ClipInput(audio, pair.sample_rate, pair.text, reference, tokens))
            for audio, tokens in ((pair.audio_a, pair.tokens_a), (pair.audio_b, pair.tokens_b))
        )

    def markdown_pair(self, pair: PairScreenInput | None) -> Iterator[tuple[str, str]]:
        """Gradio generator handler: a "screening" note at once, then the two screens.

        A flagged clip also raises a gr.Warning toast. Failures of the screen itself are shown in
        place of the screen (the clips are already out; they must stay usable)."""
        import gradio as gr

        if pair is None:
            yield "", ""
            return
        yield SCREENING_NOTE, SCREENING_NOTE
        try:
            result_a, result_b = self.screen_pair(pair)
        except Exception as err:  # noqa: BLE001 - the screen is advisory; never break the playground
            log.exception("playground screen failed")
            message = f"⚠️ the automatic screen failed ({type(err).__name__}: {str(err)[:200]})"
            yield message, message
            return
        for name, result in (("A", result_a), ("B", result_b)):
            if result.flagged:
                gr.Warning(f"Clip {name} is flagged: {', '.join(_flag_name(c.code) for c in result.flags)}")
        yield screen_markdown("A", result_a), screen_markdown("B", result_b)


def _flag_name(code: str) -> str:
    return code.replace("_", " ")


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def screen_markdown(name: str, result: ScreenResult) -> str:
    """One clip's screen: a flag banner first, then predicted MOS, similarity, WER/CER and transcript."""
    if result.flagged:
        banner = f"### ⚠️ Clip {name} FLAGGED: {', '.join(_flag_name(c.code) for c in result.flags)}\n\n"
        banner += "  \n".join(
            f"> **{_flag_name(c.code)}**: {c.detail} (rule: {c.limit})" for c in result.flags
        )
    else:
        banner = f"**Screen {name}**: ✅ no failure flag"
    lines = []
    q = result.quality
    lines.append(
        f"Predicted MOS (DNSMOS): OVRL **{_fmt(q.ovrl)}** · SIG {_fmt(q.sig)} · BAK {_fmt(q.bak)} · P.808 {_fmt(q.p808)}"
        if q.info.available
        else f"Predicted MOS: unavailable ({q.info.reason})"
    )
    sims = [
        f"{MEASURE_LABELS.get(s.info.name, s.info.name)} **{_fmt(s.cosine)}**"
        for s in result.similarity
        if s.info.available
    ]
    if sims:
        lines.append("Similarity to the prompt: " + " · ".join(sims))
    lines += [
        f"_{MEASURE_LABELS.get(s.info.name, s.info.name)}: {s.info.reason}_"
        for s in result.similarity
        if s.info.reason
    ]
    intel = result.intelligibility
    if intel.error_rate is not None:
        lines.append(
            f"{intel.metric.upper()} **{intel.error_rate:.0%}** ({intel.info.name.removeprefix('asr_')}): “{intel.transcript}”"
        )
    else:
        lines.append(f"{(intel.metric or 'WER').upper()}: unavailable ({intel.info.reason})")
    lines.append(f"<sub>screened in {result.seconds:.1f} s</sub>")
    # The blank line ends the banner's blockquote (Markdown would run the measures into it).
    return banner + "\n\n" + "  \n".join(lines)


SUMMARY_MEASURES = (("dnsmos_ovrl", "OVRL"), ("dnsmos_p808", "P.808"), ("sim_campplus", "sim CAM++"),
                    ("sim_resemblyzer", "sim resemblyzer"), ("error_rate", "WER/CER"))  # fmt: skip


def _mean_sd(stat) -> str:
    """'0.812 ± 0.041' over the clips where the measure ran ('–' when it ran on none; no sd for one clip)."""
    if stat is None:
        return "–"
    return f"{stat.mean:.3f}" + (f" ± {stat.sd:.3f}" if math.isfinite(stat.sd) else "")


def plan_summary_markdown(summary: Sequence[ConfigScreen]) -> str:
    """The experimenter's view of a screened plan: per configuration the mean ± sd of each measure,
    the flagged count (by flag) and the flagged clips."""
    head = "| configuration | clips | " + " | ".join(name for _, name in SUMMARY_MEASURES) + " | flagged |"
    rows = [head, "|" + "---|" * (len(SUMMARY_MEASURES) + 3)]
    for s in summary:
        cells = [_mean_sd(s.stat(m)) for m, _ in SUMMARY_MEASURES]
        by_flag = ", ".join(f"{_flag_name(code)} {n}" for code, n in s.flag_counts if n)
        flag = f"⚠️ **{s.n_flagged}** ({by_flag})" if s.n_flagged else "0"
        rows.append(f"| `{s.config}` | {s.n_clips} | " + " | ".join(cells) + f" | {flag} |")
    flagged = [f"- `{s.config}` {f.text_id} / {f.prompt_id}: {f.details}" for s in summary for f in s.flagged]
    return "\n".join(rows) + (
        "\n\n**Flagged clips**\n" + "\n".join(flagged) if flagged else "\n\nNo clip is flagged."
    )


def bank_screen_markdown(screen, plan) -> str:
    """The blind tab's screen section: what was screened, the table, and what may be dropped.

    ``screen``: :class:`abapp.bank_screen.BankScreen` (None: not screened yet); ``plan``: the active
    :class:`~eval.serving.trials.TestPlan` (its recorded drops are listed with their reasons)."""
    dropped = [f"🗑️ **Dropped before the test:** `{d.label}` ({d.reason})" for d in plan.dropped]
    if screen is None:
        return "\n\n".join([*dropped, NOT_SCREENED])
    unscreened = (
        f" ⚠️ {screen.n_unscreened} clip(s) of the plan are not generated yet and were not screened."
        if screen.n_unscreened
        else ""
    )
    parts = [
        *dropped,
        f"**Screen of the bank** ({len(screen.rows)} clips; files in `{screen.folder}`).{unscreened}",
        plan_summary_markdown(screen.summary),
    ]
    if screen.baseline in screen.flagged:
        parts.append(
            f"⚠️ The baseline `{screen.baseline}` has flagged clips. It cannot be dropped (every pair "
            "compares against it): define a new plan with another baseline, or listen to the flagged clips first."
        )
    if screen.droppable:
        names = ", ".join(f"`{c}`" for c in screen.droppable)
        parts.append(
            f"**Can be dropped from the plan:** {names}. Dropping one removes it from every listener's "
            "trials (the assignment is rebuilt over the rest); it is allowed only before anyone has rated."
        )
    elif screen.baseline not in screen.flagged:
        parts.append("✅ No configuration has a flagged clip: nothing to drop.")
    return "\n\n".join(parts)
